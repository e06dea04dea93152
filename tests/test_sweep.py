"""``dlc sweep`` and ``dlc.sweep``: the grid's syntax and errors, both executors, resume, retries."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dlc
from dlc.cli import main
from dlc.compiler import read_model
from dlc.errors import DlcError
from dlc.frontend import load_source
from dlc.frontend.grid import read_grid
from dlc.sweeps.sweep import SweepOptions, run_sweep
from dlc.train.run import Options, train

ROOT = Path(__file__).resolve().parents[1]
SURFACE = ROOT / "examples" / "loss_surface.dlc"
SPIRAL = ROOT / "examples" / "spiral.dlc"


def _records(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "runs.jsonl").read_text().splitlines()]


def _histories(folder: Path) -> dict[str, str]:
    return {r["key"]: (folder / r["history_file"]).read_text() for r in _records(folder)}


# ------------------------------------------------------------------ the grid


def test_values_are_read_in_the_languages_syntax() -> None:
    model = read_model(SPIRAL)
    grid = read_grid(
        model, ["lr = 0.01, 1e-1, 1", "momentum = 0, .9", "optimizer = sgd(lr = 0.1), rmsprop(lr = 1e-3)"]
    )
    assert [a.name for a in grid.axes] == ["lr", "momentum", "optimizer"]
    assert [v.number for v in grid.axes[0].values] == [0.01, 0.1, 1.0]
    assert [v.text for v in grid.axes[2].values] == ["sgd(lr = 0.1)", "rmsprop(lr = 1e-3)"]
    configurations = grid.configurations()
    assert len(configurations) == 12
    # the last axis varies fastest
    assert [v.text for _, v in configurations[1]] == ["0.01", "0", "rmsprop(lr = 1e-3)"]
    assert grid.models["rmsprop(lr = 1e-3)"].graph.train.optimizer.name == "rmsprop"
    (nesterov,) = read_grid(model, ["nesterov = true, false"]).axes
    assert [v.number for v in nesterov.values] == [1.0, 0.0]


BAD_SETS = [
    ("lr = 0", "lr must be greater than 0", 6),
    ("momentum = 0.5, 1", "momentum must be at least 0 and less than 1", 17),
    ("lr = 0.1, 0.2, 0.1", "the value 0.1 is given twice", 16),
    ("seed = 1, 2", "'seed' is not swept with --set", 1),
    ("data = xor", "'data' is not swept with --set", 1),
    ("epochs = 10, 1.5", "epochs must be a whole number of at least 0", 14),
    ("batch_size = 0", "batch_size must be a whole number of at least 1", 14),
    ("lr = x", "expected a number", 6),
    ("lr 0.1", "unexpected number '0.1'; expected '='", 4),
    ("lr = 0.1,", "unexpected end", 10),
    ("lr = 0.1 0.2", "unexpected number '0.2'", 10),
    ("optimizer = sgd(lr = 0.1), adamm(lr = 1)", "unknown optimizer 'adamm'", 28),
    ("optimizer = adam(lr = 1, zz = 3)", "adam has no setting 'zz'", 26),
    ("optimizer = 3", "expected an optimizer call", 13),
    ("b1 = 0.9", "'b1' is not a setting of the model's optimizer", 1),
    ("  b1 = 0.9", "'b1' is not a setting of the model's optimizer", 3),
]


@pytest.mark.parametrize(("text", "message", "column"), BAD_SETS)
def test_a_bad_value_is_placed_in_its_set(text: str, message: str, column: int) -> None:
    with pytest.raises(DlcError) as info:
        read_grid(read_model(SPIRAL), [text])
    err = info.value
    assert message in err.message
    assert (err.path, err.span.line, err.span.column) == ("--set", 1, column)
    shown = err.render().splitlines()
    assert shown[0].startswith(f"--set:1:{column}: error: ")
    assert shown[1] == "    " + text and shown[2].index("^") == 4 + column - 1


def test_a_setting_of_one_swept_optimizer_only_is_refused() -> None:
    with pytest.raises(DlcError, match="'momentum' is not a setting of the optimizer adam"):
        read_grid(read_model(SPIRAL), ["optimizer = sgd(lr = 0.1), adam(lr = 1e-3)", "momentum = 0, 0.9"])


def test_a_setting_swept_twice_and_too_many_runs_are_refused() -> None:
    with pytest.raises(DlcError, match="'lr' is swept twice"):
        read_grid(read_model(SPIRAL), ["lr = 0.1", "lr = 0.2"])
    many = ", ".join(str(i + 1) for i in range(400))
    with pytest.raises(DlcError, match="the sweep has 160,000 runs"):
        read_grid(read_model(SPIRAL), [f"epochs = {many}", f"batch_size = {many}"])


# ------------------------------------------------------------------ running it


def test_the_command_writes_the_table_every_run_and_the_best_train_block(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, plot = tmp_path / "sweep", tmp_path / "sweep.png"
    args = ["sweep", str(SURFACE), "--set", "lr = 0.05, 0.3, 100", "--set", "momentum = 0, 0.9",
            "--out", str(out), "--plot", str(plot), "--workers", "2"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    records = _records(out)
    assert len(records) == 6 and len(list((out / "histories").iterdir())) == 6
    # plain gradient descent stops in the shallow dip, momentum reaches the global minimum
    final = {r["key"]: r.get("final_loss") for r in records}
    assert final["lr = 0.05, momentum = 0, seed = 0"] == pytest.approx(-0.966, abs=1e-3)
    assert final["lr = 0.05, momentum = 0.9, seed = 0"] == pytest.approx(-1.774, abs=1e-3)
    assert {r["status"] for r in records if r["config"]["lr"] == "100"} == {"diverged"}
    assert "(1 diverged)" in printed
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("lr,momentum,runs,ok,diverged,failed,final_loss_mean,final_loss_sd")
    assert len(summary) == 7
    # the best train block goes into the model file in place of its own, and trains there
    block = (out / "best.dlc").read_text()
    assert block in printed and "optimizer = sgd(lr = 0.05, momentum = 0.9)" in block
    source = SURFACE.read_text()
    pasted = source[: source.index("train {")] + block
    settings = dict(load_source(pasted).graph.train.optimizer.settings)
    assert (float(settings["lr"]), float(settings["momentum"])) == (0.05, 0.9)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_sweeps_run_is_the_run_dlc_train_makes(tmp_path: Path) -> None:
    options = SweepOptions(sets=("lr = 0.1", "momentum = 0.5"), seeds=2, epochs=5, val_split=0.25,
                           out=tmp_path / "s", workers=1)  # fmt: skip
    outcome = run_sweep(read_model(SPIRAL), options)
    assert outcome.ran == 2 and outcome.failed == 0
    model = read_model(SPIRAL)
    alone = train(model, Options(epochs=5, val_split=0.25, seed=1, lr=0.1, momentum=0.5, blas_threads=1))
    record = next(r for r in outcome.records if r["seed"] == 1)
    history = _histories(tmp_path / "s")[record["key"]].splitlines()[1:]
    assert len(history) == 5
    for line, epoch in zip(history, alone.history, strict=True):
        loss, val_loss = float(line.split(",")[1]), float(line.split(",")[3])
        assert (loss, val_loss) == (epoch.loss, epoch.val_loss)  # bit for bit
    # the table's mean and spread are over the seeds' runs
    finals = [r["final_loss"] for r in outcome.records]
    mean, sd = outcome.rows[0].stats["final_loss"]
    assert mean == pytest.approx(np.mean(finals), rel=1e-12)
    assert sd == pytest.approx(statistics.stdev(finals), rel=1e-12)


def test_the_python_entry_point_returns_the_table(tmp_path: Path) -> None:
    grid = {"lr": [0.05, 0.3], "optimizer": ["sgd(lr = 0.1)", "sgd(momentum = 0.9)"]}
    table = dlc.sweep(str(SURFACE), grid, epochs=50, out=tmp_path / "s")
    records = table.to_dict("records") if hasattr(table, "to_dict") else table
    assert [(r["lr"], r["optimizer"]) for r in records] == [
        ("0.05", "sgd(lr = 0.1)"), ("0.05", "sgd(momentum = 0.9)"),
        ("0.3", "sgd(lr = 0.1)"), ("0.3", "sgd(momentum = 0.9)"),
    ]  # fmt: skip
    assert all(r["runs"] == 1 and r["ok"] == 1 and r["final_loss_mean"] is not None for r in records)


def test_the_folder_of_an_earlier_sweep_is_not_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s"
    args = ["sweep", str(SURFACE), "--set", "lr = 0.1", "--out", str(out), "--quiet", "--epochs", "3"]
    assert main(args) == 0
    before = (out / "runs.jsonl").read_bytes()
    assert main(args) == 2
    assert "holds the results of an earlier sweep" in capsys.readouterr().err
    assert main([*args[:-1], "4", "--resume"]) == 2
    assert "holds a sweep with another epochs" in capsys.readouterr().err
    assert (out / "runs.jsonl").read_bytes() == before


def test_a_killed_sweep_resumes_with_only_its_unfinished_runs(tmp_path: Path) -> None:
    out = tmp_path / "s"
    command = [sys.executable, "-m", "dlc", "sweep", str(SPIRAL), "--set", "lr = 0.01, 0.02, 0.03, 0.04",
               "--seeds", "2", "--epochs", "40", "--workers", "1", "--out", str(out), "--quiet"]  # fmt: skip
    # without --quiet: a line on stderr per finished run, read until two runs are kept
    sweep = subprocess.Popen(command[:-1], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert sweep.stderr is not None
    finished = 0
    for line in sweep.stderr:
        finished += line.startswith("[")
        if finished == 2:
            break
    sweep.kill()
    sweep.wait()
    kept = _histories(out)
    assert 2 <= len(kept) < 8
    with open(out / "runs.jsonl", "ab") as f:  # a line cut short by the kill
        f.write(b'{"key": "lr = 0.04, seed = 1", "sta')
    assert main([*command[3:-1], "--resume", "--quiet"]) == 0
    final = _histories(out)
    assert len(final) == 8 and len(_records(out)) == 8
    for key, history in kept.items():
        assert final[key] == history
    # the same as a sweep never interrupted
    whole = tmp_path / "whole"
    assert main([*command[3:-3], "--out", str(whole), "--quiet", "--workers", "2"]) == 0
    assert _histories(whole) == final


class _Killer:
    """Kills the worker that gets a job, on the attempts it is told to."""

    def __init__(self, kills: dict[str, set[int]]) -> None:
        self.kills = kills

    def begin(self, total: int, earlier: int, executor: str) -> None:
        pass

    def started(self, job: Any, attempt: int, pid: int) -> None:
        if attempt in self.kills.get(job.key, set()):
            os.kill(pid, signal.SIGKILL)

    def finished(self, record: dict[str, Any], done: int, total: int) -> None:
        pass


def test_a_dead_workers_run_is_retried_once_then_reported(tmp_path: Path) -> None:
    kills = {"lr = 0.1, seed = 0": {1}, "lr = 0.2, seed = 0": {1, 2}}
    options = SweepOptions(sets=("lr = 0.1, 0.2, 0.3",), epochs=20, out=tmp_path / "s", workers=2)
    outcome = run_sweep(read_model(SURFACE), options, _Killer(kills))
    by_key = {r["key"]: r for r in _records(tmp_path / "s")}
    assert by_key["lr = 0.1, seed = 0"]["status"] == "ok" and by_key["lr = 0.1, seed = 0"]["attempts"] == 2
    assert by_key["lr = 0.3, seed = 0"]["attempts"] == 1
    died = by_key["lr = 0.2, seed = 0"]
    assert died["status"] == "died" and "died 2 times; the last killed by signal SIGKILL" in died["message"]
    assert outcome.failed == 1
    # a resumed sweep runs the reported run again (it did not finish)
    outcome = run_sweep(read_model(SURFACE), SweepOptions(**{**options.__dict__, "resume": True}))
    assert outcome.ran == 1 and outcome.failed == 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--set", "lr = 0.1,"], "--set:1:10: error: unexpected end"),
        (["--seeds", "0"], "--seeds: must be a whole number from 1"),
        (["--workers", "2", "--ray", "local"], "--workers is for this machine's workers"),
        (["--workers", "100000"], "--workers must be a whole number from 1 to"),
        (["--val-split", "1"], "--val-split must be at least 0 and less than 1"),
        (["--data", "builtin:nothing"], "builtin:nothing"),
    ],
)
def test_bad_flags_exit_2_with_one_message(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sweep", str(SPIRAL), *flags, "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "s" / "runs.jsonl").exists()


def test_an_out_that_is_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_text("mine")
    assert main(["sweep", str(SURFACE), "--out", str(tmp_path / "f")]) == 2
    assert "it exists and is not a folder" in capsys.readouterr().err
    assert (tmp_path / "f").read_text() == "mine"


# ------------------------------------------------------------------ Ray


@pytest.fixture(scope="module")
def ray_cluster() -> Any:
    """A Ray instance of this test's own, started here and stopped after."""
    ray = pytest.importorskip("ray")
    context = ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False,
                       log_to_driver=False)  # fmt: skip
    yield context.address_info["gcs_address"]
    ray.shutdown()


def test_ray_and_local_workers_give_bit_identical_runs(ray_cluster: str, tmp_path: Path) -> None:
    flags = ["--set", "lr = 0.01, 0.05", "--seeds", "2", "--epochs", "15", "--backend", "llvm",
             "--val-split", "0.2", "--quiet"]  # fmt: skip
    on_ray = subprocess.run(
        [sys.executable, "-m", "dlc", "sweep", str(SPIRAL), *flags, "--ray", ray_cluster, "--out",
         str(tmp_path / "ray")], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert on_ray.returncode == 0, on_ray.stderr
    assert main(["sweep", str(SPIRAL), *flags, "--out", str(tmp_path / "local")]) == 0
    ray_runs, local_runs = _histories(tmp_path / "ray"), _histories(tmp_path / "local")
    assert len(ray_runs) == 4 and ray_runs == local_runs


def test_the_python_entry_point_uses_a_connected_ray(ray_cluster: str, tmp_path: Path) -> None:
    records = dlc.sweep(str(SURFACE), ["momentum = 0, 0.9"], epochs=100, ray="auto", out=tmp_path / "s")
    rows = records.to_dict("records") if hasattr(records, "to_dict") else records
    assert [r["ok"] for r in rows] == [1, 1]
    assert rows[1]["final_loss_mean"] < rows[0]["final_loss_mean"]


def test_a_ray_address_with_no_cluster_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("ray")
    command = [sys.executable, "-m", "dlc", "sweep", str(SURFACE), "--epochs", "1", "--ray", "127.0.0.1:1",
               "--out", str(tmp_path / "s")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "--ray 127.0.0.1:1: cannot connect to a Ray cluster" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("grid", "kwargs", "error"),
    [
        ({"lr": None}, {}, TypeError),
        ({"lr": "0.1"}, {}, TypeError),
        (5, {}, TypeError),
        ({"lr": [None]}, {}, DlcError),
        ({"lr": [float("nan")]}, {}, DlcError),
        ({"lr": []}, {}, DlcError),
        ({"lr": [0.1]}, {"seeds": 1.5}, DlcError),
        ({"lr": [0.1]}, {"seeds": True}, DlcError),
        ({"lr": [0.1]}, {"workers": 0}, DlcError),
        ({"lr": [0.1]}, {"backend": "cuda"}, DlcError),
        ({"lr": [0.1]}, {"epochs": 2.5}, DlcError),
    ],
)
def test_the_python_entry_point_refuses_bad_arguments_before_any_run(
    grid: Any, kwargs: dict[str, Any], error: type[Exception], tmp_path: Path
) -> None:
    with pytest.raises(error):
        dlc.sweep(str(SURFACE), grid, out=tmp_path / "s", **kwargs)
    assert not (tmp_path / "s" / "runs.jsonl").exists()


def test_a_folder_is_held_by_one_sweep_at_a_time_and_must_hold_a_regular_file(tmp_path: Path) -> None:
    from dlc.sweeps.results import Folder

    first = Folder(tmp_path / "s", {"model": "m"}, resume=False)
    with pytest.raises(DlcError, match="is in use by another sweep that is running"):
        Folder(tmp_path / "s", {"model": "m"}, resume=True)
    first.close()
    Folder(tmp_path / "s", {"model": "m"}, resume=True).close()
    (tmp_path / "fifo").mkdir()
    os.mkfifo(tmp_path / "fifo" / "runs.jsonl")
    with pytest.raises(DlcError, match=r"its runs\.jsonl is not a regular file"):
        Folder(tmp_path / "fifo", {"model": "m"}, resume=True)


def test_the_table_is_a_data_frame_where_pandas_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import types

    made: list[list[dict[str, Any]]] = []
    pandas = types.ModuleType("pandas")
    frame = types.SimpleNamespace(from_records=lambda records: made.append(records) or "frame")
    pandas.DataFrame = frame  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pandas", pandas)
    assert dlc.sweep(str(SURFACE), {"lr": [0.1, 0.2]}, epochs=3, out=tmp_path / "s") == "frame"
    assert [r["lr"] for r in made[0]] == ["0.1", "0.2"]
