"""Files dlc writes stay whole when writers race or die.

- Two ``dlc compile`` of one model into one output path, started together,
  both succeed, and the file is then exactly one of the two modules (never
  a mix or a torn write), valid Python that imports and runs.
- ``dlc train --checkpoint-every 1 --save P`` killed with SIGKILL at random
  moments, then resumed from P into P again and killed again, always leaves
  a P that loads, and the final resumed run ends with exactly the parameters
  of an uninterrupted run.
"""

from __future__ import annotations

import ast as pyast
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dlc.compiler import compile_source, load_module
from dlc.frontend import load
from dlc.train import checkpoint
from dlc.train.run import Options, train

from .conftest import ROOT

MODEL = ROOT / "examples" / "xor.dlc"
EPOCHS = 1500


def dlc(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dlc", *args],
        cwd=cwd,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


# --------------------------------------------------------------- racing compiles


@pytest.mark.slow
def test_two_compiles_into_one_path_at_once(tmp_path: Path) -> None:
    model = load(MODEL)
    expected = {dtype: compile_source(model, dtype=dtype) for dtype in ("float64", "float32")}
    out = tmp_path / "xor_module.py"
    for attempt in range(3):
        procs = [
            dlc("compile", str(MODEL), "-o", str(out), "--dtype", dtype, cwd=tmp_path) for dtype in expected
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            assert "Traceback" not in err
        text = out.read_text(encoding="utf-8")
        assert text in expected.values(), f"attempt {attempt}: the file is neither module whole"
        pyast.parse(text)
        module = load_module(text, "raced")
        params = module.init_params(0)
        X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=module.DTYPE)
        Y = np.array([[0], [1], [1], [0]], dtype=module.DTYPE)
        value, grads = module.value_and_grad(params, X, Y)
        assert np.isfinite(value) and set(grads) == set(params)
        out.unlink()
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert leftovers == [], f"temporary files left behind: {leftovers}"


# --------------------------------------------------------------- killed training


def reference(tmp_path: Path) -> dict[str, np.ndarray]:
    """The parameters after an uninterrupted run (through the same code as the command line)."""
    save = tmp_path / "reference.npz"
    result = train(load(MODEL), Options(data="builtin:xor", epochs=EPOCHS, save=save))
    assert result.diverged is None and not result.interrupted
    return checkpoint.load(save, load(MODEL).graph, "float64").params


def train_args(save: Path, resume: Path | None) -> list[str]:
    args = [
        "train",
        str(MODEL),
        "--data",
        "builtin:xor",
        "--epochs",
        str(EPOCHS),
        "--checkpoint-every",
        "1",
        "--save",
        str(save),
        "--quiet",
    ]
    return args + (["--resume", str(resume)] if resume else [])


def kill_at_random(save: Path, resume: Path | None, cwd: Path, rng: random.Random) -> None:
    """Start training into ``save``; once a checkpoint exists, wait a random while and SIGKILL it."""
    before = save.stat().st_mtime_ns if save.exists() else None
    proc = dlc(*train_args(save, resume), cwd=cwd)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if save.exists() and save.stat().st_mtime_ns != before:
            break
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 1.5))
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)


@pytest.mark.slow
def test_training_killed_at_random_moments_resumes_exactly(tmp_path: Path) -> None:
    want = reference(tmp_path)
    graph = load(MODEL).graph
    rng = random.Random(20240611)
    save = tmp_path / "P.npz"
    epochs_seen = []
    for kill in range(4):
        kill_at_random(save, save if save.exists() else None, tmp_path, rng)
        assert save.exists(), f"kill {kill}: no checkpoint"
        state = checkpoint.load(save, graph, "float64")  # must load, whatever moment the kill hit
        assert 1 <= state.epoch <= EPOCHS, state.epoch
        assert all(
            np.all(np.isfinite(v)) for v in (*state.params.values(), *state.state["velocity"].values())
        )
        epochs_seen.append(state.epoch)
    assert epochs_seen == sorted(epochs_seen), f"a resumed run went back: {epochs_seen}"
    final = tmp_path / "final.npz"
    proc = dlc(*train_args(final, save), cwd=tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    got = checkpoint.load(final, graph, "float64")
    assert got.epoch == EPOCHS
    for name, value in want.items():
        np.testing.assert_array_equal(got.params[name], value, err_msg=f"{name} after kills at {epochs_seen}")
    print(f"killed at epochs {epochs_seen}; leftover files: {sorted(p.name for p in tmp_path.iterdir())}")


@pytest.mark.slow
def test_kill_during_the_first_checkpoint_leaves_no_half_file(tmp_path: Path) -> None:
    """Kills early in a run, around the first save: there is no P, or a P that loads."""
    graph = load(MODEL).graph
    for delay in (0.3, 0.6, 0.9):
        save = tmp_path / f"early-{delay}.npz"
        proc = dlc(*train_args(save, None), cwd=tmp_path)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        if save.exists():
            checkpoint.load(save, graph, "float64")
