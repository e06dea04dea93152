"""The NumPy backend's memory reuse: results built in place, dead arrays dropped, in-place momentum.

Models here are small, so every test compiles with ``reuse_from=0`` (every
array counts as large) next to the plain code (nothing counts as large):
the two must give the same numbers (to rounding: a reused array keeps its
memory layout, which can change the order in which a later product adds),
and neither may write into the caller's arrays.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given

from dlc.backends.initializers import initial_params
from dlc.backends.numpy import write_module
from dlc.backends.numpy.inplace import BATCH, Shapes, chain, fresh
from dlc.compiler import load_module, read_model
from dlc.grad import differentiate
from dlc.grad.formulas import derive
from dlc.gradcheck import sample_data
from tests.sgd import sgd_step

from .conftest import EXAMPLES, ROOT
from .test_grad import MODELS
from .test_numpy_backend import QUADRATIC, TOLERANCE, agree, as_given, cli_compile
from .test_random_networks import specs, to_dlc

PLAIN = 1 << 62


def compiled(
    source: str | Path, dtype: str = "float64", reuse_from: int = 0, optimizer: str | None = None
) -> ModuleType:
    model = read_model(source, optimizer)
    program = differentiate(model.graph)
    text = write_module(program, derive(model.graph), dtype, "model.dlc", reuse_from=reuse_from)
    module = load_module(text, "dlc_model")
    module.__dlc_source__ = text  # type: ignore[attr-defined]
    return module


def batch(source: str | Path, dtype: str, seed: int = 0) -> tuple[dict, object, object]:
    graph = read_model(source).graph
    rng = np.random.default_rng(seed)
    start = initial_params(graph.params, seed)
    params = {k: np.array(v + rng.normal(0, 0.1, v.shape), dtype=dtype) for k, v in start.items()}
    data = sample_data(graph, 6, rng)
    X, Y = (as_given(leaves, data, dtype) for leaves in (graph.inputs, graph.targets))
    return params, X, Y


def copies(*values: object) -> list[object]:
    return [{k: v.copy() for k, v in x.items()} if isinstance(x, dict) else None if x is None else x.copy()
            for x in values]  # fmt: skip


def assert_same(a: object, b: object, rtol: float = 0.0) -> None:
    """Equal structure, dtypes and shapes; equal values (to ``rtol`` of the largest), NaN where NaN."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k], rtol)
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)  # type: ignore[arg-type]
        for x, y in zip(a, b, strict=True):  # type: ignore[call-overload]
            assert_same(x, y, rtol)
    elif a is None or isinstance(a, str):
        assert a == b
    else:
        a, b = np.asarray(a), np.asarray(b)
        assert (a.dtype, a.shape) == (b.dtype, b.shape)
        scale = float(np.max(np.abs(b), initial=1.0, where=np.isfinite(b)))
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale)


def same_numbers(source: str | Path, dtype: str, seed: int = 0) -> None:
    """In-place and plain modules compute the same numbers and leave the caller's arrays alone.

    The steps are sgd's, whatever the model's own optimizer (char_rnn's is adam).
    """
    reused, plain = compiled(source, dtype, optimizer="sgd"), compiled(source, dtype, PLAIN, "sgd")
    params, X, Y = batch(source, dtype, seed)
    before = copies(params, X, Y)
    results = []
    for m in (reused, plain):
        with np.errstate(all="ignore"):
            out: list[object] = [m.loss(params, X, Y), m.value_and_grad(params, X, Y)]
            if read_model(source).graph.outputs:
                out.append(m.predict(params, X))
            assert_same([params, X, Y], before)
            for nesterov in (False, True):
                p, v = copies(params, {k: np.full_like(w, 0.01) for k, w in params.items()})
                try:
                    out.append(sgd_step(m, p, v, X, Y, 0.1, 0.9, nesterov))
                except FloatingPointError:
                    out.append("not finite")
                out += [p, v]
        assert_same([params, X, Y], before)
        results.append(out)
    assert_same(results[0], results[1], rtol=TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_op_in_place_gives_the_same_numbers(name: str, dtype: str) -> None:
    same_numbers(MODELS[name], dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_in_place_give_the_same_numbers(path: Path, dtype: str) -> None:
    same_numbers(path, dtype)
    agree(read_model(path).graph, compiled(path, dtype), dtype)


@given(specs())
def test_random_networks_in_place_give_the_same_numbers(spec: object) -> None:
    text = to_dlc(spec)  # type: ignore[arg-type]
    same_numbers(text, "float64", seed=3)
    agree(read_model(text).graph, compiled(text), "float64", seed=3)


@pytest.mark.parametrize("nesterov", [False, True])
def test_in_place_momentum_leaves_a_gradient_that_is_the_parameter_alone(nesterov: bool) -> None:
    m = compiled(QUADRATIC)  # the gradient is w itself: it must not be scaled in place
    w, v = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    params, velocity = {"w": w.copy()}, {"w": v.copy()}
    sgd_step(m, params, velocity, None, None, 0.1, 0.9, nesterov)
    v_new = 0.9 * v + w  # the gradient is w; torch's buffer: v <- mu*v + g
    np.testing.assert_allclose(velocity["w"], v_new, rtol=1e-15)
    np.testing.assert_allclose(
        params["w"], w - 0.1 * (w + 0.9 * v_new) if nesterov else w - 0.1 * v_new, rtol=1e-15
    )


def test_a_gradient_shared_by_two_parameters_is_not_scaled_twice() -> None:
    text = "input x : [3]\ntarget y : [3]\nparam a : [3] = ones\nparam b : [3] = ones\nloss mse(x + a + b, y)"
    m = compiled(text)
    _, grads = m.value_and_grad(*batch(text, "float64"))
    assert grads["a"] is grads["b"]
    same_numbers(text, "float64")


def test_the_benchmark_step_allocates_like_numpy_by_hand() -> None:
    """784-256-10 at batch 128: a step's peak is its gradients and two hidden-layer arrays."""
    path = ROOT / "benchmarks" / "models" / "mlp_medium.dlc"
    m = compiled(path, reuse_from=1 << 14)
    assert "np.tanh(h1, out=h1)" in m.__dlc_source__
    params = m.init_params(0)
    velocity = {k: np.zeros_like(w) for k, w in params.items()}
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(128, 784)), np.eye(10)[rng.integers(0, 10, 128)]
    sgd_step(m, params, velocity, X, Y, 0.1, 0.9)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        sgd_step(m, params, velocity, X, Y, 0.1, 0.9)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    grads = sum(w.nbytes for w in params.values())
    hidden = 128 * 256 * 8
    assert peak <= grads + 2 * hidden + 64 * 1024, (peak, grads, hidden)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_integer_data_works_as_in_the_plain_code(name: str) -> None:
    """X and Y may come as integers: an in-place step must not write a float into one of them."""
    reused, plain = compiled(MODELS[name]), compiled(MODELS[name], "float64", PLAIN)
    params, X, Y = batch(MODELS[name], "float64")
    X, Y = (None if a is None else np.round(2 * a).astype(np.int64) for a in (X, Y))
    results = []
    for m in (reused, plain):
        with np.errstate(all="ignore"):
            results.append([m.loss(params, X, Y), m.value_and_grad(params, X, Y)])
    assert_same(results[0], results[1], rtol=TOLERANCE["float64"])


def test_a_module_with_in_place_code_is_byte_identical_across_runs(tmp_path: Path) -> None:
    path = ROOT / "benchmarks" / "models" / "mlp_medium.dlc"
    first = cli_compile(path, tmp_path / "a.py", "1")
    assert b"out=z1)" in first and b"del " in first
    assert cli_compile(path, tmp_path / "b.py", "2") == first


def test_a_chain_writes_into_a_dead_input_only_where_it_reads_it_first() -> None:
    full = (BATCH, 4)
    shapes = Shapes({"z": full, "b": (4,), "h": full, "t": full, "y": full})
    floats = {"z", "b", "h", "t"}
    lines, target = chain("np.tanh(b + z)", shapes, full, "out", ["z"], floats)  # type: ignore[misc]
    assert target == "z" and lines == ["out = np.add(b, z, out=z)  # in z's memory (z is not read again)",
                                       "np.tanh(out, out=out)"]  # fmt: skip
    lines, target = chain("t*(1 - h**2)", shapes, full, "out", ["t"], floats)  # type: ignore[misc]
    assert target is None and lines == ["out = h**2", "np.subtract(1, out, out=out)", "out *= t"]
    assert chain("b*b + z", shapes, full, "out", [], floats) is None  # b*b is smaller than the result
    assert chain("np.tanh(z)", shapes, full, "out", [], floats) is None  # one step: the expression as it is
    assert chain("(-y + h)*t", shapes, full, "out", [], floats) is None  # -y may be an integer array


def test_only_new_arrays_count_as_fresh() -> None:
    assert fresh("x @ W.T") and fresh("np.tanh(a + b)") and fresh("t.sum(axis=0)") and fresh("sigmoid(x)")
    assert not fresh("x") and not fresh("x[:, None]") and not fresh("np.swapaxes(x, -1, -2)")
    assert not fresh("np.broadcast_to(x, (B, 3))") and not fresh("DTYPE(1/B)")
    assert not fresh("np.greater(x, 0)")  # a bool array: no place for a float result
