"""Indexing, reshaping, max and min, comparisons and where: values and gradients against torch.

Each model below uses a group of the ops; the same network written with torch (float64,
autograd) is the oracle for the loss and every parameter's gradient, computed by the
reference evaluator and by both compiled backends. The data and weights of the max/min
model are small whole numbers, so that ties happen and the rule for them is checked too
(the gradient is shared evenly among tied winners, as torch.amax, torch.maximum and
torch.clamp share it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from dlc.compiler import compile_model
from dlc.frontend import load_source

from .conftest import error_at
from .torch_oracle import TorchOracle

torch = pytest.importorskip("torch")

SHAPES = """
input x : [12]
target y : [3]
param W : [6, 12] = glorot
param V : [3, 8] = glorot
h = tanh(W @ x)
M = reshape(h, [2, 3])
c = M[:, 1]
d = M[-1]
e = h[1:6:2]
f = flatten(stack(c, c * 2, axis = 1))
z = concat(f, d[0:2], e[::2])
p = V @ z + W[1:4, 2] * V[:, -1]
output p
loss mse(p, y)
"""


def shapes_torch(p: dict[str, Any], x: Any, y: Any) -> Any:
    h = torch.tanh(x @ p["W"].T)
    m = h.reshape(-1, 2, 3)
    c, d, e = m[:, :, 1], m[:, -1], h[:, 1:6:2]
    f = torch.stack([c, c * 2], dim=2).reshape(-1, 4)
    z = torch.cat([f, d[:, 0:2], e[:, ::2]], dim=1)
    out = z @ p["V"].T + p["W"][1:4, 2] * p["V"][:, -1]
    return ((out - y) ** 2).mean()


EXTREMES = """
input x : [4]
target y : [2]
param W : [6, 4] = glorot
param U : [2, 3] = glorot
h = W @ x
M = reshape(h, [2, 3])
a = max(M, 1)
b = min(M, 0)
m = max(h) + min(h) + max(M, 1)[1]
q = maximum(a, b[0:2]) + minimum(a, b[1:3]) + clip(h[0:2], -1, 1) + m
output q
loss mse(U @ b + q, y)
"""


def extremes_torch(p: dict[str, Any], x: Any, y: Any) -> Any:
    h = x @ p["W"].T
    m = h.reshape(-1, 2, 3)
    a, b = torch.amax(m, dim=2), torch.amin(m, dim=1)
    top = torch.amax(h, dim=1) + torch.amin(h, dim=1) + torch.amax(m, dim=2)[:, 1]
    q = torch.maximum(a, b[:, 0:2]) + torch.minimum(a, b[:, 1:3]) + torch.clamp(h[:, 0:2], -1, 1)
    q = q + top[:, None]
    return ((b @ p["U"].T + q - y) ** 2).mean()


CONDITIONS = """
input x : [5]
target y : [3]
param W : [4, 5] = glorot
param V : [3, 4] = glorot
z = W @ x
a = where(z > 0, z, 0.01 * z)
mask = (z >= 1) + (z < -1) * 2 + (z == 0) + (z != 2) + (z <= 0.5)
p = V @ (a * mask)
loss softmax_cross_entropy(p, y)
"""


def conditions_torch(p: dict[str, Any], x: Any, y: Any) -> Any:
    z = x @ p["W"].T
    a = torch.where(z > 0, z, 0.01 * z)
    mask = (z >= 1).double() + (z < -1).double() * 2 + (z == 0).double() + (z != 2).double()
    mask = mask + (z <= 0.5).double()
    logits = (a * mask) @ p["V"].T
    return -(y * torch.log_softmax(logits, dim=-1)).sum(-1).mean()


Case = tuple[str, Callable[..., Any], bool]
CASES: dict[str, Case] = {
    "shapes": (SHAPES, shapes_torch, False),
    "extremes": (EXTREMES, extremes_torch, True),
    "conditions": (CONDITIONS, conditions_torch, True),
}


def case_data(name: str) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    source, _, whole = CASES[name]
    graph = load_source(source).graph
    rng = np.random.default_rng(7)
    if whole:  # small whole numbers: ties in max, min, maximum, minimum and at clip's bounds
        params = {p.name: rng.integers(-1, 2, p.shape).astype(np.float64) for p in graph.params}
        x = rng.integers(-2, 3, (9, *graph.inputs[0].shape)).astype(np.float64)
    else:
        params = {p.name: rng.normal(size=p.shape) for p in graph.params}
        x = rng.normal(size=(9, *graph.inputs[0].shape))
    y = rng.uniform(size=(9, *graph.targets[0].shape))
    if name == "conditions":
        y /= y.sum(axis=1, keepdims=True)
    return params, x, y


ORACLE = TorchOracle(
    torch, {k: c[0] for k, c in CASES.items()}, {k: c[1] for k, c in CASES.items()}, case_data
)


@pytest.mark.parametrize("name", list(CASES))
def test_the_reference_evaluator_matches_torch(name: str) -> None:
    ORACLE.check_reference(name)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("name", list(CASES))
def test_both_backends_match_torch(name: str, backend: str) -> None:
    ORACLE.check_backend(name, backend)


def test_ties_happen_in_the_whole_number_case() -> None:
    """The tie rule is exercised, not assumed: some rows have two equal maxima."""
    params, x, _ = case_data("extremes")
    h = (x @ params["W"].T).reshape(-1, 2, 3)
    assert ((h == h.max(axis=2, keepdims=True)).sum(axis=2) > 1).any()
    assert (np.abs(x @ params["W"].T)[:, :2] == 1).any()  # at clip's bounds


def test_max_of_a_vector_gives_the_gradient_to_the_winner_only() -> None:
    module = compile_model(
        "input x : [3]\ntarget y : []\nparam w : [3] = ones\nloss mse(max(w * x), y)", backend="numpy"
    )
    x, y = np.array([[1.0, 3.0, 2.0]]), np.array([0.0])
    _, grads = module.value_and_grad({"w": np.ones(3)}, x, y)
    np.testing.assert_array_equal(grads["w"], [0.0, 2 * 3.0 * 3.0, 0.0])


# ----------------------------------------------------------------- errors


HEAD = "input x : [3, 4]\ntarget y : []\n"


@pytest.mark.parametrize(
    ("line", "at", "fragment"),
    [
        ("loss mse(sum(x[3]), y)", "3]", "index 3 is out of range for axis 0 of size 3"),
        ("loss mse(sum(x[0, -5]), y)", "-5", "index -5 is out of range for axis 1 of size 4"),
        ("loss mse(sum(x[0, 1, 2]), y)", "x[", "3 indices for [3, 4] (2 axes)"),
        ("loss mse(sum(x[::-1]), y)", "::", "a step must be positive"),
        ("loss mse(sum(x[2:1]), y)", "2:", "selects no elements"),
        ("loss mse(sum(reshape(x, [5, 2])), y)", "reshape", "cannot reshape [3, 4] (12 elements) to [5, 2]"),
        ("loss mse(sum(reshape(x, [-1, 5])), y)", "[-1", "to [-1, 5]"),
        ("loss mse(sum(reshape(x, 12)), y)", "12", "is a list of whole numbers"),
        ("loss mse(max(x, x), y)", "x)", "the second argument of max is an axis"),
        ("loss mse(sum(stack(x, x[0])), y)", "stack", "stack needs tensors of one shape"),
        ("loss mse(sum(clip(x, 1, -1)), y)", "1,", "lower bound 1 is above its upper bound -1"),
        ("loss mse(sum([1, 2]), y)", "[1", "a list of whole numbers is an argument of reshape"),
        ("loss mse(sum(x)[0], y)", "sum", "1 index for a scalar"),
    ],
)
def test_mistakes_are_positioned_errors(line: str, at: str, fragment: str) -> None:
    """The message, and the caret at the first character of ``at`` in the line."""
    err = error_at(HEAD + line)
    assert fragment in err.message, err.render()
    assert err.span is not None and (err.span.line, err.span.column) == (3, line.index(at) + 1), err.render()


def test_hint_for_max_of_two_tensors_names_maximum() -> None:
    err = error_at(HEAD + "loss mse(max(x, x), y)")
    assert err.hint is not None and "maximum(a, b)" in err.hint


def test_comparisons_do_not_chain() -> None:
    err = error_at(HEAD + "loss mse(sum(0 < x < 1), y)")
    assert "unexpected" in err.message and err.span is not None and err.span.line == 3


def test_optimizer_formulas_refuse_comparisons_and_indexing() -> None:
    for body in ("w = w - lr * (g > 0)", "w = w - lr * g[0]"):
        source = HEAD + "param w : [] = zeros\nloss mse(w * sum(x), y)\n"
        source += f"optimizer mine(lr = 0.1) {{ {body} }}\ntrain {{ optimizer = mine() }}"
        err = error_at(source)
        assert "optimizer" in err.message, err.render()


def test_every_scalar_function_has_code_in_both_backends() -> None:
    """scalar.FUNCTIONS is the one list: a function missing from a backend fails here, not in a model."""
    from dlc.backends import scalar_numpy
    from dlc.backends.llvm import scalar as llvm_scalar
    from dlc.backends.numpy.printer import HELPERS
    from dlc.graph import scalar

    for name, function in scalar.FUNCTIONS.items():
        assert name in HELPERS and name in scalar_numpy.FUNCTIONS, name
        assert function in llvm_scalar._HELPERS or function in llvm_scalar.LIBRARY, name
