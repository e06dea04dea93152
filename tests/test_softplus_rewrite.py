"""``log(1 + exp(z))`` written by hand is computed as the stable softplus, value and gradient.

As written, exp(z) overflows (past z = 88 in float32, 709 in float64): the
loss is inf and the gradient exp(z) / (1 + exp(z)) is nan; for z = -100,
1 + exp(z) rounds to 1 and the loss to 0. The graph rewrites the body to
softplus(z) (as bce of sigmoid(z) becomes bce_with_logits), whose value is
max(z, 0) + log1p(exp(-|z|)) and whose derivative is sigmoid(z).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy

from dlc.compiler import compile_source, load_module
from dlc.frontend import load_source
from dlc.graph import scalar
from dlc.graph.graph import topological_order
from dlc.graph.nodes import Elementwise
from dlc.graph.scalar import element_symbol, stable_forms

WRITTEN = {
    "inline": "loss sum(log(1 + exp(w * x)))",
    "reversed": "loss sum(log(exp(w * x) + 1))",
    "named": "z = w * x\ne = exp(z)\nloss sum(log(1 + e))",
    "function": "sp(u) = log(1 + exp(u))\nloss sum(sp(w * x))",
}
HEADER = "input x : [1]\ntarget y : [1]\nparam w : [1] = ones\n"


def exact(z: float) -> tuple[float, float]:
    """softplus(z) and d/dw softplus(w z) at w = 1, i.e. z * sigmoid(z), in float64."""
    value = max(z, 0.0) + math.log1p(math.exp(-abs(z)))
    sigmoid = 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))
    return value, z * sigmoid


@pytest.mark.parametrize("form", list(WRITTEN))
def test_the_body_becomes_softplus(form: str) -> None:
    graph = load_source(HEADER + WRITTEN[form] + "\n").graph
    bodies = [n.expr for n in topological_order([graph.loss]) if isinstance(n, Elementwise)]
    assert any(b.has(scalar.softplus) for b in bodies), bodies
    assert not any(b.has(sympy.exp) for b in bodies), bodies


def test_only_log_of_one_plus_exp_is_rewritten() -> None:
    x = element_symbol(0)
    assert stable_forms(sympy.log(1 + sympy.exp(-x))) == scalar.softplus(-x)
    for other in (sympy.log(2 + sympy.exp(x)), sympy.log(1 + x), sympy.log(1 + sympy.exp(x) + x)):
        assert stable_forms(other) == other


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_value_and_gradient_at_large_logits(backend: str, dtype: str) -> None:
    model = load_source(HEADER + WRITTEN["inline"] + "\n")
    module = load_module(compile_source(model, backend=backend, dtype=dtype), f"softplus_{backend}_{dtype}")
    rtol = 1e-12 if dtype == "float64" else 1e-5
    # softplus(-100) = 3.7e-44 is subnormal in float32 (below 1.2e-38), with few bits left.
    atol = 0.0 if dtype == "float64" else 1e-43
    for z in (100.0, -100.0, 30.0, -30.0, 0.0):
        X, Y = np.array([[z]], dtype=dtype), np.zeros((1, 1), dtype=dtype)
        loss, grads = module.value_and_grad({"w": np.ones(1, dtype=dtype)}, X, Y)
        value, slope = exact(z)
        assert loss == pytest.approx(value, rel=rtol, abs=atol), (z, loss)
        assert grads["w"][0] == pytest.approx(slope, rel=rtol, abs=atol), (z, grads)
