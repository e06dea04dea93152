"""The LLVM backend: the same numbers as the reference evaluator and the NumPy backend, natively.

Every example and every op is checked against the reference evaluator (as
the NumPy backend is), and the two backends against each other through the
whole API: a training step, a trained epoch, a run with per-step reports.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

from dlc.compiler import compile_model, compile_source, load_module, read_model
from dlc.errors import DlcError
from dlc.frontend import load_source
from tests.sgd import sgd_state, sgd_step

from .conftest import EXAMPLES, ROOT
from .test_grad import MODELS
from .test_numpy_backend import QUADRATIC, XOR_X, XOR_Y, agree, cli_compile
from .test_random_networks import specs, to_dlc

#: Relative agreement of the two backends (the issue's bound: 1e-12 in float64, 1e-5 in float32).
BACKENDS_AGREE = {"float64": 1e-12, "float32": 1e-5}


def llvm(source: str | Path, dtype: str = "float64", optimizer: str | None = None) -> object:
    return compile_model(source, backend="llvm", dtype=dtype, optimizer=optimizer)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_agree_with_the_reference(path: Path, dtype: str) -> None:
    agree(read_model(path).graph, llvm(path, dtype), dtype)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_op_agrees_with_the_reference(name: str, dtype: str) -> None:
    agree(load_source(MODELS[name]).graph, llvm(MODELS[name], dtype), dtype)  # type: ignore[arg-type]


@settings(max_examples=10)
@given(specs())
def test_random_networks_agree_with_the_reference(spec: object) -> None:
    text = to_dlc(spec)  # type: ignore[arg-type]
    agree(load_source(text).graph, llvm(text), "float64", seed=3)  # type: ignore[arg-type]


def _state(module: object, seed: int = 1) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    params = module.init_params(seed)  # type: ignore[attr-defined]
    rng = np.random.default_rng(seed)
    params = {k: np.asarray(v + rng.normal(0, 0.1, v.shape), dtype=v.dtype) for k, v in params.items()}
    return params, {k: np.asarray(rng.normal(0, 0.01, v.shape), dtype=v.dtype) for k, v in params.items()}


def _data(module: object, n: int, seed: int = 2) -> tuple[object, object]:
    """Inputs and targets as the module takes them (a dict by name where it has several)."""
    rng = np.random.default_rng(seed)
    classes = module.CLASSES  # type: ignore[attr-defined]

    def arrays(shapes: dict[str, tuple[int, ...]]) -> object:
        found = {
            k: rng.integers(0, classes[k], n).astype(float)
            if k in classes
            else rng.uniform(0.05, 0.95, (n, *s))
            for k, s in shapes.items()
        }
        return None if not found else next(iter(found.values())) if len(found) == 1 else found

    return arrays(module.INPUT_SHAPES), arrays(module.TARGET_SHAPES)  # type: ignore[attr-defined]


def _close(a: dict[str, np.ndarray], b: dict[str, np.ndarray], dtype: str) -> None:
    for k in b:
        scale = max(1.0, float(np.max(np.abs(b[k]))))
        np.testing.assert_allclose(
            a[k], b[k], rtol=BACKENDS_AGREE[dtype], atol=BACKENDS_AGREE[dtype] * scale, err_msg=k
        )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_training_steps_match_the_numpy_backend(path: Path, dtype: str) -> None:
    # sgd's steps, whatever the example's own optimizer (char_rnn's is adam)
    native, numpy_module = llvm(path, dtype, "sgd"), compile_model(path, dtype=dtype, optimizer="sgd")
    (p1, v1), (p2, v2) = _state(numpy_module), _state(numpy_module)
    X, Y = _data(numpy_module, 9)
    for nesterov in (False, True, True):
        a = sgd_step(native, p1, v1, X, Y, 0.05, 0.9, nesterov)  # type: ignore[attr-defined]
        b = sgd_step(numpy_module, p2, v2, X, Y, 0.05, 0.9, nesterov)
        assert a == pytest.approx(b, rel=BACKENDS_AGREE[dtype])
    _close(p1, p2, dtype)
    _close(v1, v2, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_native_epochs_match_the_numpy_training_loop(dtype: str) -> None:
    path = ROOT / "examples" / "seed_chain.dlc"
    native, numpy_module = llvm(path, dtype), compile_model(path, dtype=dtype)
    (p1, v1), (p2, v2) = _state(numpy_module), _state(numpy_module)
    X, Y = _data(numpy_module, 37)  # the last batch of each epoch is short
    options = {"epochs": 4, "batch_size": 8, "lr": 0.1, "momentum": 0.9, "nesterov": True, "seed": 5}
    h1 = native.train(p1, X, Y, state=sgd_state(v1), **options)  # type: ignore[attr-defined]
    h2 = numpy_module.train(p2, X, Y, state=sgd_state(v2), **options)
    np.testing.assert_allclose(h1["loss"], h2["loss"], rtol=BACKENDS_AGREE[dtype])
    _close(p1, p2, dtype)


def test_per_step_reports_come_in_order_with_each_step_loss() -> None:
    path = ROOT / "examples" / "xor.dlc"
    native, numpy_module = llvm(path), compile_model(path)
    seen: dict[str, list[tuple[int, int, int, float]]] = {"llvm": [], "numpy": []}
    for key, module in (("llvm", native), ("numpy", numpy_module)):
        params = module.init_params(0)  # type: ignore[attr-defined]
        X = np.tile(XOR_X, (5, 1))
        Y = np.tile(XOR_Y, (5, 1))
        module.train(params, X, Y, epochs=3, batch_size=3,  # type: ignore[attr-defined]
                     on_step=lambda *report, key=key: seen[key].append(report))  # fmt: skip
    assert [r[:3] for r in seen["llvm"]] == [r[:3] for r in seen["numpy"]]
    np.testing.assert_allclose([r[3] for r in seen["llvm"]], [r[3] for r in seen["numpy"]], rtol=1e-12)


def test_a_callback_returning_false_stops_training() -> None:
    m = llvm(QUADRATIC)
    history = m.train({"w": np.ones(2)}, epochs=10, lr=0.1, callback=lambda epoch, loss: epoch < 2)  # type: ignore[attr-defined]
    assert len(history["loss"]) == 3


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_xor_trains_to_its_target(dtype: str) -> None:
    m = llvm(ROOT / "examples" / "xor.dlc", dtype)
    params = m.init_params(0)  # type: ignore[attr-defined]
    history = m.train(params, XOR_X, XOR_Y)  # type: ignore[attr-defined]
    assert all(v.dtype == np.dtype(dtype) for v in params.values())
    predictions = (m.predict(params, XOR_X.astype(dtype)) > 0.5).astype(float)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(predictions, XOR_Y)
    assert history["loss"][-1] < 0.05


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_is_the_corrected_form(nesterov: bool) -> None:
    m = llvm(QUADRATIC)
    w, v = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    params, velocity = {"w": w.copy()}, {"w": v.copy()}
    sgd_step(m, params, velocity, None, None, 0.1, 0.9, nesterov)  # type: ignore[attr-defined]
    v_new = 0.9 * v + w  # the gradient is w; torch's buffer: v <- mu*v + g
    w_new = w - 0.1 * (w + 0.9 * v_new) if nesterov else w - 0.1 * v_new
    np.testing.assert_allclose(velocity["w"], v_new, rtol=1e-15)
    np.testing.assert_allclose(params["w"], w_new, rtol=1e-15)


def test_a_non_finite_loss_stops_the_step_and_keeps_the_parameters() -> None:
    m = llvm("param w : [2] = constant(1)\nloss sum(log(w))")
    params, velocity = {"w": np.array([1.0, 0.0])}, {"w": np.zeros(2)}
    with pytest.raises(FloatingPointError, match="loss is -inf"):
        sgd_step(m, params, velocity, None, None, 0.1)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(params["w"], [1.0, 0.0])
    np.testing.assert_array_equal(velocity["w"], [0.0, 0.0])


def test_a_diverging_epoch_is_undone_and_named() -> None:
    m = llvm("param w : [2] = constant(1)\nloss sum(exp(w * w))")
    params = {"w": np.array([1.0, 2.0])}
    with pytest.raises(FloatingPointError, match=r"epoch \d+, step 0: the loss is inf"):
        m.train(params, epochs=50, lr=1.0)  # type: ignore[attr-defined]
    assert np.all(np.isfinite(params["w"]))


def test_a_non_finite_gradient_under_a_finite_loss_restores_the_epoch_start() -> None:
    m = llvm("param w : [2] = constant(1)\nloss sum(pow(w, 0.5))")
    params = {"w": np.array([0.0, 1.0])}
    with pytest.raises(FloatingPointError, match=r"epoch 0: parameter w .*gradient for w is not finite"):
        m.train(params, epochs=3, lr=0.1)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(params["w"], [0.0, 1.0])


def test_parameters_of_the_wrong_kind_are_refused_before_any_native_call() -> None:
    m = llvm(ROOT / "examples" / "xor.dlc", "float32")
    params = m.init_params(0)  # type: ignore[attr-defined]
    velocity = {k: np.zeros_like(v) for k, v in params.items()}
    wrong = {**params, "W1": params["W1"].astype(np.float64)}
    with pytest.raises(
        TypeError, match=r"params\['W1'\] has dtype float64, but this module computes in float32"
    ):
        sgd_step(m, wrong, velocity, XOR_X, XOR_Y, 0.1)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"X has shape \(4, 3\), expected \(B, 2\)"):
        m.loss(params, np.zeros((4, 3)), XOR_Y)  # type: ignore[attr-defined]
    # Reading is lenient: float64 parameters are converted, as NumPy would.
    assert m.loss(wrong, XOR_X, XOR_Y) == pytest.approx(m.loss(params, XOR_X, XOR_Y), rel=1e-6)  # type: ignore[attr-defined]


def test_a_read_only_parameter_is_refused_for_training_even_after_reading() -> None:
    m = llvm(ROOT / "examples" / "xor.dlc")
    params = m.init_params(0)  # type: ignore[attr-defined]
    velocity = {k: np.zeros_like(v) for k, v in params.items()}
    params["W1"].flags.writeable = False
    m.predict(params, XOR_X)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"params\['W1'\] is read-only: training updates it in place"):
        sgd_step(m, params, velocity, XOR_X, XOR_Y, 0.1)  # type: ignore[attr-defined]


def test_an_array_replaced_in_the_dict_between_steps_is_the_one_trained() -> None:
    m = llvm(ROOT / "examples" / "xor.dlc")
    params = m.init_params(0)  # type: ignore[attr-defined]
    velocity = {k: np.zeros_like(v) for k, v in params.items()}
    sgd_step(m, params, velocity, XOR_X, XOR_Y, 0.1)  # type: ignore[attr-defined]
    old, params["W1"] = params["W1"], params["W1"].copy()
    kept = old.copy()
    sgd_step(m, params, velocity, XOR_X, XOR_Y, 0.1)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(old, kept)  # the replaced array is left alone
    assert not np.array_equal(params["W1"], kept)
    # The same arrays under swapped names are a different binding too.
    swapped = dict(reversed(list(params.items())))
    want = compile_model(ROOT / "examples" / "xor.dlc").loss(swapped, XOR_X, XOR_Y)
    assert m.loss(swapped, XOR_X, XOR_Y) == pytest.approx(want, rel=1e-12)  # type: ignore[attr-defined]


def test_the_same_arrays_changed_in_place_are_read_afresh() -> None:
    m = llvm(ROOT / "examples" / "xor.dlc")
    params = m.init_params(0)  # type: ignore[attr-defined]
    X = XOR_X.copy()
    before = m.predict(params, X)  # type: ignore[attr-defined]
    params["W1"] *= 2
    X[0] = 1.0
    after = m.predict(params, X)  # type: ignore[attr-defined]
    want = compile_model(ROOT / "examples" / "xor.dlc").predict(params, X)
    np.testing.assert_allclose(after, want, rtol=1e-12)
    assert not np.allclose(before, after)


def test_scratch_is_allocated_once_for_a_batch_size() -> None:
    m = llvm(ROOT / "examples" / "xor.dlc")
    params = m.init_params(0)  # type: ignore[attr-defined]
    velocity = {k: np.zeros_like(v) for k, v in params.items()}
    sgd_step(m, params, velocity, XOR_X, XOR_Y, 0.1)  # type: ignore[attr-defined]
    scratch = m._native().scratch  # type: ignore[attr-defined]
    for _ in range(20):
        sgd_step(m, params, velocity, XOR_X[:3], XOR_Y[:3], 0.1)  # type: ignore[attr-defined]
    m.train(params, np.tile(XOR_X, (8, 1)), np.tile(XOR_Y, (8, 1)), epochs=3, batch_size=4)  # type: ignore[attr-defined]
    assert m._native().scratch is scratch  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "path",
    [*EXAMPLES, ROOT / "benchmarks" / "models" / "mlp_medium.dlc"],
    ids=lambda p: p.name,
)
def test_blas_and_generated_loops_give_the_same_products(path: Path) -> None:
    """Every product of a model through BLAS (threshold 0), then through the generated loops."""
    m = llvm(path)
    params, _ = _state(m)
    X, Y = _data(m, 130)
    native = m._native()  # type: ignore[attr-defined]
    gemm, threshold = (native.slot[k] for k in ("GEMM", "BLAS_MIN"))
    assert native.ctx[gemm] != 0, "SciPy's BLAS was not found"
    saved = native.ctx.copy()
    try:
        native.ctx[threshold] = 0
        with_blas = m.value_and_grad(params, X, Y)  # type: ignore[attr-defined]
        native.ctx[gemm] = 0
        loops = m.value_and_grad(params, X, Y)  # type: ignore[attr-defined]
    finally:
        native.ctx[gemm], native.ctx[threshold] = saved[gemm], saved[threshold]
    assert with_blas[0] == pytest.approx(loops[0], rel=1e-12)
    _close(with_blas[1], loops[1], "float64")


def test_compiled_code_comes_from_the_cache_the_second_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DLC_CACHE_DIR", str(tmp_path))
    first = llvm(ROOT / "examples" / "xor.dlc")
    params = first.init_params(0)  # type: ignore[attr-defined]
    value = first.loss(params, XOR_X, XOR_Y)  # type: ignore[attr-defined]
    cached = sorted(tmp_path.iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".o"
    second = llvm(ROOT / "examples" / "xor.dlc")
    assert second.loss(params, XOR_X, XOR_Y) == value  # type: ignore[attr-defined]
    assert sorted(tmp_path.iterdir()) == cached


def test_an_op_the_backend_cannot_compile_is_an_error_naming_it() -> None:
    from llvmlite import ir

    from dlc.backends.llvm.ops import define_kernel
    from dlc.backends.llvm.scalar import UnsupportedError
    from dlc.graph.nodes import Tangent

    class Mystery(Tangent):  # an op no backend has a kernel for
        op_name = "mystery"

    with pytest.raises(UnsupportedError, match="no code for the op mystery"):
        define_kernel(ir.Module(), ir.DoubleType(), Mystery((), (2,), False, "m"), "k")


def test_a_body_function_it_does_not_know_is_an_error_naming_it() -> None:
    import sympy
    from llvmlite import ir

    from dlc.backends.llvm.kernels import Kernel
    from dlc.backends.llvm.scalar import BodyEmitter, UnsupportedError

    fn = ir.Function(ir.Module(), ir.FunctionType(ir.DoubleType(), [ir.DoubleType()]), "f")
    emitter = BodyEmitter(Kernel(fn, ir.DoubleType()), [fn.args[0]])
    with pytest.raises(UnsupportedError, match="no code for the function gamma"):
        emitter.emit(sympy.gamma(sympy.Symbol("x0", real=True)))


def test_bad_options_are_errors() -> None:
    with pytest.raises(DlcError, match="unknown backend 'cuda'; choose one of numpy, llvm"):
        compile_model(ROOT / "examples" / "xor.dlc", backend="cuda")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_compiling_twice_gives_identical_bytes(path: Path, tmp_path: Path) -> None:
    first = cli_compile(path, tmp_path / "a.py", "1", "llvm")
    second = cli_compile(path, tmp_path / "b.py", "2", "llvm")
    assert first == second


def test_the_module_runs_where_dlc_cannot_be_imported(tmp_path: Path) -> None:
    path = ROOT / "examples" / "xor.dlc"
    cli_compile(path, tmp_path / "xor_native.py", "0", "llvm")
    script = (
        "import sys; sys.modules['dlc'] = None\n"
        "import numpy as np, xor_native as m\n"
        "X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float); Y = np.array([[0], [1], [1], [0]], float)\n"
        "p = m.init_params(0); h = m.train(p, X, Y)\n"
        "print(h['loss'][0] > h['loss'][-1], (m.predict(p, X) > 0.5).astype(int).ravel().tolist())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "True [0, 1, 1, 0]"
    tree = ast.parse((tmp_path / "xor_native.py").read_text())
    nodes = list(ast.walk(tree))
    imported = {a.name.split(".")[0] for n in nodes if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in nodes if isinstance(n, ast.ImportFrom) and n.module}
    assert imported - {"numpy", "llvmlite", "scipy"} <= sys.stdlib_module_names
    assert "dlc" not in imported


def test_the_ir_is_kept_in_the_module_and_names_the_model_values() -> None:
    source = compile_source(read_model(ROOT / "examples" / "seed_chain.dlc"), backend="llvm")
    module = load_module(source, "seed")
    ir_text = module.LLVM_IR
    for name in ("predict", "loss", "value_and_grad", "train_step", "train_epoch", "k_h1", "k_d_W1"):
        assert f'@"{name}"' in ir_text, name
    assert "∂L/∂W₁" in source  # the formulas sit in the docstring
    step = ir_text[ir_text.index('define internal double @"step"') :].split("\n}\n")[0]
    assert '@"k_ell_and_softmax"' in step, "the loss and its softmax come from one pass of exp"
    assert '@"k_yhat"' not in step


def test_sin_and_cos_of_huge_numbers_are_folded_as_numpy_computes_them() -> None:
    """mathlib's sin and cos are accurate for |x| < 1.3e7; of a number alone they are folded."""
    source = "param w : [] = ones\nloss w * cos(1.7976931348623157e308) + w ** 2 * sin(1e300)"
    w = {"w": np.array(1.5)}
    native = compile_model(source, backend="llvm").loss(w, None, None)
    assert native == pytest.approx(1.5 * np.cos(1.7976931348623157e308) + 2.25 * np.sin(1e300), rel=1e-14)
    assert native == pytest.approx(compile_model(source, backend="numpy").loss(w, None, None), rel=1e-14)
