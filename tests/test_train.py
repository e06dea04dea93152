"""dlc train and dlc predict, end to end, as a user runs them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dlc.cli import main

from .conftest import ROOT

XOR = ROOT / "examples" / "xor.dlc"
SINE = ROOT / "tests" / "models" / "sine.dlc"


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_xor_trains_end_to_end_with_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save = tmp_path / "xor.npz"
    code, out, _ = run(["train", str(XOR), "--save", str(save), "--json"], capsys)
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["epochs"] == 500 and summary["train_accuracy"] == 1.0
    assert summary["final_loss"] < 0.01 and isinstance(summary["seconds"], float)
    assert {"val_accuracy", "diverged"} <= set(summary)
    history = (tmp_path / "xor.history.csv").read_text().splitlines()
    assert history[0] == "epoch,loss,accuracy,val_loss,val_accuracy" and len(history) == 501
    with np.load(save, allow_pickle=False) as npz:
        assert int(npz["epoch"]) == 500 and npz["param/W1"].shape == (8, 2)


def test_flags_override_the_train_block(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        ["train", str(SINE), "--save", str(tmp_path / "s.npz"), "--epochs", "5", "--batch-size", "64",
         "--lr", "0.01", "--no-nesterov", "--dtype", "float32", "--val-split", "0.25", "--json"],
        capsys,
    )  # fmt: skip
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["epochs"] == 5 and summary["val_loss"] is not None
    assert summary["train_accuracy"] is None  # a regression has no accuracy
    with np.load(tmp_path / "s.npz") as npz:
        assert npz["param/W1"].dtype == np.float32


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lr", "-1"], "--lr must be greater than 0"),
        (["--momentum", "1"], "--momentum must be at least 0 and less than 1"),
        (["--val-split", "1.5"], "--val-split"),
        (["--data", "builtin:nope"], "nope"),
        (["--batch-size", "0"], "argument --batch-size: must be a whole number from 1 to 2^31, not 0"),
    ],
)
def test_bad_flags_are_clear_errors(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["train", str(SINE), "--save", str(tmp_path / "p.npz"), *flags], capsys)
    assert code == 2 and message in err


def test_plot_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "loss.png"
    code, _, _ = run(
        ["train", str(XOR), "--save", str(tmp_path / "x.npz"), "--epochs", "20", "--plot", str(png)], capsys
    )
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_divergence_stops_keeps_the_last_good_parameters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save = tmp_path / "d.npz"
    code, _, err = run(["train", str(SINE), "--save", str(save), "--lr", "5", "--json"], capsys)
    assert code == 1
    assert "diverged at epoch" in err and "step" in err and "lower the learning rate" in err
    assert not save.exists(), "a diverged run writes nothing at --save"
    kept = tmp_path / "d.diverged.npz"
    with np.load(kept) as npz:
        assert all(np.all(np.isfinite(npz[k])) for k in npz.files if k.startswith("param/"))
        good_epoch = int(npz["epoch"])
    history = (tmp_path / "d.diverged.history.csv").read_text().splitlines()
    assert len(history) - 1 == good_epoch  # the saved parameters are those after the last whole epoch
    assert f"are in {kept}" in err


def test_resume_continues_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    whole, part = tmp_path / "whole.npz", tmp_path / "part.npz"
    assert run(["train", str(SINE), "--save", str(whole)], capsys)[0] == 0
    assert run(["train", str(SINE), "--save", str(part), "--epochs", "25"], capsys)[0] == 0
    assert run(["train", str(SINE), "--save", str(part), "--resume", str(part)], capsys)[0] == 0
    with np.load(whole) as a, np.load(part) as b:
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.slow
def test_a_killed_training_resumes_to_the_same_parameters(tmp_path: Path) -> None:
    whole, part = tmp_path / "whole.npz", tmp_path / "part.npz"
    args = [sys.executable, "-m", "dlc", "train", str(SINE), "--epochs", "3000", "--quiet"]
    subprocess.run([*args, "--save", str(whole)], check=True, capture_output=True)
    proc = subprocess.Popen([*args, "--save", str(part), "--checkpoint-every", "1"], stderr=subprocess.PIPE)
    for _ in range(1200):  # the first checkpoint (polled 1200 times at most, not against a clock)
        if part.exists() or proc.poll() is not None:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with np.load(part) as npz:  # the checkpoint on disk is whole, never half written
        stopped = int(npz["epoch"])
    assert 0 < stopped < 3000, "the run ended before it could be interrupted"
    subprocess.run([*args, "--save", str(part), "--resume", str(part)], check=True, capture_output=True)
    with np.load(whole) as a, np.load(part) as b:
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_resume_from_a_mismatched_file_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "xor.npz"
    run(["train", str(XOR), "--save", str(other), "--epochs", "1"], capsys)
    code, _, err = run(
        ["train", str(SINE), "--save", str(tmp_path / "s.npz"), "--resume", str(other)], capsys
    )
    assert code == 2 and "has shape [8, 2], the model says [16, 1]" in err
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, W1=np.array([object()], dtype=object))
    code, _, err = run(
        ["train", str(SINE), "--save", str(tmp_path / "s.npz"), "--resume", str(pickled)], capsys
    )
    assert code == 2 and "unpickling" in err


def test_predict_writes_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = tmp_path / "xor.npz"
    run(["train", str(XOR), "--save", str(params)], capsys)
    inputs = tmp_path / "x.csv"
    inputs.write_text("x0,x1\n0,0\n0,1\n1,0\n1,1\n")
    out = tmp_path / "pred.csv"
    code, _, _ = run(
        ["predict", str(XOR), "--params", str(params), "--data", str(inputs), "-o", str(out)], capsys
    )
    assert code == 0
    rows = out.read_text().splitlines()
    assert rows[0] == "output,label"
    assert [r.split(",")[1] for r in rows[1:]] == ["0", "1", "1", "0"]


def test_bad_data_is_a_positioned_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "bad.csv"
    data.write_text("x,y\n0.5,1\n0.7,oops\n")
    code, _, err = run(["train", str(SINE), "--save", str(tmp_path / "p.npz"), "--data", str(data)], capsys)
    assert code == 2
    assert f"{data}:3:5: error:" in err and "oops" in err
