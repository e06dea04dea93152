"""Gradient check: symbolic gradients against central finite differences in float64.

Two views: along a few random directions in the space of all parameters
(JAX's ``check_grads`` style), and element by element for small parameters.
Gradients come from the compiled NumPy module in the chosen precision; the
differences of the loss from the same module compiled in float64, on random
data shaped like the model's input and target.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlc.backends.initializers import initial_params
from dlc.backends.numpy import write_module
from dlc.compiler import check_memory, load_module, out_of_memory
from dlc.errors import DlcError
from dlc.grad import differentiate, hessian_vector_program
from dlc.grad.formulas import derive
from dlc.graph.graph import Graph
from dlc.graph.nodes import Input, Loss

#: Parameters with at most this many elements are checked element by element, every one;
#: of larger ones, this many elements drawn at random.
ELEMENTWISE_LIMIT = 64
#: Arrays the size of the parameters the check holds at once (float64): the parameters, the
#: nudged ones, their copy in the checked dtype, the gradients, a direction and a step.
CHECK_COPIES = 6
MAX_SEED = 2**31
TOLERANCE = {"float64": 1e-5, "float32": 2e-2}


@dataclass
class CheckResult:
    """Largest relative error per parameter, and along random directions."""

    dtype: str
    per_param: dict[str, float] = field(default_factory=dict)
    directions: list[float] = field(default_factory=list)
    checked: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (elements checked, of)

    @property
    def worst(self) -> float:
        """The largest error; NaN if any is (a loss or gradient that is not finite there)."""
        return _largest([*self.per_param.values(), *self.directions])

    @property
    def passed(self) -> bool:
        return self.worst <= TOLERANCE[self.dtype]  # False for NaN: nothing was shown


def sample_data(graph: Graph, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random inputs and targets of the right shapes; targets fit the loss (one-hot, 0/1 ...)."""
    feeds: dict[str, np.ndarray] = {}
    for node in graph.inputs:
        feeds[node.name] = rng.normal(size=(batch, *node.shape))
    for node in graph.targets:
        feeds[node.name] = _targets(graph, node, batch, rng)
    return feeds


def _targets(graph: Graph, target: Input, batch: int, rng: np.random.Generator) -> np.ndarray:
    kinds = {n.kind for n in graph.nodes() if isinstance(n, Loss) and n.inputs[1] is target}
    shape = (batch, *target.shape)
    if target.classes:
        return rng.integers(0, target.classes, size=batch).astype(np.float64)
    if "softmax_ce" in kinds:
        return np.eye(target.shape[-1])[rng.integers(0, target.shape[-1], size=shape[:-1])]
    if kinds & {"bce", "bce_logits"}:
        return rng.integers(0, 2, size=shape).astype(np.float64)
    return rng.normal(size=shape)


def check_gradients(
    graph: Graph, *, dtype: str = "float64", seed: int = 0, batch: int = 4, directions: int = 3
) -> CheckResult:
    """Compare dL/dθ with finite differences of L (always in float64).

    Args:
        graph: the model.
        dtype: the precision in which the symbolic gradients are evaluated.
        seed: for parameters, data and directions.
        batch: examples in the random batch.
        directions: how many random directions to test.

    Returns:
        The largest relative errors found.

    Raises:
        DlcError: for a seed outside 0..2^31, or parameters too large for the memory.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise DlcError(f"--seed must be a whole number from 0 to 2^31, not {seed!r}")
    check_memory(graph, "float64", CHECK_COPIES, "the gradient check")
    try:
        with np.errstate(all="ignore"):  # a loss that is not finite is the result's NaN, not a warning
            return _check(graph, dtype, seed, batch, directions)
    except MemoryError:
        raise out_of_memory(graph, "float64", "the gradient check") from None


def _check(graph: Graph, dtype: str, seed: int, batch: int, directions: int) -> CheckResult:
    program = differentiate(graph)
    derivation = derive(graph)
    module = load_module(write_module(program, derivation, dtype, graph.name), graph.name)
    exact = (
        module
        if dtype == "float64"
        else load_module(write_module(program, derivation, "float64", graph.name), graph.name)
    )
    rng = np.random.default_rng(seed)
    params = initial_params(graph.params, seed)
    # Nudge zero-initialised parameters so that no unit sits exactly on a kink.
    params = {k: v + rng.normal(0, 0.1, v.shape) for k, v in params.items()}
    data = sample_data(graph, batch, rng)
    X, Y = _batch(graph, data)
    low = {k: v.astype(dtype) for k, v in params.items()}
    _, grads64 = module.value_and_grad(low, _cast(X, dtype), _cast(Y, dtype))
    grads = {k: np.asarray(g, np.float64) for k, g in grads64.items()}
    loss = _LossFunction(exact, X, Y)
    result = CheckResult(dtype)
    for _ in range(directions):
        v = {k: rng.normal(size=p.shape) for k, p in params.items()}
        analytic = sum(float(np.sum(grads[k] * v[k])) for k in params)
        result.directions.append(_relative(analytic, _directional(loss, params, v)))
    for name, value in params.items():
        indices = _elements(value.shape, rng)
        result.per_param[name] = _elementwise_error(loss, params, name, grads[name], indices)
        result.checked[name] = (len(indices), value.size)
    return result


def _elements(shape: tuple[int, ...], rng: np.random.Generator) -> list[tuple[int, ...]]:
    """Every index of a small parameter; ELEMENTWISE_LIMIT of a larger one, drawn without repeats."""
    size = math.prod(shape)
    if size <= ELEMENTWISE_LIMIT:
        return list(np.ndindex(shape))
    flat = np.sort(rng.choice(size, ELEMENTWISE_LIMIT, replace=False))
    return [tuple(int(i) for i in np.unravel_index(k, shape)) for k in flat]


def _batch(graph: Graph, data: dict[str, np.ndarray]) -> tuple[Any, Any]:
    """(X, Y) as the module takes them: an array for one input (target), a dict by name for several."""

    def form(leaves: tuple[Input, ...]) -> Any:
        if not leaves:
            return None
        return data[leaves[0].name] if len(leaves) == 1 else {n.name: data[n.name] for n in leaves}

    return form(graph.inputs), form(graph.targets)


def _cast(data: Any, dtype: str) -> Any:
    if isinstance(data, dict):
        return {k: v.astype(dtype) for k, v in data.items()}
    return None if data is None else data.astype(dtype)


class _LossFunction:
    """The loss of a compiled float64 module as a function of the parameters alone."""

    def __init__(self, module: Any, X: Any, Y: Any) -> None:
        self.module, self.X, self.Y = module, X, Y

    def __call__(self, params: dict[str, np.ndarray]) -> float:
        return float(self.module.loss(params, self.X, self.Y))


def _step(params: dict[str, np.ndarray], v: dict[str, np.ndarray], h: float) -> dict[str, np.ndarray]:
    return {k: p + h * v[k] for k, p in params.items()}


def _directional(loss: Callable[[dict[str, Any]], float], params: dict[str, Any], v: dict[str, Any]) -> float:
    """The central difference of the loss along ``v``."""
    h = 1e-5
    return (loss(_step(params, v, h)) - loss(_step(params, v, -h))) / (2 * h)


def _elementwise_error(
    loss: Callable[[dict[str, Any]], float],
    params: dict[str, Any],
    name: str,
    grad: np.ndarray,
    indices: list[tuple[int, ...]],
) -> float:
    errors = []
    for index in indices:
        v = {k: np.zeros_like(p) for k, p in params.items()}
        v[name][index] = 1.0
        errors.append(_relative(float(grad[index]), _directional(loss, params, v)))
    return _largest(errors)


def _largest(errors: list[float]) -> float:
    """max() that keeps a NaN (max(0.0, nan) would give 0.0 and pass a check that showed nothing)."""
    return math.nan if any(math.isnan(e) for e in errors) else max(errors, default=0.0)


def _relative(a: float, b: float) -> float:
    """|a - b| relative to their size, with an absolute floor for values near zero."""
    return abs(a - b) / max(abs(a), abs(b), 1e-3)


def check_hessian(graph: Graph, *, seed: int = 0, batch: int = 4, directions: int = 3) -> CheckResult:
    """Compare Hessian-vector products H v with central differences of the gradient along v.

    The products come from the NumPy module compiled with ``hvp`` in float64;
    the differences of the gradient from the same module. ``per_param`` holds,
    for each parameter, the largest relative error of its part of H v over
    the random directions; ``directions`` the error of the whole product.

    Raises:
        DlcError: for a seed outside 0..2^31, or parameters too large for the memory.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise DlcError(f"--seed must be a whole number from 0 to 2^31, not {seed!r}")
    check_memory(graph, "float64", CHECK_COPIES + 2, "the Hessian check")
    try:
        with np.errstate(all="ignore"):
            return _check_hessian(graph, seed, batch, directions)
    except MemoryError:
        raise out_of_memory(graph, "float64", "the Hessian check") from None


def _check_hessian(graph: Graph, seed: int, batch: int, directions: int) -> CheckResult:
    program = hessian_vector_program(graph)
    module = load_module(write_module(program, derive(graph), "float64", graph.name), graph.name)
    rng = np.random.default_rng(seed)
    params = {k: v + rng.normal(0, 0.1, v.shape) for k, v in initial_params(graph.params, seed).items()}
    X, Y = _batch(graph, sample_data(graph, batch, rng))
    gradient = lambda at: module.value_and_grad(at, X, Y)[1]  # noqa: E731
    result = CheckResult("float64")
    h = 1e-5
    for _ in range(directions):
        v = {k: rng.normal(size=p.shape) for k, p in params.items()}
        exact = module.hvp(params, X, Y, v)
        ahead, behind = gradient(_step(params, v, h)), gradient(_step(params, v, -h))
        differences = {k: (ahead[k] - behind[k]) / (2 * h) for k in params}
        for k in params:
            error = _vector_error(exact[k], differences[k])
            result.per_param[k] = _largest([result.per_param.get(k, 0.0), error])
        whole = [np.ravel(exact[k]) for k in params], [np.ravel(differences[k]) for k in params]
        result.directions.append(_vector_error(np.concatenate(whole[0]), np.concatenate(whole[1])))
    return result


def _vector_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| relative to the larger of max |a| and max |b|, with a floor near zero."""
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return math.nan
    scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)), 1e-3)
    return float(np.max(np.abs(a - b), initial=0.0)) / scale
