"""The NumPy backend: generated modules against the reference evaluator, and as users run them."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given

from dlc.backends.initializers import initial_params
from dlc.backends.reference import evaluate
from dlc.compiler import compile_model, read_model
from dlc.errors import DlcError
from dlc.frontend import load_source
from dlc.grad import differentiate
from dlc.gradcheck import sample_data
from dlc.graph.graph import Graph
from dlc.graph.nodes import Input
from tests.sgd import sgd_step

from .conftest import EXAMPLES, ROOT
from .test_grad import MODELS
from .test_random_networks import specs, to_dlc

TOLERANCE = {"float64": 1e-12, "float32": 2e-5}


def agree(graph: Graph, module: ModuleType, dtype: str, seed: int = 0) -> None:
    """The module's predict, loss and gradients equal the reference evaluator's."""
    program = differentiate(graph)
    rng = np.random.default_rng(seed)
    params = {k: v + rng.normal(0, 0.1, v.shape) for k, v in initial_params(graph.params, seed).items()}
    data = sample_data(graph, 5, rng)
    feeds = {**params, **data}
    roots = [program.graph.loss, *program.grads.values()]
    want = evaluate(roots, feeds)
    cast = {k: v.astype(dtype) for k, v in params.items()}
    xs, ys = (as_given(leaves, data, dtype) for leaves in (graph.inputs, graph.targets))
    value, grads = module.value_and_grad(cast, xs, ys)
    rtol = TOLERANCE[dtype]
    np.testing.assert_allclose(value, want[0], rtol=rtol, atol=rtol)
    assert module.loss(cast, xs, ys) == pytest.approx(value, rel=rtol, abs=rtol)
    for (name, g), w in zip(grads.items(), want[1:], strict=True):
        assert np.asarray(g).dtype == np.dtype(dtype), name
        scale = max(1.0, float(np.max(np.abs(w))))
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * scale, err_msg=name)
    if graph.outputs:
        outs = evaluate(list(program.graph.outputs.values()), feeds)
        got = module.predict(cast, xs)
        got = got if graph.named_outputs else {"output": got}
        for name, want_out in zip(program.graph.outputs, outs, strict=True):
            assert got[name].dtype == np.dtype(dtype)
            np.testing.assert_allclose(got[name], want_out, rtol=rtol, atol=rtol, err_msg=name)


def as_given(leaves: tuple[Input, ...], data: dict[str, np.ndarray], dtype: str) -> object:
    """Inputs (or targets) as a module takes them: None, the one array, or a dict by name."""
    arrays = {n.name: data[n.name].astype(dtype) for n in leaves}
    return None if not arrays else arrays[leaves[0].name] if len(arrays) == 1 else arrays


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_agree_with_the_reference(path: Path, dtype: str) -> None:
    agree(read_model(path).graph, compile_model(path, dtype=dtype), dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_op_agrees_with_the_reference(name: str, dtype: str) -> None:
    agree(load_source(MODELS[name]).graph, compile_model(MODELS[name], dtype=dtype), dtype)


@given(specs())
def test_random_networks_agree_with_the_reference(spec: object) -> None:
    text = to_dlc(spec)  # type: ignore[arg-type]
    agree(load_source(text).graph, compile_model(text), "float64", seed=3)


def test_init_params_draw_what_the_initializers_draw() -> None:
    path = ROOT / "examples" / "xor.dlc"
    module = compile_model(path)
    want = initial_params(read_model(path).graph.params, 7)
    got = module.init_params(7)
    assert list(got) == list(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def cli_compile(path: Path, out: Path, hash_seed: str, backend: str = "numpy") -> bytes:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    command = [sys.executable, "-m", "dlc", "compile", str(path), "-o", str(out), "--backend", backend]
    subprocess.run(command, check=True, env=env)
    return out.read_bytes()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_compiling_twice_gives_identical_bytes(path: Path, tmp_path: Path) -> None:
    first = cli_compile(path, tmp_path / "a.py", "1")
    second = cli_compile(path, tmp_path / "b.py", "2")
    assert first == second


def test_the_module_runs_where_dlc_cannot_be_imported(tmp_path: Path) -> None:
    path = ROOT / "examples" / "xor.dlc"
    cli_compile(path, tmp_path / "xor_model.py", "0")
    script = (
        "import sys; sys.modules['dlc'] = None\n"
        "try:\n    import dlc\nexcept ImportError:\n    pass\nelse:\n    raise SystemExit('dlc importable')\n"
        "import numpy as np, xor_model as m\n"
        "X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float); Y = np.array([[0], [1], [1], [0]], float)\n"
        "p = m.init_params(0); h = m.train(p, X, Y)\n"
        "print(h['loss'][0] > h['loss'][-1], (m.predict(p, X) > 0.5).astype(int).ravel().tolist())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "True [0, 1, 1, 0]"
    tree = ast.parse((tmp_path / "xor_model.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "numpy" in imported and imported - {"numpy"} <= sys.stdlib_module_names
    assert not any(isinstance(n, ast.ImportFrom) for n in ast.walk(tree))


XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
XOR_Y = np.array([[0], [1], [1], [0]], dtype=float)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_xor_trains_to_its_target(dtype: str) -> None:
    m = compile_model(ROOT / "examples" / "xor.dlc", dtype=dtype)
    params = m.init_params(0)
    history = m.train(params, XOR_X, XOR_Y)
    assert all(v.dtype == np.dtype(dtype) for v in params.values())
    assert len(history["loss"]) == m.TRAINING["epochs"]
    predictions = (m.predict(params, XOR_X.astype(dtype)) > 0.5).astype(float)
    np.testing.assert_array_equal(predictions, XOR_Y)
    assert history["loss"][-1] < 0.05


QUADRATIC = "param w : [2] = constant(1)\nloss sum(w * w) / 2"  # gradient g = w


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_is_the_corrected_form(nesterov: bool) -> None:
    m = compile_model(QUADRATIC)
    w = np.array([1.0, -2.0])
    v = np.array([0.5, 0.25])
    params, velocity = {"w": w.copy()}, {"w": v.copy()}
    lr, mu = 0.1, 0.9
    sgd_step(m, params, velocity, None, None, lr, mu, nesterov)
    g = w
    v_new = mu * v + g  # torch.optim.SGD's momentum buffer (after the first step): v <- mu*v + g
    w_new = w - lr * (g + mu * v_new) if nesterov else w - lr * v_new
    np.testing.assert_allclose(velocity["w"], v_new, rtol=1e-15)
    np.testing.assert_allclose(params["w"], w_new, rtol=1e-15)


def test_a_gradient_that_is_the_parameter_is_returned_as_a_copy() -> None:
    # Found by fuzz.backends: the gradient of sum(w * w) / 2 is w itself, and a training
    # step then changed the gradient the caller had been given.
    m = compile_model(QUADRATIC)
    params = {"w": np.array([1.0, -2.0])}
    _, grads = m.value_and_grad(params, None, None)
    assert grads["w"] is not params["w"]
    sgd_step(m, params, {"w": np.zeros(2)}, None, None, 0.1)
    np.testing.assert_array_equal(grads["w"], [1.0, -2.0])


def test_momentum_descends_where_the_plus_sign_would_climb() -> None:
    m = compile_model(QUADRATIC)
    params = {"w": np.array([1.0, -2.0])}
    history = m.train(params, epochs=50, lr=0.1, momentum=0.9, nesterov=True)
    assert history["loss"][-1] < 1e-3 * history["loss"][0]


def test_a_non_finite_loss_stops_the_step_and_keeps_the_parameters() -> None:
    m = compile_model("param w : [2] = constant(1)\nloss sum(log(w))")
    params = {"w": np.array([1.0, 0.0])}
    velocity = {"w": np.zeros(2)}
    with pytest.raises(FloatingPointError, match="loss is -inf"):
        sgd_step(m, params, velocity, None, None, 0.1)
    np.testing.assert_array_equal(params["w"], [1.0, 0.0])


def test_no_python_loop_over_examples_or_elements() -> None:
    for path in EXAMPLES:
        tree = ast.parse(compile_model(path).__dlc_source__)
        loops = (ast.For, ast.While, ast.comprehension)
        for fn in tree.body:
            if isinstance(fn, ast.FunctionDef) and fn.name in ("predict", "loss", "value_and_grad"):
                assert not any(isinstance(n, loops) for n in ast.walk(fn)), fn.name


def test_every_element_of_the_api() -> None:
    m = compile_model(ROOT / "examples" / "seed_chain.dlc", dtype="float32")
    assert m.DTYPE is np.float32
    assert m.PARAM_SHAPES == {"W3": (16, 4), "W2": (16, 16), "W1": (3, 16)}
    assert (m.INPUT_SHAPE, m.TARGET_SHAPE) == ((4,), (3,))
    assert m.FORMULAS["W1"] == "∂L/∂W₁ = Σ_b (δ₃ h₂ᵀ)"
    assert callable(m.train_step) and callable(m.train)


def test_bad_options_are_errors() -> None:
    with pytest.raises(DlcError, match="unknown backend"):
        compile_model(ROOT / "examples" / "xor.dlc", backend="cuda")
    with pytest.raises(DlcError, match="unknown dtype"):
        compile_model(ROOT / "examples" / "xor.dlc", dtype="float16")


def test_a_non_finite_gradient_under_a_finite_loss_restores_the_epoch_start() -> None:
    # d/dw w**0.5 is infinite at w = 0 while the loss there is finite.
    m = compile_model("param w : [2] = constant(1)\nloss sum(pow(w, 0.5))")
    params = {"w": np.array([0.0, 1.0])}
    with pytest.raises(FloatingPointError, match=r"epoch 0: parameter w .*gradient for w is not finite"):
        m.train(params, epochs=3, lr=0.1)
    np.testing.assert_array_equal(params["w"], [0.0, 1.0])


def test_a_hostile_file_name_stays_out_of_the_code(tmp_path: Path) -> None:
    evil = tmp_path / 'x"""; open("CANARY", "w") #\'\'\'.dlc'
    evil.write_text(QUADRATIC)  # no 'model' line: the name comes from the file name
    model = read_model(evil)
    assert model.graph.name.isidentifier()
    from dlc.compiler import compile_source, load_module

    source = compile_source(model)
    ast.parse(source)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        load_module(source, "evil").train({"w": np.ones(2)}, epochs=2)
    finally:
        os.chdir(cwd)
    assert not (tmp_path / "CANARY").exists()
