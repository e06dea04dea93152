"""The teaching examples (examples/*.dlc) do what their headers and examples/README.md say.

Each is trained through the command line in-process (``dlc train ... --json``)
with the model's own train block, with both backends, and the figure its
lesson rests on is asserted: accuracies, the learned angle, which minimum
each gradient-descent run ends in, the regression's error. Every example
also passes ``dlc check``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dlc.cli import main
from dlc.compiler import compile_model, read_model
from dlc.train.data import load_data

from .conftest import EXAMPLES, ROOT

EXAMPLE_DIR = ROOT / "examples"


@pytest.fixture(params=["numpy", "llvm"])
def backend(request: pytest.FixtureRequest) -> str:
    """Every example trains with each backend."""
    return str(request.param)


def train(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, backend: str, *flags: str
) -> dict[str, Any]:
    """``dlc train examples/NAME.dlc --backend B FLAGS --json``: the summary, plus the trained parameters."""
    save = tmp_path / f"{name}.npz"
    capsys.readouterr()
    path = str(EXAMPLE_DIR / f"{name}.dlc")
    code = main(["train", path, "--backend", backend, "--save", str(save), "--json", "--quiet", *flags])
    out = capsys.readouterr().out
    assert code == 0, out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["diverged"] is None
    with np.load(save) as saved:
        summary["params"] = {k[len("param/") :]: saved[k] for k in saved.files if k.startswith("param/")}
    return summary


def test_xor_is_learned_exactly(capsys: pytest.CaptureFixture[str], tmp_path: Path, backend: str) -> None:
    assert train(capsys, tmp_path, "xor", backend)["train_accuracy"] == 1.0


def test_points_learn_the_coordinate_change(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, backend: str
) -> None:
    run = train(capsys, tmp_path, "points", backend)
    assert run["train_accuracy"] >= 0.99
    # builtin:points turns its frame by 30 degrees; the learned rotation finds it.
    assert abs(float(run["params"]["theta"]) - np.pi / 6) < 0.05


@pytest.mark.slow
def test_spiral_is_uncrumpled(capsys: pytest.CaptureFixture[str], tmp_path: Path, backend: str) -> None:
    run = train(capsys, tmp_path, "spiral", backend)
    assert run["train_accuracy"] >= 0.98
    # how long it takes ("about a second") is for benchmarks/, not an assertion here


@pytest.mark.slow
def test_digits_on_the_documented_held_out_split(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, backend: str
) -> None:
    pytest.importorskip("sklearn")
    run = train(capsys, tmp_path, "digits", backend, "--val-split", "0.2")
    assert run["val_accuracy"] >= 0.97
    assert run["train_accuracy"] >= run["val_accuracy"]


@pytest.mark.slow
def test_the_convolutional_network_beats_the_dense_one_on_the_same_held_out_digits(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """digits_cnn.dlc on digits.dlc's held-out split: 98.9% (355 of 359) against 98.3% (353).

    One backend only: the run takes about 15 s, and both give the same accuracy
    (their convolution kernels are compared with each other elsewhere).
    """
    pytest.importorskip("sklearn")
    run = train(capsys, tmp_path, "digits_cnn", "llvm", "--val-split", "0.2")
    assert run["val_accuracy"] >= 354 / 359  # digits.dlc: 353 of 359
    assert run["train_accuracy"] >= run["val_accuracy"]


def test_the_recurrent_network_reads_the_text(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, backend: str
) -> None:
    """4 characters of context name the next one, except after "the " (cat, mat, dog or log)."""
    run = train(capsys, tmp_path, "char_rnn", backend, "--val-split", "0.2")
    assert run["val_accuracy"] > 0.9


def test_the_recurrent_networks_formulas_are_backpropagation_through_time() -> None:
    from dlc.frontend import load_source
    from dlc.grad.formulas import derive

    model = load_source((EXAMPLE_DIR / "char_rnn.dlc").read_text(encoding="utf-8"))
    text = derive(model.graph).text()
    # Each hidden state's delta is the next one's sent back through the shared Wh.
    for t in (3, 2, 1):
        assert f"δ_h{t} = Whᵀ δ" in text


def test_regression_fits_the_curve(capsys: pytest.CaptureFixture[str], tmp_path: Path, backend: str) -> None:
    path = EXAMPLE_DIR / "regression.dlc"
    run = train(capsys, tmp_path, "regression", backend)
    module = compile_model(path)
    data = load_data("builtin:regression", read_model(path).graph)
    mse = module.loss(run["params"], data.X, data.Y)
    assert run["train_accuracy"] is None
    assert mse < 0.005  # the noise's own variance is 0.05 ** 2 = 0.0025
    x = np.linspace(-3, 3, 301)[:, None]
    assert np.max(np.abs(module.predict(run["params"], x)[:, 0] - np.sin(x[:, 0]))) < 0.15


def test_the_lectures_momentum_climbs_and_the_corrected_one_converges(backend: str) -> None:
    """examples/momentum.dlc: the numbers examples/README.md quotes."""
    path = EXAMPLE_DIR / "momentum.dlc"
    data = load_data("builtin:regression", read_model(path).graph)
    losses = {}
    for name in ("lecture_momentum", "corrected_momentum"):
        m = compile_model(path, backend=backend, optimizer=name)
        with np.errstate(all="ignore"):
            losses[name] = m.train(m.init_params(0), data.X, data.Y)["loss"]
    climbs, converges = losses["lecture_momentum"], losses["corrected_momentum"]
    assert climbs[0] == pytest.approx(5.08, abs=0.01)
    assert all(b > a for a, b in itertools.pairwise(climbs))  # rises every epoch
    assert 1e119 < climbs[-1] < 1e120  # "4e119 after 30"
    assert converges[-1] == pytest.approx(0.0078, abs=0.0001)


# --- loss_surface.dlc: which minimum does each run reach? ---------------------------------------------


@pytest.fixture(scope="module")
def minima() -> dict[str, np.ndarray]:
    """The surface's minima, by long plain gradient descent from each dip's centre."""
    module = compile_model(EXAMPLE_DIR / "loss_surface.dlc")
    found = {}
    for name, (a, b) in (("local", (1.0, 0.5)), ("global", (-1.5, -0.5))):
        params = {"a": np.array(a), "b": np.array(b)}
        module.train(params, epochs=3000, lr=0.02, momentum=0.0)
        _, grads = module.value_and_grad(params, None, None)
        assert max(abs(float(g)) for g in grads.values()) < 1e-8
        found[name] = np.array([float(params["a"]), float(params["b"])])
    loss = {k: module.loss({"a": np.array(m[0]), "b": np.array(m[1])}, None, None) for k, m in found.items()}
    assert loss["global"] < loss["local"] - 0.5
    assert np.linalg.norm(found["global"] - found["local"]) > 1.5
    return found


def test_loss_surface_runs_all_start_from_the_same_point() -> None:
    start = compile_model(EXAMPLE_DIR / "loss_surface.dlc").init_params(0)
    assert (float(start["a"]), float(start["b"])) == (3.0, 2.0)


@pytest.mark.parametrize(
    ("lr", "momentum", "ends_in"),
    [
        ("0.05", "0", "local"),  # small rate, no momentum: stuck in the first dip
        ("0.3", "0", "local"),  # bigger steps alone do not get out
        ("0.05", "0.9", "global"),  # momentum carries the run over the ridge
        ("0.3", "0.9", "global"),
    ],
)
def test_loss_surface_momentum_reaches_the_global_minimum(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, minima: dict[str, np.ndarray],
    lr: str, momentum: str, ends_in: str, backend: str,
) -> None:  # fmt: skip
    run = train(capsys, tmp_path, "loss_surface", backend, "--lr", lr, "--momentum", momentum)
    end = np.array([float(run["params"]["a"]), float(run["params"]["b"])])
    assert np.linalg.norm(end - minima[ends_in]) < 0.01, (end, minima)


# --- every example: gradient check, README, figures ---------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_passes_dlc_check(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(path)]) == 0
    assert "passed" in capsys.readouterr().out


def test_the_examples_readme_lists_every_example() -> None:
    readme = (EXAMPLE_DIR / "README.md").read_text(encoding="utf-8")
    for path in EXAMPLES:
        assert f"examples/{path.name}" in readme, path.name
    assert "python examples/plots.py" in readme


@contextlib.contextmanager
def example_plots() -> Iterator[Any]:
    """examples/plots.py imported as a module, for the length of the block."""
    spec = importlib.util.spec_from_file_location("dlc_example_plots", EXAMPLE_DIR / "plots.py")
    assert spec is not None and spec.loader is not None
    plots = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = plots  # dataclasses look their module up
    try:
        spec.loader.exec_module(plots)
        yield plots
    finally:
        del sys.modules[spec.name]


@pytest.mark.slow
def test_plots_regenerates_every_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    with example_plots() as plots:
        assert plots.main(["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "lr 0.05, momentum 0: ends in the local minimum" in out
    assert "lr 0.05, momentum 0.9: ends in the global minimum" in out
    for name in ("points", "spiral", "loss_surface", "regression", "training", "digits_cnn"):
        png = tmp_path / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000, name


def test_plots_draws_a_trained_cnn_from_its_parameters_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``python examples/plots.py --cnn PARAMS.npz``: the filters and maps of a network dlc trained."""
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    model, params = EXAMPLE_DIR / "digits_cnn.dlc", tmp_path / "digits_cnn.npz"
    assert main(["train", str(model), "--epochs", "1", "--save", str(params), "--quiet"]) == 0
    with example_plots() as plots:
        trained = plots.checkpoint.load(params, read_model(model).graph, "float64").params
        views = plots.cnn_views(model, trained, np.zeros((1, 8, 8)))
        shapes = [(name, m.shape) for name, m in views.maps]
        assert shapes == [("x", (1, 8, 8)), ("conv1", (16, 8, 8)), ("pool1", (16, 4, 4)),
                          ("conv2", (32, 4, 4)), ("pool2", (32, 2, 2))]  # fmt: skip
        assert views.filters[0] == "K1" and views.probabilities.shape == (10,)
        assert plots.main(["--cnn", str(params), "--out", str(tmp_path / "figures"), "--digit", "7"]) == 0
    png = tmp_path / "figures" / "digits_cnn.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_the_loss_surface_sweep_is_as_its_heat_map_says(tmp_path: Path) -> None:
    """examples/README.md's sweep: which (lr, momentum) cells reach the global minimum."""
    from dlc.sweeps.sweep import SweepOptions, run_sweep

    sets = ("lr = 0.01, 0.03, 0.1, 0.3", "momentum = 0, 0.5, 0.8, 0.9, 0.95")
    outcome = run_sweep(
        read_model(EXAMPLE_DIR / "loss_surface.dlc"), SweepOptions(sets=sets, out=tmp_path / "s")
    )
    final = {tuple(v for _, v in r.config): r.stats["final_loss"][0] for r in outcome.rows}
    best = {tuple(v for _, v in r.config): r.stats["best_loss"][0] for r in outcome.rows}
    global_cells = {("0.01", "0.95"), ("0.03", "0.9"), ("0.03", "0.95"), ("0.1", "0.8"), ("0.1", "0.9"),
                    ("0.3", "0.8"), ("0.3", "0.9"), ("0.3", "0.95")}  # fmt: skip
    assert {cell for cell, loss in final.items() if round(loss, 3) == -1.774} == global_cells
    others = {cell: round(loss, 3) for cell, loss in final.items() if cell not in global_cells}
    assert others.pop(("0.01", "0")) == -0.929
    assert set(others.values()) == {-0.966}
    assert round(best[("0.1", "0.95")], 3) == -1.657
    assert outcome.best is not None and outcome.best.config == (("lr", "0.03"), ("momentum", "0.9"))
