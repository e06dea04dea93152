"""A chain of named values is not nesting: each named value's body counts its own depth.

``h1 = tanh(W1 @ x)``, ``h2 = tanh(W2 @ h1)``, ... each on its own line is a
long model, not a deep expression; dlc lowers the named values a body uses
before the body (in dependency order, by a loop), so only nesting written
within one body, or through the functions it calls, meets the limit.

The chain of matrix layers is checked in the LLVM backend up to its module
text: JIT-compiling its ~800 kernels takes LLVM's optimiser about 0.1 s a
layer, which is ``benchmarks/compile_time.py``'s business, not a test's. A
chain of named elementwise values as long runs in both backends.
"""

from __future__ import annotations

import numpy as np
import pytest

from dlc.backends.reference import evaluate
from dlc.compiler import compile_source, load_module
from dlc.errors import DlcError
from dlc.frontend import load_source
from dlc.frontend.declarations import declare, used_values
from dlc.frontend.lower import MAX_NESTING
from dlc.frontend.parser import parse

LAYERS = 160  # over 150: at three levels a layer, 100 named layers were past the old limit of 300


def matrix_chain(n: int) -> str:
    lines = ["input x : [3]", "target y : [3]"]
    lines += [f"param W{i} : [3, 3] = glorot" for i in range(1, n + 1)]
    lines += [f"h{i} = tanh(W{i} @ {'h' + str(i - 1) if i > 1 else 'x'})" for i in range(1, n + 1)]
    lines += [f"output h{n}", f"loss mse(h{n}, y)"]
    return "\n".join(lines) + "\n"


def elementwise_chain(n: int) -> str:
    lines = ["input x : [3]", "target y : [3]", "param w : [3] = constant(0.9)", "h0 = w * x"]
    lines += [f"h{i} = h{i - 1} * w + x" for i in range(1, n + 1)]
    lines += [f"output h{n}", f"loss mse(h{n}, y)"]
    return "\n".join(lines) + "\n"


def batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(4, 3)), rng.normal(size=(4, 3))


def test_a_long_chain_of_named_layers_compiles_and_matches_the_reference() -> None:
    model = load_source(matrix_chain(LAYERS))
    module = load_module(compile_source(model), "named_chain")
    params = module.init_params(0)
    X, Y = batch()
    feeds = {"x": X, "y": Y, **params}
    (want,) = evaluate([model.graph.loss], feeds)
    assert module.loss(params, X, Y) == pytest.approx(float(want), rel=1e-12)
    assert "define" in compile_source(model, backend="llvm")


def test_a_chain_of_named_elementwise_values_runs_in_both_backends() -> None:
    model = load_source(elementwise_chain(LAYERS))
    X, Y = batch()
    numpy_module = load_module(compile_source(model), "named_chain_np")
    llvm_module = load_module(compile_source(model, backend="llvm"), "named_chain_llvm")
    params = numpy_module.init_params(0)
    loss, grads = numpy_module.value_and_grad(params, X, Y)
    native_loss, native_grads = llvm_module.value_and_grad(params, X, Y)
    assert native_loss == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(native_grads["w"], grads["w"], rtol=1e-10)
    (want,) = evaluate([model.graph.loss], {"x": X, "y": Y, **params})
    assert loss == pytest.approx(float(want), rel=1e-12)


def test_named_values_are_lowered_in_dependency_order() -> None:
    decls = declare(parse(matrix_chain(5)))
    assert decls.loss is not None
    assert used_values(decls, decls.loss.expr) == ["h1", "h2", "h3", "h4", "h5"]


def test_nesting_within_one_body_still_counts() -> None:
    source = "param w : [] = zeros\n" + "".join(
        f"f{i}(u) = sin(f{i - 1}(u))\n" if i else "f0(u) = u\n" for i in range(MAX_NESTING)
    )
    with pytest.raises(DlcError, match="more than 300 levels"):
        load_source(source + f"loss f{MAX_NESTING - 1}(w)\n")


def test_a_cycle_of_named_values_is_still_reported() -> None:
    with pytest.raises(DlcError, match="defined in terms of itself"):
        load_source("param w : [] = zeros\na = b + w\nb = sin(a)\nloss a\n")
