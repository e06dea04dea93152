"""No run loses work or spoils another's: divergence, unwritable places, history, resume, identity.

The rules are those of :mod:`dlc.train.outputs`: a diverged run replaces
nothing; outputs are checked before training and a late failure saves in a
temporary folder; the history is appended per epoch and continued on resume;
a checkpoint keeps its epoch and belongs to one model; --save never names an
input; dlc's stale temporary files are swept.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dlc import atomic
from dlc.cli import main
from dlc.frontend import load
from dlc.train import checkpoint
from dlc.train.history import Epoch
from dlc.train.run import Options, train

from .conftest import ROOT

REGRESSION = ROOT / "examples" / "regression.dlc"
SINE = ROOT / "tests" / "models" / "sine.dlc"
XOR = ROOT / "examples" / "xor.dlc"


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def epochs_in(history: Path) -> list[int]:
    return [int(line.split(",")[0]) for line in history.read_text().splitlines()[1:]]


# --------------------------------------------------------------- divergence


@pytest.mark.parametrize("every", [0, 1])
def test_a_diverging_run_replaces_no_good_checkpoint(
    every: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save = tmp_path / "regression.npz"
    history = tmp_path / "regression.history.csv"
    assert run(["train", REGRESSION, "--save", save, "--epochs", "40"], capsys)[0] == 0
    before = digest(save), digest(history)
    flags = ["--lr", "5", "--checkpoint-every", str(every)]
    code, _, err = run(["train", REGRESSION, "--save", save, *flags], capsys)
    assert code == 1
    assert (digest(save), digest(history)) == before, "the good checkpoint and its history are untouched"
    assert "lower the learning rate (it was 5; try --lr 0.5)" in err
    diverged = tmp_path / "regression.diverged.npz"
    assert f"are in {diverged}" in err
    state = checkpoint.load(diverged, load(REGRESSION).graph, "float64")
    assert all(np.isfinite(v).all() for v in state.params.values())
    assert epochs_in(tmp_path / "regression.diverged.history.csv") == list(range(1, state.epoch + 1))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "regression.diverged.history.csv",
        "regression.diverged.npz",
        "regression.history.csv",
        "regression.npz",
    ], "no backup or temporary file is left behind"


def test_a_diverged_run_leaves_no_file_where_there_was_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save = tmp_path / "p.npz"
    code, _, _ = run(["train", REGRESSION, "--save", save, "--lr", "5", "--checkpoint-every", "1"], capsys)
    assert code == 1
    assert not save.exists() and not (tmp_path / "p.history.csv").exists()
    assert (tmp_path / "p.diverged.npz").exists()


# --------------------------------------------------------------- places that cannot be written


def test_save_into_a_missing_folder_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save = tmp_path / "nowhere" / "p.npz"
    code, out, err = run(["train", REGRESSION, "--save", save], capsys)
    assert code == 2 and out == ""
    assert err.strip() == f"dlc: error: cannot write --save {save}: there is no folder {save.parent}"


def read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in (root may write anywhere but in /sys)."""
    folder = tmp_path / "read-only"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o555)
    try:
        atomic.own_temp(folder / "probe", ".tmp").unlink()
    except OSError:
        return folder
    if Path("/sys").is_dir():
        return Path("/sys")
    pytest.skip("no folder here that this user cannot write")


def test_save_into_a_read_only_folder_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save = read_only_folder(tmp_path) / "p.npz"
    code, out, err = run(["train", REGRESSION, "--save", save, "--plot", tmp_path / "ok.png"], capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"dlc: error: cannot write --save {save}: ") and len(err.splitlines()) == 1
    save = tmp_path / "p.npz"
    plot = read_only_folder(tmp_path) / "loss.png"
    code, _, err = run(["train", REGRESSION, "--save", save, "--plot", plot], capsys)
    assert code == 2 and err.startswith(f"dlc: error: cannot write --plot {plot}: ")
    assert not save.exists()


def test_a_late_write_failure_saves_in_a_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The folder is removed while training: the work goes to a temporary folder, said where."""
    folder = tmp_path / "out"
    folder.mkdir()
    save = folder / "p.npz"
    observed: list[int] = []

    class RemoveTheFolder:
        def start(self, first: int, epochs: int, steps: int) -> None: ...
        def step(self, epoch: int, step: int, steps: int, loss: float) -> None: ...
        def close(self) -> None: ...

        def epoch(self, record: Epoch) -> None:
            observed.append(record.epoch)
            if record.epoch == 3:
                shutil.rmtree(folder)

    options = Options(epochs=10, save=save, history=folder / "p.history.csv", checkpoint_every=2)
    result = train(load(REGRESSION), options, RemoveTheFolder())
    assert observed == list(range(1, 11)), "training went on"
    assert result.saved is not None and not result.saved.is_relative_to(folder)
    assert any(str(save) in problem for problem in result.problems), result.problems
    state = checkpoint.load(result.saved, load(REGRESSION).graph, "float64")
    assert state.epoch == 10
    assert result.saved_history is not None and epochs_in(result.saved_history) == list(range(1, 11))
    shutil.rmtree(result.saved.parent)
    # The command line says so, and fails.
    real_save = checkpoint.save

    def refuse(path: str | Path, *args: object) -> None:
        if Path(path).parent == tmp_path:
            raise atomic.DlcError(f"cannot write {path}: No space left on device")
        real_save(path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(checkpoint, "save", refuse)
    code, _, err = run(["train", REGRESSION, "--save", tmp_path / "q.npz", "--epochs", "3"], capsys)
    assert code == 1
    assert "No space left on device" in err and "the trained parameters are in " in err
    instead = Path(err.split("the trained parameters are in ")[1].split()[0])
    assert checkpoint.load(instead, load(REGRESSION).graph, "float64").epoch == 3
    shutil.rmtree(instead.parent)


# --------------------------------------------------------------- history


def test_the_history_is_appended_every_epoch(tmp_path: Path) -> None:
    history = tmp_path / "p.history.csv"
    rows: list[list[int]] = []

    class Watch:
        def start(self, first: int, epochs: int, steps: int) -> None: ...
        def step(self, epoch: int, step: int, steps: int, loss: float) -> None: ...
        def close(self) -> None: ...

        def epoch(self, record: Epoch) -> None:
            rows.append(epochs_in(history) if history.exists() else [])

    options = Options(epochs=6, save=tmp_path / "p.npz", history=history, checkpoint_every=1)
    train(load(REGRESSION), options, Watch())
    assert rows == [list(range(1, k + 1)) for k in range(1, 7)]


def test_a_killed_run_resumes_with_its_whole_history(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "dlc", "train", str(SINE), "--epochs", "2000", "--quiet"]
    subprocess.run([*args, "--save", str(tmp_path / "whole.npz")], check=True, capture_output=True)
    part = tmp_path / "part.npz"
    proc = subprocess.Popen([*args, "--save", str(part), "--checkpoint-every", "1"], stderr=subprocess.PIPE)
    while proc.poll() is None and not (part.exists() and len(epochs_in(tmp_path / "part.history.csv")) > 5):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stopped = checkpoint.load(part, load(SINE).graph, "float64").epoch
    assert 0 < stopped < 2000, "the run ended before it could be killed"
    subprocess.run([*args, "--save", str(part), "--resume", str(part)], check=True, capture_output=True)
    whole = (tmp_path / "whole.history.csv").read_text()
    assert (tmp_path / "part.history.csv").read_text() == whole, "the same rows as a run never killed"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no temporary file left"


# --------------------------------------------------------------- resume


def test_resume_keeps_the_checkpoints_epoch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    straight, part = tmp_path / "straight.npz", tmp_path / "part.npz"
    assert run(["train", SINE, "--save", straight, "--epochs", "60"], capsys)[0] == 0
    assert run(["train", SINE, "--save", part, "--epochs", "50"], capsys)[0] == 0
    code, _, err = run(["train", SINE, "--save", part, "--resume", part, "--epochs", "10"], capsys)
    assert code == 0 and "is at epoch 50 already, and --epochs is 10: there was nothing to train" in err
    assert checkpoint.load(part, load(SINE).graph, "float64").epoch == 50
    assert run(["train", SINE, "--save", part, "--resume", part, "--epochs", "60"], capsys)[0] == 0
    with np.load(straight) as a, np.load(part) as b:
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert epochs_in(tmp_path / "part.history.csv") == list(range(1, 61))


def test_a_checkpoint_of_another_model_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save = tmp_path / "regression.npz"
    assert run(["train", REGRESSION, "--save", save, "--epochs", "3"], capsys)[0] == 0
    text = REGRESSION.read_text()
    other = tmp_path / "other.dlc"
    other.write_text(text.replace("h = tanh(", "h = sigmoid("))  # the same parameters, another function
    for command in (["train", other, "--resume", save, "--save", tmp_path / "o.npz"],
                    ["predict", other, "--params", save, "--data", "builtin:regression"]):  # fmt: skip
        code, _, err = run(command, capsys)
        assert code == 2 and f"dlc: error: {save} was saved for a different model" in err
    # Names of values, initializers, the model's name and its training section are not its identity.
    same = tmp_path / "same.dlc"
    renamed = text.replace("h = tanh(", "hidden = tanh(").replace("W2 @ h ", "W2 @ hidden ")
    renamed = renamed.replace("[16, 1] = normal(1.0)", "[16, 1] = glorot").replace(
        "model regression", "model r2"
    )
    same.write_text(renamed.replace("epochs     = 400", "epochs = 5"))
    assert run(["train", same, "--resume", save, "--save", tmp_path / "s.npz"], capsys)[0] == 0


def test_a_checkpoint_without_a_fingerprint_resumes_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save = tmp_path / "new.npz"
    assert run(["train", REGRESSION, "--save", save, "--epochs", "3"], capsys)[0] == 0
    old = tmp_path / "old.npz"
    with np.load(save) as npz:
        np.savez(old, **{k: npz[k] for k in npz.files if k != "fingerprint"})
    code, _, err = run(["train", REGRESSION, "--resume", old, "--save", save, "--epochs", "5"], capsys)
    assert code == 0 and f"dlc: warning: {old} carries no model fingerprint" in err
    with np.load(save) as npz:
        assert int(npz["epoch"]) == 5 and str(npz["fingerprint"]) == checkpoint.fingerprint(
            load(REGRESSION).graph
        )


# --------------------------------------------------------------- inputs are never outputs


def test_save_never_overwrites_the_model_or_the_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "xor.dlc"
    shutil.copy(XOR, model)
    data = tmp_path / "points.csv"
    data.write_text("x1,x2,y\n0,0,0\n0,1,1\n1,0,1\n1,1,0\n")
    before = digest(model), digest(data)
    cases = [
        (["train", model, "--save", model], "--save"),
        (["train", model, "--data", data, "--save", tmp_path / "points.npz", "--plot", data], "--plot"),
        (["train", model, "--save", tmp_path / "x.npz", "--plot", tmp_path / "x.npz"], "--plot"),
        (["compile", model, "-o", model], "-o"),
        (["predict", model, "--params", tmp_path / "none.npz", "--data", data, "-o", data], "-o"),
    ]
    for args, flag in cases:
        code, _, err = run(args, capsys)
        assert code == 2 and err.startswith(f"dlc: error: {flag} "), err
        assert "would overwrite" in err or "one file cannot hold both" in err
    assert (digest(model), digest(data)) == before


# --------------------------------------------------------------- stale temporary files


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporary_files_of_dead_writers_are_swept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save = tmp_path / "p.npz"
    host = atomic._host()
    dead, alive = dead_pid(), os.getpid()
    stale = [
        tmp_path / f".p.npz.dlc-{host}-{dead}-0123abcd.npz",
        tmp_path / f".p.history.csv.dlc-{host}-{dead}-0123abcd.csv",
    ]
    kept = [
        tmp_path / f".p.npz.dlc-{host}-{alive}-0123abcd.npz",  # its writer is alive
        tmp_path / ".p.npz.dlc-ffffff-1-0123abcd.npz",  # another host's, written just now
        tmp_path / ".p.npz.notes",  # not dlc's
        tmp_path / ".p.npz.k3j4h5g6.npz",  # no marker: perhaps not dlc's
    ]
    old = tmp_path / ".p.npz.dlc-ffffff-1-4567abcd.npz"  # another host's, two days old
    for path in [*stale, *kept, old]:
        path.write_bytes(b"half a file")
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    assert run(["train", REGRESSION, "--save", save, "--epochs", "2"], capsys)[0] == 0
    assert not any(p.exists() for p in [*stale, old])
    assert all(p.exists() for p in kept)
