"""Several named inputs, targets and outputs, and class-index targets.

examples/two_heads.dlc has two inputs (image, meta), two targets (a class
index, a number) and two named outputs. Both backends must give its loss and
gradients as the reference evaluator and torch autograd do (float64, 1e-10),
take the data as a dict or by name, refuse every malformed call with a clear
exception, and train from CSV, .npz and the built-in set; a class-index target
is checked against torch's F.cross_entropy with integer targets.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from dlc.backends.initializers import initial_params
from dlc.backends.reference import evaluate
from dlc.cli import main
from dlc.compiler import compile_model, read_model
from dlc.errors import DlcError
from dlc.frontend import load_source
from dlc.grad import differentiate
from dlc.train.data import load_data, load_inputs
from dlc.train.datasets import two_heads
from dlc.train.predict import predictions_csv

from .conftest import ROOT

MODEL = ROOT / "examples" / "two_heads.dlc"
BACKENDS = ("numpy", "llvm")
ROWS = 7

#: A classifier of three classes against a class-index target, alone.
CLASSIFIER = """
input  x : [4]
target label : class[3]
param  W : [3, 4] = glorot
param  b : [3] = zeros
scores = W @ x + b
output softmax(scores)
loss softmax_cross_entropy(scores, label)
"""


@pytest.fixture(scope="module")
def modules() -> dict[str, ModuleType]:
    """examples/two_heads.dlc compiled once per backend, float64."""
    return {b: compile_model(MODEL, backend=b) for b in BACKENDS}


@pytest.fixture(scope="module")
def classifiers() -> dict[str, ModuleType]:
    return {b: compile_model(CLASSIFIER, backend=b) for b in BACKENDS}


def example_batch(
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(params, X, Y) for two_heads: parameters nudged off their initial values, a random batch."""
    graph = read_model(MODEL).graph
    rng = np.random.default_rng(seed)
    params = {
        k: np.asarray(v + rng.normal(0, 0.1, v.shape)) for k, v in initial_params(graph.params, seed).items()
    }
    X = {"image": rng.normal(size=(ROWS, 8)), "meta": rng.normal(size=(ROWS, 3))}
    Y = {"label": rng.integers(0, 3, ROWS).astype(np.float64), "value": rng.normal(size=ROWS)}
    return params, X, Y


def torch_two_heads(params: dict[str, np.ndarray], X: dict[str, np.ndarray], Y: dict[str, np.ndarray]) -> Any:
    """The loss of two_heads and its gradients by torch autograd, float64."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    image, meta = torch.tensor(X["image"]), torch.tensor(X["meta"])
    trunk = torch.tanh(image @ p["W_image"].T + meta @ p["W_meta"].T + p["b"])
    scores = trunk @ p["W_class"].T + p["b_class"]
    guess = trunk @ p["w_value"] + p["b_value"]
    label = torch.tensor(Y["label"]).long()
    loss = F.cross_entropy(scores, label) + torch.mean((guess - torch.tensor(Y["value"])) ** 2)
    loss.backward()
    return (
        float(loss.detach()),
        {k: v.grad.numpy() for k, v in p.items()},
        torch.softmax(scores, 1).detach().numpy(),
    )


def test_both_backends_agree_with_the_reference_and_torch(modules: dict[str, ModuleType]) -> None:
    params, X, Y = example_batch()
    want_loss, want_grads, want_probs = torch_two_heads(params, X, Y)
    program = differentiate(read_model(MODEL).graph)
    reference = evaluate([program.graph.loss, *program.grads.values()], {**params, **X, **Y})
    assert reference[0] == pytest.approx(want_loss, rel=1e-10)
    for name, grad in zip(program.grads, reference[1:], strict=True):
        np.testing.assert_allclose(grad, want_grads[name], rtol=1e-10, atol=1e-12, err_msg=name)
    for backend, m in modules.items():
        value, grads = m.value_and_grad(params, X, Y)
        assert value == pytest.approx(want_loss, rel=1e-10), backend
        assert m.loss(params, X, Y) == pytest.approx(want_loss, rel=1e-10), backend
        assert list(grads) == list(want_grads)
        for name, grad in grads.items():
            np.testing.assert_allclose(
                grad, want_grads[name], rtol=1e-10, atol=1e-12, err_msg=f"{backend} {name}"
            )
        out = m.predict(params, X)
        assert list(out) == ["probs", "guess"] and out["guess"].shape == (ROWS,)
        np.testing.assert_allclose(out["probs"], want_probs, rtol=1e-10, err_msg=backend)


def test_the_data_may_come_by_name(modules: dict[str, ModuleType]) -> None:
    params, X, Y = example_batch(1)
    for m in modules.values():
        assert m.loss(params, **X, **Y) == m.loss(params, X, Y)
        named = m.predict(params, image=X["image"], meta=X["meta"])
        np.testing.assert_array_equal(named["guess"], m.predict(params, X)["guess"])
        # integer labels, and arrays that are not C-contiguous, are converted as for one input
        labels = {**Y, "label": Y["label"].astype(np.int64)}
        strided = {"image": np.asfortranarray(X["image"]), "meta": X["meta"][::-1][::-1]}
        assert m.loss(params, strided, labels) == pytest.approx(m.loss(params, X, Y), rel=1e-15)


def test_the_module_lists_its_inputs_targets_and_outputs(modules: dict[str, ModuleType]) -> None:
    for m in modules.values():
        assert m.INPUT_SHAPES == {"image": (8,), "meta": (3,)}
        assert m.TARGET_SHAPES == {"label": (), "value": ()}
        assert (m.INPUT_SHAPE, m.TARGET_SHAPE) == (None, None)
        assert m.CLASSES == {"label": 3}
        assert m.OUTPUTS == ["probs", "guess"]


def _without(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}


def _first(d: dict[str, Any], rows: int) -> dict[str, Any]:
    return {k: v[:rows] for k, v in d.items()}


def hostile_calls() -> list[tuple[str, Any, type[Exception], str]]:
    """(label, call of (module, params, X, Y), exception, message pattern)."""
    bad_label = lambda value: lambda m, p, X, Y: m.loss(p, X, {**Y, "label": np.r_[value, Y["label"][1:]]})  # noqa: E731
    return [
        ("missing input", lambda m, p, X, Y: m.loss(p, _without(X, "meta"), Y), ValueError,
         r"X has no 'meta'"),
        ("missing target", lambda m, p, X, Y: m.loss(p, X, _without(Y, "value")), ValueError,
         r"Y has no 'value'"),
        ("unknown input", lambda m, p, X, Y: m.loss(p, {**X, "extra": X["meta"]}, Y), ValueError,
         r"X has 'extra', which is not one of them: the model's inputs are 'image', 'meta'"),
        ("target among inputs", lambda m, p, X, Y: m.predict(p, {**X, "label": Y["label"]}), ValueError,
         r"X has 'label'"),
        ("unknown keyword", lambda m, p, X, Y: m.loss(p, **X, **Y, labl=Y["label"]), TypeError,
         r"unexpected argument 'labl'"),
        ("target given to predict", lambda m, p, X, Y: m.predict(p, **X, label=Y["label"]), TypeError,
         r"predict takes the model's inputs"),
        ("dicts and keywords", lambda m, p, X, Y: m.loss(p, X, Y, image=X["image"]), TypeError,
         r"either as X and Y or by name"),
        ("one array for two inputs", lambda m, p, X, Y: m.predict(p, X["image"]), TypeError,
         r"this model has 2 inputs: pass X as a dict"),
        ("nothing", lambda m, p, X, Y: m.predict(p), TypeError, r"this model has 2 inputs"),
        ("wrong shape", lambda m, p, X, Y: m.loss(p, {**X, "meta": X["meta"][:, :2]}, Y), ValueError,
         r"X\['meta'\] has shape \(7, 2\), expected \(B, 3\)"),
        ("batch sizes differ", lambda m, p, X, Y: m.loss(p, {**X, "meta": X["meta"][:5]}, Y), ValueError,
         r"X\['image'\] has 7 rows but X\['meta'\] has 5"),
        ("target rows differ", lambda m, p, X, Y: m.loss(p, X, {**Y, "value": Y["value"][:3]}), ValueError,
         r"has 7 rows but Y\['value'\] has 3"),
        ("strings", lambda m, p, X, Y: m.loss(p, {**X, "meta": X["meta"].astype(str)}, Y), TypeError,
         r"X\['meta'\] has dtype <U"),
        ("complex", lambda m, p, X, Y: m.predict(p, {**X, "image": X["image"] + 1j}), TypeError,
         r"X\['image'\] has dtype complex128, not numbers"),
        ("None for an input", lambda m, p, X, Y: m.predict(p, {**X, "meta": None}), TypeError,
         r"X\['meta'\] is None"),
        ("X not a dict", lambda m, p, X, Y: m.loss(p, [X["image"], X["meta"]], Y), TypeError,
         r"pass X as a dict"),
        ("label out of range", bad_label(3), ValueError,
         r"Y\['label'\] holds class indices 0..2, but row 0 has 3"),
        ("negative label", bad_label(-1), ValueError, r"but row 0 has -1"),
        ("label not whole", bad_label(1.5), ValueError, r"but row 0 has 1.5"),
        ("label NaN", bad_label(np.nan), ValueError, r"but row 0 has nan"),
        ("huge label", bad_label(1e300), ValueError, r"but row 0 has 1e\+300"),
        ("one-hot labels", lambda m, p, X, Y: m.loss(p, X, {**Y, "label": np.eye(3)[[0] * 7]}), ValueError,
         r"class indices 0..2, not one-hot rows"),
        ("boolean labels", lambda m, p, X, Y: m.loss(p, X, {**Y, "label": np.zeros(7, bool)}), TypeError,
         r"holds booleans"),
        ("empty batch", lambda m, p, X, Y: m.loss(p, _first(X, 0), _first(Y, 0)), ValueError, r"no rows"),
    ]  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", hostile_calls(), ids=lambda c: c[0])
def test_a_malformed_call_is_a_clear_error(
    modules: dict[str, ModuleType], backend: str, case: tuple[str, Any, type[Exception], str]
) -> None:
    _, call, kind, message = case
    params, X, Y = example_batch()
    with pytest.raises(kind, match=message):
        call(modules[backend], params, X, Y)


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_refuses_bad_labels_and_changes_nothing(
    modules: dict[str, ModuleType], backend: str
) -> None:
    m = modules[backend]
    params, X, Y = example_batch()
    before = {k: v.copy() for k, v in params.items()}
    state = m.init_state(params)
    bad = {**Y, "label": np.r_[5.0, Y["label"][1:]]}
    with pytest.raises(ValueError, match=r"Y\['label'\] holds class indices"):
        m.train_step(params, state, X, bad)
    with pytest.raises(ValueError, match=r"Y\['label'\] holds class indices"):
        m.train(params, X, bad, epochs=1)
    with pytest.raises(TypeError, match="pass Y as a dict"):
        m.train(params, X, Y["label"], epochs=1)
    assert state["step"] == 0
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])


@pytest.mark.parametrize("backend", BACKENDS)
def test_labels_changed_during_training_give_a_failed_step_not_a_stray_read(
    modules: dict[str, ModuleType], backend: str
) -> None:
    """A callback may write into the labels between epochs: the next step fails, nothing outside is read."""
    m = modules[backend]
    params, X, Y = example_batch()

    def corrupt(epoch: int, loss: float) -> None:
        Y["label"][:] = 1e9

    with pytest.raises(FloatingPointError, match="epoch 1, step 0: the loss is nan"):
        m.train(params, X, Y, epochs=3, batch_size=ROWS, callback=corrupt)


@pytest.mark.parametrize("backend", BACKENDS)
def test_train_steps_and_epochs_agree_between_backends(modules: dict[str, ModuleType], backend: str) -> None:
    params, X, Y = example_batch(2)
    other = {k: v.copy() for k, v in params.items()}
    history = modules[backend].train(params, X, Y, epochs=3, batch_size=3, seed=4)
    twin = modules["numpy"].train(other, X, Y, epochs=3, batch_size=3, seed=4)
    np.testing.assert_allclose(history["loss"], twin["loss"], rtol=1e-12)
    for k in params:
        np.testing.assert_allclose(params[k], other[k], rtol=1e-12, atol=1e-14, err_msg=k)


def test_a_class_target_matches_torch_cross_entropy(classifiers: dict[str, ModuleType]) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    X = rng.normal(size=(9, 4))
    labels = rng.integers(0, 3, 9)
    for backend, m in classifiers.items():
        params = {k: v + rng.normal(0, 0.3, v.shape) for k, v in m.init_params(1).items()}
        W, b = (torch.tensor(params[k], requires_grad=True) for k in ("W", "b"))
        loss = torch.nn.functional.cross_entropy(torch.tensor(X) @ W.T + b, torch.tensor(labels))
        loss.backward()
        value, grads = m.value_and_grad(params, X, labels)
        assert value == pytest.approx(float(loss.detach()), rel=1e-12), backend
        np.testing.assert_allclose(grads["W"], W.grad.numpy(), rtol=1e-10, atol=1e-14, err_msg=backend)
        np.testing.assert_allclose(grads["b"], b.grad.numpy(), rtol=1e-10, atol=1e-14, err_msg=backend)
        with pytest.raises(ValueError, match=r"Y holds class indices 0..2, but row 2 has 3"):
            m.loss(params, X, np.r_[0, 1, 3, labels[3:]])


def test_a_class_target_never_builds_the_one_hot() -> None:
    """The label is read by the loss and by class_delta (g * (softmax(z) - onehot)) alone: no one-hot."""
    graph = load_source(CLASSIFIER).graph
    program = differentiate(graph)
    label = graph.targets[0]
    kinds = sorted({n.op_name for n in program.nodes() if label in n.inputs})
    assert kinds == ["class_delta", "loss"]


# --- data files -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """builtin:two_heads written as a CSV (columns in declaration order), an .npz and an inputs-only CSV."""
    folder = tmp_path_factory.mktemp("two_heads_data")
    named = two_heads(count=40).named
    assert named is not None
    columns = np.concatenate(
        [named["image"], named["meta"], named["label"][:, None], named["value"][:, None]], 1
    )
    header = ",".join([*(f"image{i}" for i in range(8)), "m0", "m1", "m2", "label", "value"])
    paths = {"csv": folder / "data.csv", "npz": folder / "data.npz", "inputs": folder / "inputs.csv"}
    np.savetxt(paths["csv"], columns, delimiter=",", header=header, comments="", fmt="%.17g")
    np.savetxt(paths["inputs"], columns[:, :11], delimiter=",", header=header.rsplit(",", 2)[0], comments="")
    np.savez(paths["npz"], **named)
    return paths


def test_csv_and_npz_give_the_arrays_by_name(files: dict[str, Path]) -> None:
    graph = read_model(MODEL).graph
    named = two_heads(count=40).named
    assert named is not None
    for kind in ("csv", "npz"):
        data = load_data(str(files[kind]), graph)
        assert isinstance(data.X, dict) and isinstance(data.Y, dict)
        assert list(data.X) == ["image", "meta"] and list(data.Y) == ["label", "value"]
        for k in named:
            got = data.X[k] if k in data.X else data.Y[k]
            np.testing.assert_array_equal(got, named[k], err_msg=f"{kind} {k}")
    inputs = load_inputs(str(files["inputs"]), graph)
    assert isinstance(inputs, dict)
    np.testing.assert_array_equal(inputs["meta"], named["meta"])


def test_a_bad_label_in_a_data_file_names_the_file_row_and_value(
    files: dict[str, Path], tmp_path: Path
) -> None:
    graph = read_model(MODEL).graph
    lines = files["csv"].read_text().splitlines()
    fields = lines[3].split(",")
    fields[11] = "3"
    lines[3] = ",".join(fields)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DlcError) as err:
        load_data(str(bad), graph)
    text = err.value.render()
    assert f"{bad}:4:" in text and "class label 3 is out of range: target label : class[3] takes 0..2" in text
    arrays = dict(np.load(files["npz"]))
    arrays["label"] = np.r_[arrays["label"][:6], 7, arrays["label"][7:]]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(
        DlcError, match=r"bad.npz: array 'label': class label 7 is out of range.*\(example 6\)"
    ):
        load_data(str(tmp_path / "bad.npz"), graph)
    del arrays["meta"]
    np.savez(tmp_path / "short.npz", **arrays)
    with pytest.raises(DlcError, match=r"short.npz has no array 'meta' for the model's input meta : \[3\]"):
        load_data(str(tmp_path / "short.npz"), graph)


def test_a_csv_with_other_columns_says_what_the_model_reads(tmp_path: Path) -> None:
    path = tmp_path / "few.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(
        DlcError, match=r"the file has 3 columns, but model two_heads reads 13 \(8 for input image"
    ):
        load_data(str(path), read_model(MODEL).graph)


# --- the command line --------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_example_trains_and_its_loss_falls(
    backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], files: dict[str, Path]
) -> None:
    save = tmp_path / "two_heads.npz"
    args = [
        "train",
        str(MODEL),
        "--backend",
        backend,
        "--save",
        str(save),
        "--json",
        "--quiet",
        "--val-split",
        "0.2",
    ]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = (tmp_path / "two_heads.history.csv").read_text().splitlines()
    header, first, last = rows[0].split(","), rows[1].split(","), rows[-1].split(",")
    column = header.index("loss")
    assert float(last[column]) < 0.5 * float(first[column])
    assert summary["val_accuracy"] >= 0.95  # examples/README.md: about 97%
    # predict: a group of columns per output, named after it
    assert main(["predict", str(MODEL), "--params", str(save), "--data", str(files["inputs"])]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "probs_0,probs_1,probs_2,guess"
    assert len(lines) == 41
    probs = np.array([[float(v) for v in line.split(",")[:3]] for line in lines[1:]])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)
    # the checkpoint resumes: two more epochs, the history continued
    resume = ["train", str(MODEL), "--backend", backend, "--resume", str(save), "--epochs", "42"]
    assert main([*resume, "--save", str(save), "--val-split", "0.2", "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ran"] == 2
    assert len((tmp_path / "two_heads.history.csv").read_text().splitlines()) == len(rows) + 2


def test_check_and_show_name_every_input_target_and_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(MODEL)]) == 0
    assert main(["show", str(MODEL)]) == 0
    out = capsys.readouterr().out
    assert "passed" in out
    for line in ("input  meta : [B, 3]", "target label : [B] class[3]", "output probs = ", "output guess = "):
        assert line in out, line


# --- the language -------------------------------------------------------------------------------------

HEAD = "input x : [2]\ntarget y : [1]\nparam W : [1, 2] = glorot\n"
CLASS = "input x : [2]\ntarget c : {}\nparam W : [2, 2] = glorot\nloss {}"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (HEAD + "output W @ x\noutput p = W @ x\nloss mse(W @ x, y)", "5:1: error: second output statement"),
        (HEAD + "output p = W @ x\noutput W @ x\nloss mse(W @ x, y)", "5:1: error: second output statement"),
        (HEAD + "output p = W @ x\noutput p = x\nloss mse(W @ x, y)", "5:8: error: 'p' is defined twice"),
        (HEAD + "output p = W @ x + y\nloss mse(p, y)", "the output cannot depend on the target y"),
        (CLASS.format("class[1]", "sum(W @ x)"), "2:17: error: a class target names how many classes"),
        (CLASS.format("klass[2]", "sum(W @ x)"), "2:12: error: unexpected 'klass'"),
        (CLASS.format("class[3]", "softmax_cross_entropy(W @ x, c)"),
         "4:6: error: softmax_cross_entropy against a class[3] target needs 3 class scores, not [2]"),
    ],
)  # fmt: skip
def test_mistakes_with_several_outputs_and_class_targets(source: str, message: str) -> None:
    with pytest.raises(DlcError) as err:
        load_source(source, "model.dlc")
    assert message in err.value.render()


def test_loss_messages_name_the_function_the_user_called() -> None:
    source = "input x : [2]\ntarget y : [3]\nparam W : [2, 2] = glorot\nloss bce_with_logits(W @ x, y)"
    with pytest.raises(DlcError) as err:
        load_source(source)
    assert "bce_with_logits needs a prediction and a target of one shape" in err.value.message
    assert "bce_logits" not in err.value.message.replace("bce_with_logits", "")


def test_predictions_of_a_class_target_model_end_in_the_label() -> None:
    graph = load_source(CLASSIFIER).graph
    text = predictions_csv(graph, np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]]))
    assert text.splitlines() == ["output0,output1,output2,label", "0.1,0.7,0.2,1", "0.5,0.2,0.3,0"]
