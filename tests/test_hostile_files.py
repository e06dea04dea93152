"""Hostile files and flags end in one clear ``error:`` line and exit code 2, never a traceback or a hang.

Checkpoints with odd epochs, archives that are not archives or whose headers
claim more than they hold, FIFOs and devices where files belong, data too
large to predict at once, parameters too large for the memory, numbers past
the limits on the command line, and a reader that goes away.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from dlc.cli import main
from dlc.compiler import compile_model, load_module
from dlc.errors import DlcError
from dlc.frontend import load, load_source
from dlc.gradcheck import check_gradients
from dlc.train import run as run_module
from dlc.train.run import Options, accuracy, eval_rows, settings, train

from .conftest import ROOT

REGRESSION = ROOT / "examples" / "regression.dlc"
XOR = ROOT / "examples" / "xor.dlc"
HANG_S = 300  # a guard against a hang, not a measure of speed


def run(args: list[Any], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def one_error(code: int, err: str) -> str:
    """The message of a run that must fail with exactly one ``error:`` line and exit code 2."""
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and ": error: " in lines[0], err
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """The arrays of a 3-epoch checkpoint of the regression example."""
    save = tmp_path_factory.mktemp("trained") / "r.npz"
    assert main(["train", str(REGRESSION), "--save", str(save), "--epochs", "3", "--quiet"]) == 0
    with np.load(save) as npz:
        return {k: npz[k] for k in npz.files}


def npy_bytes(array: np.ndarray, shape: tuple[int, ...] | None = None) -> bytes:
    """An .npy member, with a header that claims ``shape`` if given."""
    out = io.BytesIO()
    header = np.lib.format.header_data_from_array_1_0(array)
    if shape is not None:
        header["shape"] = shape
    np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue() + np.ascontiguousarray(array).tobytes()


def write_zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        for name, data in members.items():
            zf.writestr(name + ".npy", data)
    return path


# --------------------------------------------------------------- checkpoints


@pytest.mark.parametrize(
    ("epoch", "shown"),
    [([1, 2], "[1, 2]"), ("abc", "abc"), (-5, "-5"), (np.nan, "nan"), (1e30, "1e+30"), (2**40, str(2**40))],
)
def test_a_checkpoint_epoch_that_is_no_epoch(
    epoch: Any, shown: str, trained: dict[str, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{**trained, "epoch": np.array(epoch)})
    want = f"dlc: error: {bad}: its epoch must be one whole number from 0 to 2^31, not {shown}"
    code, _, err = run(["train", REGRESSION, "--resume", bad, "--save", tmp_path / "o.npz"], capsys)
    assert one_error(code, err) == want
    code, _, err = run(["predict", REGRESSION, "--params", bad, "--data", "builtin:regression"], capsys)
    assert one_error(code, err) == want


def test_an_npy_renamed_npz(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "p.npz"
    with open(fake, "wb") as f:
        np.save(f, np.ones((4, 1)))
    code, _, err = run(["train", REGRESSION, "--resume", fake, "--save", tmp_path / "o.npz"], capsys)
    assert (
        one_error(code, err)
        == f"dlc: error: the checkpoint {fake} is not a .npz archive (it is not a zip file)"
    )
    code, _, err = run(["predict", REGRESSION, "--params", fake, "--data", "builtin:regression"], capsys)
    assert "is not a .npz archive" in one_error(code, err)
    code, _, err = run(["train", REGRESSION, "--data", fake, "--save", tmp_path / "o.npz"], capsys)
    assert one_error(code, err) == f"dlc: error: {fake} is not a .npz archive (it is not a zip file)"


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_header_claiming_10_to_the_11_values(
    method: int, trained: dict[str, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """NumPy would allocate 745 GiB for it before reading a byte."""
    members = {k: npy_bytes(v) for k, v in trained.items() if v.dtype.kind != "U"}
    members["param/W1"] = npy_bytes(trained["param/W1"], (10**11, 1))
    bad = write_zip(tmp_path / "bad.npz", members, method)
    claim = "its header claims shape [100000000000, 1] (745 GiB), but the archive holds only"
    code, _, err = run(["train", REGRESSION, "--resume", bad, "--save", tmp_path / "o.npz"], capsys)
    assert claim in one_error(code, err)
    code, _, err = run(["predict", REGRESSION, "--params", bad, "--data", "builtin:regression"], capsys)
    assert claim in one_error(code, err)
    data = {"x": npy_bytes(np.ones((8, 1)), (10**11, 1)), "y": npy_bytes(np.ones((8, 1)))}
    code, _, err = run(["train", REGRESSION, "--data", write_zip(tmp_path / "d.npz", data, method)], capsys)
    assert f"array 'x': {claim}" in one_error(code, err)


def test_a_zip_directory_that_lies_about_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_zip(tmp_path / "d.npz", {"x": npy_bytes(np.ones((8, 1))), "y": npy_bytes(np.ones((8, 1)))})
    data = bytearray(path.read_bytes())
    central = data.index(b"PK\x01\x02")  # the first member's entry in the central directory
    data[central + 24 : central + 28] = (10**9).to_bytes(4, "little")  # its uncompressed size
    path.write_bytes(bytes(data))
    code, _, err = run(["train", REGRESSION, "--data", path], capsys)
    assert "the archive's directory claims sizes its contents cannot have" in one_error(code, err)


def test_an_array_too_large_for_the_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.ones((8, 1)), y=np.ones((8, 1)))

    def no_memory(*args: Any, **kwargs: Any) -> np.ndarray:
        raise MemoryError

    monkeypatch.setattr(np.lib.format, "read_array", no_memory)
    with pytest.raises(DlcError, match=r"array 'x' of shape \[8, 1\] needs 64 bytes of memory, more than"):
        train(load(REGRESSION), Options(data=str(path)))


# --------------------------------------------------------------- FIFOs, devices, folders

ODD_FILES = r"""
import contextlib, io, json, os, sys
from dlc.cli import main
results = []
for args in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    results.append([code, err.getvalue()])
print(json.dumps(results))
"""


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are a Unix thing")
def test_fifos_devices_and_folders_are_refused_without_reading(tmp_path: Path) -> None:
    import json

    fifo_model, fifo_csv, fifo_npz = (tmp_path / n for n in ("m.dlc", "d.csv", "p.npz"))
    for fifo in (fifo_model, fifo_csv, fifo_npz):
        os.mkfifo(fifo)
    zero_csv, zero_npz, zero_model = (tmp_path / n for n in ("z.csv", "z.npz", "z.dlc"))
    for link in (zero_csv, zero_npz, zero_model):
        link.symlink_to("/dev/zero")
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    save = str(tmp_path / "o.npz")
    cases = {
        "a pipe (FIFO)": [["show", str(fifo_model)], ["train", str(fifo_model)],
                          ["train", str(REGRESSION), "--data", str(fifo_csv), "--save", save],
                          ["train", str(REGRESSION), "--resume", str(fifo_npz), "--save", save],
                          ["predict", str(REGRESSION), "--params", str(fifo_npz), "--data", "builtin:xor"]],
        "a device": [["show", str(zero_model)], ["compile", str(zero_model)],
                     ["train", str(REGRESSION), "--data", str(zero_csv), "--save", save],
                     ["train", str(REGRESSION), "--data", str(zero_npz), "--save", save]],
        "a folder": [["train", str(REGRESSION), "--data", str(folder), "--save", save]],
    }  # fmt: skip
    argv = [args for group in cases.values() for args in group]
    proc = subprocess.run(
        [sys.executable, "-c", ODD_FILES, json.dumps(argv)], capture_output=True, text=True, timeout=HANG_S
    )
    assert proc.returncode == 0, proc.stderr
    results = iter(json.loads(proc.stdout))
    for kind, group in cases.items():
        for args in group:
            code, err = next(results)
            assert f"it is {kind}, not a regular file" in one_error(code, err), args


def test_a_csv_over_1_gib_is_refused_unread(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "big.csv"
    with open(path, "wb") as f:
        f.write(b"x,y\n")
        f.truncate(2 << 30)  # a hole: no disk used
    code, _, err = run(["train", REGRESSION, "--data", path, "--save", tmp_path / "o.npz"], capsys)
    assert one_error(code, err) == f"dlc: error: {path}: the file is larger than 1 GiB"


# --------------------------------------------------------------- large data, large parameters


def counting(module: ModuleType, rows: list[int]) -> ModuleType:
    """``module``, recording in ``rows`` how many examples each predict and loss call gets."""
    predict, loss = module.predict, module.loss

    def counted_predict(params: Any, X: Any) -> Any:
        rows.append(len(X))
        return predict(params, X)

    def counted_loss(params: Any, X: Any, Y: Any) -> Any:
        rows.append(len(X))
        return loss(params, X, Y)

    module.predict, module.loss = counted_predict, counted_loss
    return module


def test_metrics_are_computed_in_slices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 25M-row set once died predicting all of it at once (38.7 GiB); now no call gets more than a slice."""
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (3000, 2))
    path = tmp_path / "many.npz"
    np.savez(path, x=X, y=(X.sum(axis=1) > 1).astype(np.int64))
    monkeypatch.setattr(run_module, "EVAL_BYTES", 8 * 1000)
    graph = load(XOR).graph
    per_example = sum(int(np.prod(n.shape)) for n in graph.nodes() if n.batched)
    assert eval_rows(graph) == 1000 // per_example
    rows: list[int] = []
    monkeypatch.setattr(
        run_module, "load_module", lambda source, name: counting(load_module(source, name), rows)
    )
    result = train(load(XOR), Options(data=str(path), epochs=2, val_split=0.2))
    assert rows and max(rows) == eval_rows(graph)
    assert result.history[-1].accuracy is not None and result.history[-1].val_loss is not None
    # Slices give the same numbers as one call.
    module = compile_model(XOR)
    params = module.init_params(0)
    Y = (X.sum(axis=1, keepdims=True) > 1).astype(float)
    whole = float(np.mean((module.predict(params, X) > 0.5) == Y))
    assert accuracy(graph, module, params, X, Y, rows=7) == pytest.approx(whole, abs=1e-15)
    assert run_module.mean_loss(module, params, X, Y, 7) == pytest.approx(
        module.loss(params, X, Y), rel=1e-12
    )


HUGE_PARAM = "input x : [1]\ntarget y : [1]\nparam W : [31622, 31622] = zeros\nloss mse(sum(W) * x, y)\n"
LIMITED = r"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
from dlc.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("command", [["train", "--data", "builtin:regression"], ["check"]])
def test_parameters_too_large_for_the_memory(command: list[str], tmp_path: Path) -> None:
    """31622 x 31622 is within the 10^9 limit, but 7.45 GiB a copy: say how much is needed."""
    model = tmp_path / "huge.dlc"
    model.write_text(HUGE_PARAM)
    args = [command[0], str(model), *command[1:]]
    proc = subprocess.run(
        [sys.executable, "-c", LIMITED, *args], capture_output=True, text=True, timeout=HANG_S, cwd=tmp_path
    )
    line = proc.stderr.strip().splitlines()[0]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "needs at least" in line and "W : [31622, 31622] alone is 7.45 GiB" in line, line


def test_running_out_of_memory_anyway_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_memory(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError

    monkeypatch.setattr(
        run_module, "load_module", lambda source, name: type("M", (), {"init_params": no_memory})
    )
    with pytest.raises(DlcError, match="training ran out of memory"):
        train(load(REGRESSION), Options())


# --------------------------------------------------------------- numbers on the command line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", REGRESSION, "--backend", "llvm", "--batch-size", "9223372036854775808"],
         "argument --batch-size: must be a whole number from 1 to 2^31, not 9223372036854775808"),
        (["check", REGRESSION, "--seed", "-1"], "argument --seed: must be a whole number from 0 to 2^31"),
        (["train", REGRESSION, "--epochs", "1e21"], "argument --epochs: must be a whole number from 0"),
        (["train", REGRESSION, "--epochs", str(10**21)], "argument --epochs: must be a whole number"),
        (["train", REGRESSION, "--epochs", str(2**31 + 1)], "argument --epochs: must be a whole number"),
        (["train", REGRESSION, "--checkpoint-every", "-1"], "argument --checkpoint-every: must be a whole"),
        (["train", REGRESSION, "--lr", "nan"], "argument --lr: must be a finite number, not nan"),
        (["train", REGRESSION, "--momentum", "inf"], "argument --momentum: must be a finite number, not inf"),
        (["train", REGRESSION, "--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)  # fmt: skip
def test_numbers_past_the_limits_on_the_command_line(
    args: list[Any], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(args, capsys)
    assert message in one_error(code, err) and out == ""


def test_the_same_limits_from_python() -> None:
    graph = load(REGRESSION).graph
    for options, message in [
        (
            Options(epochs=10**21),
            "--epochs must be a whole number from 0 to 2^31, not 1000000000000000000000",
        ),
        (Options(batch_size=2**63), "--batch-size must be a whole number from 1 to 2^31"),
        (Options(seed=-1), "--seed must be a whole number from 0 to 2^31, not -1"),
        (Options(lr=float("inf")), "--lr must be greater than 0, not inf"),
        (Options(epochs=2.5), "--epochs must be a whole number from 0 to 2^31, not 2.5"),  # type: ignore[arg-type]
    ]:
        with pytest.raises(DlcError, match=message.replace("^", r"\^").replace("(", r"\(")):
            settings(graph, options)
    with pytest.raises(DlcError, match="--seed must be a whole number from 0 to 2"):
        check_gradients(load_source("param w : [] = zeros\nloss w ** 2\n").graph, seed=-1)


# --------------------------------------------------------------- a reader that goes away


@pytest.mark.parametrize(
    "command", [["show", "seed_chain"], ["grad", "seed_chain"], ["train", "xor", "--epochs", "5", "--quiet"]]
)
def test_output_into_a_closed_pipe(command: list[str], tmp_path: Path) -> None:
    """``dlc grad M | head -1``: the reader is gone before dlc writes; dlc stops quietly, as a filter does."""
    model = ROOT / "examples" / f"{command[1]}.dlc"
    args = [sys.executable, "-m", "dlc", command[0], str(model), *command[2:]]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # long before dlc has anything to write
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=HANG_S) == 141, err
    assert err == ""
    if command[0] == "train":
        assert (tmp_path / "xor.npz").exists(), "the parameters are saved before anything is printed"
