"""A generated module is an API: every entry point checks what it is given, in that very call.

Both backends' modules take the same arguments and refuse the same
mistakes with the same message; native code reads and writes only arrays
checked in the call that uses them. The mistakes below were each found by
calling the modules as a hostile user would; the hypothesis test at the end
draws many more, in a process of its own so that a crash is seen.
"""

from __future__ import annotations

import builtins
import os
import re
import subprocess
import sys
import threading
from types import ModuleType

import numpy as np
import pytest

from dlc.compiler import compile_model
from tests.sgd import sgd_state, sgd_step

from .conftest import ROOT
from .hostile_calls import MODELS

TRAINING = "train { optimizer = sgd(lr = 0.1, momentum = 0.9)  batch_size = 4  epochs = 3 }\n"
CLASSIFIER = MODELS["classifier"] + TRAINING
REGRESSION = """
input  x : [3]
target y : [1]
param w : [1, 3] = normal(0.5)
param c : [1] = zeros
output w @ x + c
loss mse(w @ x + c, y)
"""
BACKENDS = ["numpy", "llvm"]

_modules: dict[tuple[str, str, str], ModuleType] = {}


def module(backend: str, dtype: str = "float64", text: str = CLASSIFIER) -> ModuleType:
    key = (text, backend, dtype)
    if key not in _modules:
        _modules[key] = compile_model(text, backend=backend, dtype=dtype)
    return _modules[key]


def data(rows: int = 16, dtype: str = "float64") -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    X = rng.standard_normal((rows, 4)).astype(dtype)
    Y = np.eye(3, dtype=dtype)[rng.integers(0, 3, rows)]
    return X, Y


def state(m: ModuleType, seed: int = 0) -> tuple[dict, dict]:
    params = m.init_params(seed)
    return params, {k: np.zeros_like(v) for k, v in params.items()}


def raises_alike(call, error: type[Exception], match: str) -> None:  # type: ignore[no-untyped-def]
    """``call(m)`` raises ``error`` matching ``match`` with both backends, with one message."""
    messages = []
    for backend in BACKENDS:
        with pytest.raises(error, match=match) as info:
            call(module(backend))
        messages.append(str(info.value))
    assert messages[0] == messages[1], messages


# ------------------------------------------------------------------ missing data


@pytest.mark.parametrize(
    "call",
    [
        lambda m, p, v, X, Y: m.predict(p, None),
        lambda m, p, v, X, Y: m.loss(p, X, None),
        lambda m, p, v, X, Y: m.value_and_grad(p, X, None),
        lambda m, p, v, X, Y: sgd_step(m, p, v, X, None, 0.1),
        lambda m, p, v, X, Y: m.train(p, X, None),
        lambda m, p, v, X, Y: m.train(p, None, Y),
        lambda m, p, v, X, Y: m.train(p),
    ],
    ids=["predict", "loss", "value_and_grad", "train_step", "train-Y", "train-X", "train"],
)
def test_missing_data_is_a_type_error_even_as_the_first_call(call) -> None:  # type: ignore[no-untyped-def]
    X, Y = data()
    for backend in BACKENDS:
        m = compile_model(CLASSIFIER, backend=backend)  # a fresh module: nothing bound before
        p, v = state(m)
        with pytest.raises(TypeError, match=r"^[XY] is None; this model's (input|target) needs an array"):
            call(m, p, v, X, Y)


@pytest.mark.parametrize("entry", ["loss", "value_and_grad", "train_step", "train"])
def test_an_empty_batch_is_a_value_error_even_as_the_first_call(entry: str) -> None:
    X, Y = data()
    for backend in BACKENDS:
        m = compile_model(CLASSIFIER, backend=backend)
        p, v = state(m)
        args = {"train_step": (p, sgd_state(v), X[:0], Y[:0]), "train": (p, X[:0], Y[:0])}.get(
            entry, (p, X[:0], Y[:0])
        )
        with pytest.raises(ValueError, match=r"X has no rows: the loss is a mean over the examples"):
            getattr(m, entry)(*args)


def test_predict_of_no_rows_is_no_rows() -> None:
    X, _ = data()
    for backend in BACKENDS:
        m = module(backend, "float32")
        out = m.predict(m.init_params(0), X[:0])
        assert out.shape == (0, 3) and out.dtype == np.float32


# ------------------------------------------------------------------ batches that disagree


def test_targets_must_have_one_row_per_example() -> None:
    X, Y = data()
    raises_alike(lambda m: m.loss(m.init_params(0), X, Y[:2]), ValueError, "X has 16 rows but Y has 2")
    raises_alike(lambda m: m.train(m.init_params(0), X, Y[:2]), ValueError, "X has 16 rows but Y has 2")
    for dtype in ("float32", "float64"):
        for backend in BACKENDS:
            m = module(backend, dtype)
            with pytest.raises(ValueError, match="one target per example"):
                m.loss(m.init_params(0), X.astype(dtype), Y[:2].astype(dtype))


def test_a_huge_batch_against_one_target_row_is_refused_before_any_native_call() -> None:
    X, Y = np.zeros((4_000_000, 4)), np.zeros((1, 3))
    raises_alike(lambda m: m.loss(m.init_params(0), X, Y), ValueError, "X has 4000000 rows but Y has 1")
    raises_alike(
        lambda m: m.train(m.init_params(0), X, Y, batch_size=4096),
        ValueError,
        "X has 4000000 rows but Y has 1",
    )


def test_train_checks_the_shapes_of_its_data() -> None:
    X, Y = data()
    wide = X.reshape(-1).copy()[: 16 * 3].reshape(16, 3)
    raises_alike(
        lambda m: m.train(m.init_params(0), wide, Y), ValueError, r"X has shape \(16, 3\), expected \(B, 4\)"
    )
    labels = Y.argmax(axis=1)
    raises_alike(
        lambda m: m.train(m.init_params(0), X, labels), ValueError, r"Y has shape \(16,\), expected \(B, 3\)"
    )


def test_a_column_target_given_flat_is_refused_with_a_hint() -> None:
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((10, 3)), rng.standard_normal(10)
    for backend in BACKENDS:
        m = module(backend, text=REGRESSION)
        with pytest.raises(ValueError, match=r"Y has shape \(10,\), expected \(B, 1\).*reshape\(-1, 1\)"):
            m.loss(m.init_params(0), X, y)
        with pytest.raises(ValueError, match="X has 1 rows but Y has 10"):
            m.loss(m.init_params(0), X[:1], y[:, None])


# ------------------------------------------------------------------ nothing kept between calls


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_freed_target_is_never_read_again(backend: str) -> None:
    m = compile_model(CLASSIFIER, backend=backend)
    p, _ = state(m)
    X, Y = data()
    big = np.tile(Y, (1000, 1))
    with pytest.raises(ValueError):
        m.loss(p, X, big)
    del big
    with pytest.raises(TypeError, match="Y is None"):
        m.loss(p, X, None)
    assert m.loss(p, X, Y) == pytest.approx(module("numpy").loss(p, X, Y), rel=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_step_trains_the_arrays_it_is_given_whatever_came_between(backend: str) -> None:
    m, reference = compile_model(CLASSIFIER, backend=backend), module("numpy")
    X, Y = data()
    p, v = state(m, 0)
    want_p, want_v = state(reference, 0)
    other, other_want = m.init_params(1), reference.init_params(1)
    for between in ("predict", "train", "nothing"):
        sgd_step(m, p, v, X, Y, 0.1, 0.9)
        sgd_step(reference, want_p, want_v, X, Y, 0.1, 0.9)
        if between == "predict":
            m.predict(other, X)
        elif between == "train":
            m.train(other, X, Y, epochs=1)
            reference.train(other_want, X, Y, epochs=1)
    sgd_step(m, p, v, X, Y, 0.1, 0.9)
    sgd_step(reference, want_p, want_v, X, Y, 0.1, 0.9)
    for got, want in ((p, want_p), (v, want_v), (other, other_want)):
        for k in got:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_callback_that_predicts_with_other_parameters_trains_nothing_else(backend: str) -> None:
    m = compile_model(CLASSIFIER, backend=backend)
    X, Y = data()
    p, _ = state(m, 0)
    ema, _ = state(m, 1)
    frozen = {k: a.copy() for k, a in ema.items()}
    outputs = []
    m.train(p, X, Y, epochs=3, callback=lambda epoch, loss: outputs.append(m.predict(ema, X)))
    for k in ema:
        np.testing.assert_array_equal(ema[k], frozen[k])
    want, _ = state(module("numpy"), 0)
    module("numpy").train(want, X, Y, epochs=3)
    for k in p:
        np.testing.assert_allclose(p[k], want[k], rtol=1e-12, atol=1e-14)
    assert len(outputs) == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_arrays_reshaped_in_place_after_a_call_are_refused(backend: str) -> None:
    m = compile_model(CLASSIFIER, backend=backend)
    X, Y = data(16)
    p, v = state(m)
    m.predict(p, X)
    X.shape = (32, 2)
    with pytest.raises(ValueError, match=r"X has shape \(32, 2\), expected \(B, 4\)"):
        m.predict(p, X)
    X.shape = (16, 4)
    sgd_step(m, p, v, X, Y, 0.1)
    p["W1"].shape = (4, 8)
    with pytest.raises(ValueError, match=r"params\['W1'\] has shape \(4, 8\), expected \(8, 4\)"):
        m.predict(p, X)
    with pytest.raises(ValueError, match=r"params\['W1'\] has shape \(4, 8\), expected \(8, 4\)"):
        sgd_step(m, p, v, X, Y, 0.1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_array_given_a_new_buffer_in_place_is_read_at_its_new_address(backend: str) -> None:
    """``__setstate__`` swaps an array's memory under the same object: addresses are read per call."""
    m = compile_model(CLASSIFIER, backend=backend)
    X, Y = data()
    p, v = state(m)
    sgd_step(m, p, v, X, Y, 0.1)
    w = p["W1"]
    old = w.ctypes.data
    w.__setstate__(np.zeros((64, 4)).__reduce__()[2])  # a larger buffer, elsewhere
    with pytest.raises(ValueError, match=r"params\['W1'\] has shape \(64, 4\), expected \(8, 4\)"):
        m.loss(p, X, Y)
    blocker = np.full((8, 4), 1e9)  # most likely where W1's first buffer was
    replacement = np.full((8, 4), 0.25)
    w.__setstate__(replacement.__reduce__()[2])
    assert w.ctypes.data != old
    want = module("numpy").loss({**p, "W1": replacement}, X, Y)
    assert m.loss(p, X, Y) == pytest.approx(want, rel=1e-12)
    assert blocker[0, 0] == 1e9


def test_aliased_training_arrays_are_refused() -> None:
    X, Y = data()
    raises_alike(
        lambda m: sgd_step(m, *([m.init_params(0)] * 2), X, Y, 0.1),
        ValueError,
        r"params\['W1'\] and state\['velocity'\]\['W1'\] are the same array",
    )

    def overlapping(m: ModuleType) -> None:
        p, v = state(m)
        v["b2"] = p["W2"].reshape(-1)[:3]
        sgd_step(m, p, v, X, Y, 0.1)

    raises_alike(overlapping, ValueError, r"params\['W2'\] and state\['velocity'\]\['b2'\] share memory")


# ------------------------------------------------------------------ kinds and dtypes


def test_both_backends_refuse_the_same_kinds_with_the_same_words() -> None:
    X, Y = data()
    raises_alike(
        lambda m: m.loss([1, 2], X, Y), TypeError, "params must be a dict of arrays by parameter name"
    )
    raises_alike(lambda m: m.loss({"W1": 1}, X, Y), ValueError, "params has no 'b1', 'W2', 'b2'")
    raises_alike(
        lambda m: m.loss(m.init_params(0), X + 1j, Y), TypeError, "X has dtype complex128, not numbers"
    )
    raises_alike(lambda m: m.loss(m.init_params(0), X.astype(str), Y), TypeError, "X has dtype <U")
    raises_alike(
        lambda m: m.predict(m.init_params(0), X[0]), ValueError, r"add the batch axis with X\[None\]"
    )
    raises_alike(
        lambda m: m.train(m.init_params(0), X, Y, epochs=1.5), TypeError, "epochs must be a whole number"
    )
    raises_alike(
        lambda m: m.train(m.init_params(0), X, Y, batch_size=0), ValueError, "batch_size must be at least 1"
    )
    raises_alike(lambda m: m.train(m.init_params(0), X, Y, lr="0.1"), TypeError, "lr must be a real number")
    raises_alike(
        lambda m: m.train(m.init_params(0), X, Y, callback=5), TypeError, "callback must be a function"
    )
    raises_alike(
        lambda m: sgd_step(m, m.init_params(0), {k: v.T for k, v in m.init_params(0).items()}, X, Y, 0.1),
        ValueError,
        r"state\['velocity'\]\['W1'\] has shape \(4, 8\), expected \(8, 4\)",
    )
    raises_alike(
        lambda m: sgd_step(
            m, {**m.init_params(0), "W1": np.asfortranarray(np.zeros((8, 4)))}, state(m)[1], X, Y, 0.1
        ),
        ValueError,
        r"params\['W1'\] is not C-contiguous",
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_float32_module_returns_float32_whatever_it_is_given(backend: str) -> None:
    m = module(backend, "float32")
    X, Y = data()
    p = {k: v.astype(np.float64) for k, v in m.init_params(0).items()}
    Xi, Yi = (X * 4).astype(np.int64), Y.astype(np.int64)
    assert m.predict(p, Xi).dtype == np.float32
    value, grads = m.value_and_grad(p, Xi, Yi)
    assert isinstance(value, float) and {g.dtype for g in grads.values()} == {np.dtype(np.float32)}


def test_lists_and_integer_data_are_read_as_numbers_alike() -> None:
    X, Y = data()
    got = [module(b).loss(module(b).init_params(0), X.tolist(), Y.astype(int)) for b in BACKENDS]
    assert got[0] == pytest.approx(got[1], rel=1e-12)


# ------------------------------------------------------------------ threads


def test_a_module_shared_between_threads_trains_as_if_alone() -> None:
    m = compile_model(CLASSIFIER, backend="llvm")
    X, Y = data(512)
    p, _ = state(m)
    other, _ = state(m, 1)
    frozen = {k: a.copy() for k, a in other.items()}
    stop, errors = threading.Event(), []

    def predicting() -> None:
        try:
            while not stop.is_set():
                m.predict(other, X)
                m.loss(other, X, Y)
        except Exception as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=predicting)
    thread.start()
    try:
        m.train(p, X, Y, epochs=40, batch_size=8)
    finally:
        stop.set()
        thread.join()
    assert not errors
    for k in other:
        np.testing.assert_array_equal(other[k], frozen[k])
    want, _ = state(module("llvm"), 0)
    module("llvm").train(want, X, Y, epochs=40, batch_size=8)
    for k in p:
        np.testing.assert_array_equal(p[k], want[k])


# ------------------------------------------------------------------ everything else, drawn


@pytest.mark.slow
def test_hostile_calls_to_every_entry_point_in_a_process_of_their_own() -> None:
    examples = os.environ.get("DLC_HOSTILE_EXAMPLES", "1500")
    done = subprocess.run(
        [sys.executable, "-m", "tests.hostile_calls", "--examples", examples],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    last = done.stderr.strip().splitlines()[-40:]
    assert done.returncode == 0, f"exit {done.returncode}; the last call and what followed:\n" + "\n".join(
        last
    )
    assert "all calls checked" in done.stdout


def test_where_array_objects_do_not_hold_their_data_pointer_slots_point_into_cells() -> None:
    """The LLVM module reads each array's data pointer through its slot, or through a cell of its own."""
    X, Y = data()
    want = module("numpy")
    results = []

    def run(m: ModuleType) -> list[float]:
        p, v = state(m)
        return [m.loss(p, X, Y), sgd_step(m, p, v, X, Y, 0.1, 0.9), *m.train(p, X, Y, epochs=2)["loss"]]

    for holds in (True, False):
        m = compile_model(CLASSIFIER, backend="llvm")
        m._data_field_holds = lambda offset, holds=holds: holds  # type: ignore[attr-defined]
        results.append(run(m))
        assert (m._native().cells is None) == holds  # type: ignore[attr-defined]
    expected = run(want)
    for got in results:
        np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_the_module_guide_runs_and_its_messages_are_the_modules() -> None:
    text = (ROOT / "docs" / "module.md").read_text(encoding="utf-8")
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {}
    exec(compile(code, "docs/module.md", "exec"), namespace)  # the guide's own example
    m, params, X, Y = (namespace[k] for k in ("m", "params", "X", "Y"))
    shown = re.findall(r">>> (.*)\n(\w+): (.*)", text)
    assert len(shown) == 2
    for call, error, message in shown:
        with pytest.raises(getattr(builtins, error)) as info:
            eval(call, {"m": m, "params": params, "X": X, "Y": Y})  # the guide's own calls
        assert str(info.value) == message
