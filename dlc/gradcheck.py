"""Gradient check: symbolic gradients against central finite differences in float64.

Two views: along a few random directions in the space of all parameters
(JAX's ``check_grads`` style), and element by element for small parameters.
The loss is evaluated by the reference evaluator on random data shaped like
the model's input and target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlc.backends.initializers import initial_params
from dlc.backends.reference import evaluate
from dlc.grad import Program, differentiate
from dlc.graph.graph import Graph
from dlc.graph.nodes import Input, Loss, Node

#: Parameters with at most this many elements are also checked element by element.
ELEMENTWISE_LIMIT = 64
TOLERANCE = {"float64": 1e-5, "float32": 2e-2}


@dataclass
class CheckResult:
    """Largest relative error per parameter, and along random directions."""

    dtype: str
    per_param: dict[str, float] = field(default_factory=dict)
    directions: list[float] = field(default_factory=list)

    @property
    def worst(self) -> float:
        return max([*self.per_param.values(), *self.directions], default=0.0)

    @property
    def passed(self) -> bool:
        return self.worst <= TOLERANCE[self.dtype]


def sample_data(graph: Graph, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random inputs and targets of the right shapes; targets fit the loss (one-hot, 0/1 ...)."""
    feeds: dict[str, np.ndarray] = {}
    if graph.input is not None:
        feeds[graph.input.name] = rng.normal(size=(batch, *graph.input.shape))
    if graph.target is not None:
        feeds[graph.target.name] = _targets(graph, graph.target, batch, rng)
    return feeds


def _targets(graph: Graph, target: Input, batch: int, rng: np.random.Generator) -> np.ndarray:
    kinds = {n.kind for n in graph.nodes() if isinstance(n, Loss) and n.inputs[1] is target}
    shape = (batch, *target.shape)
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
    """
    program = differentiate(graph)
    rng = np.random.default_rng(seed)
    params = initial_params(graph.params, seed)
    # Nudge zero-initialised parameters so that no unit sits exactly on a kink.
    params = {k: v + rng.normal(0, 0.1, v.shape) for k, v in params.items()}
    data = sample_data(graph, batch, rng)
    grads = _grads(program, params, data, dtype)
    result = CheckResult(dtype)
    for _ in range(directions):
        v = {k: rng.normal(size=p.shape) for k, p in params.items()}
        analytic = sum(float(np.sum(grads[k] * v[k])) for k in params)
        numeric = _directional(program, params, data, v)
        result.directions.append(_relative(analytic, numeric))
    for name, value in params.items():
        if value.size <= ELEMENTWISE_LIMIT:
            result.per_param[name] = _elementwise_error(program, params, data, name, grads[name])
    return result


def _loss(program: Program, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> float:
    return float(evaluate([program.graph.loss], {**params, **data})[0])


def _grads(program: Program, params: dict[str, Any], data: dict[str, Any], dtype: str) -> dict[str, Any]:
    roots: list[Node] = list(program.grads.values())
    values = evaluate(roots, {**params, **data}, dtype=dtype)
    return {k: np.asarray(v, np.float64) for k, v in zip(program.grads, values, strict=True)}


def _step(params: dict[str, np.ndarray], v: dict[str, np.ndarray], h: float) -> dict[str, np.ndarray]:
    return {k: p + h * v[k] for k, p in params.items()}


def _directional(program: Program, params: dict[str, Any], data: dict[str, Any], v: dict[str, Any]) -> float:
    h = 1e-5
    up = _loss(program, _step(params, v, h), data)
    down = _loss(program, _step(params, v, -h), data)
    return (up - down) / (2 * h)


def _elementwise_error(
    program: Program, params: dict[str, Any], data: dict[str, Any], name: str, grad: np.ndarray
) -> float:
    worst = 0.0
    for index in np.ndindex(params[name].shape):
        v = {k: np.zeros_like(p) for k, p in params.items()}
        v[name][index] = 1.0
        worst = max(worst, _relative(float(grad[index]), _directional(program, params, data, v)))
    return worst


def _relative(a: float, b: float) -> float:
    """|a - b| relative to their size, with an absolute floor for values near zero."""
    return abs(a - b) / max(abs(a), abs(b), 1e-3)
