"""The benchmark's implementations compute dlc's training step, and its measuring code runs.

Nothing here asserts a time: the machines that run the tests are shared and
noisy. The measurements run at tiny sizes only to show that every table can
be made.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import compile_time, epoch, firststep, goals, limits, scaling
from benchmarks.measure import CHECK_RTOL, Timing, available_peers, cross_check
from benchmarks.peers import Dlc, DlcLlvm
from benchmarks.report import c_tol
from benchmarks.spec import load_spec

EXPECTED = {"tiny": ((2, 8, 2), 32), "small": ((64, 32, 10), 64)}
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(autouse=True)
def _private_machine_code_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test JIT-compiles into its own cache: an IR compiled twice in a test is compiled once."""
    monkeypatch.setenv("DLC_CACHE_DIR", str(tmp_path / "dlc-cache"))


@pytest.mark.slow  # imports torch, jax and pytensor and compiles for each: well over a few seconds
def test_every_installed_peer_matches_dlcs_training_step() -> None:
    peers, _skipped = available_peers()
    for size, (dims, batch) in EXPECTED.items():
        spec = load_spec(size)
        assert (spec.dims, spec.batch, spec.lr, spec.momentum) == (dims, batch, 0.1, 0.9)
        results = cross_check(spec, peers, "float64")
        assert {r.peer for r in results} == {p.label for p in peers}
        for r in results:
            assert r.dtype_ok, f"{size}: {r.peer} {r.note}"
            assert r.error <= CHECK_RTOL, f"{size}: {r.peer} differs from dlc by {r.error:.1e}"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_llvm_module_matches_dlcs_numpy_step_in_the_cross_check(dtype: str) -> None:
    assert DlcLlvm.missing() is None, "llvmlite is a dependency of dlc"
    results = cross_check(load_spec("tiny"), [Dlc, DlcLlvm], dtype)
    llvm = next(r for r in results if r.peer == DlcLlvm.label)
    assert llvm.dtype_ok, llvm.note
    assert llvm.error <= c_tol(dtype), f"the LLVM step differs from the NumPy module's by {llvm.error:.1e}"


def test_the_native_epoch_is_timed_for_both_backends() -> None:
    cfg = {"rounds": 1, "round_s": 0.0, "steps": {"tiny": 3}}
    rows = epoch.measure_one(load_spec("tiny"), "float64", ["llvm", "numpy"], cfg)
    assert [(r["backend"], r["steps"]) for r in rows] == [("llvm", 3), ("numpy", 3)]
    assert rows[0]["native"] is not None and rows[1]["native"] is None  # only LLVM has a native epoch
    assert "| tiny | float64 | llvm | 3 × 32 |" in epoch.table(rows)


def test_the_first_step_of_models_with_and_without_data() -> None:
    for name in ("xor.dlc", "loss_surface.dlc"):  # loss_surface has no input and no target
        for backend in firststep.BACKENDS:
            compile_s, step_s = firststep.first_step(EXAMPLES / name, backend, "float64")
            assert compile_s > 0 and step_s > 0


@pytest.mark.slow  # three fresh Python processes, each importing dlc
def test_first_step_in_fresh_processes_cold_and_warm() -> None:
    rows = firststep.measure(["llvm"], "float64", quick=True, paths=[EXAMPLES / "xor.dlc"])
    assert len(rows) == 1 and "error" not in rows[0], rows
    assert len(rows[0]["cold"]) == 2 and len(rows[0]["warm"]) == 2
    assert "| `examples/xor.dlc` | llvm |" in firststep.table(rows)


def test_scaling_runs_at_tiny_sizes() -> None:
    cfg = {"samples": 1, "sample_s": 0.0, "examples": 16, "batch": 8, "epochs": 2}
    net = scaling.Mlp(width=3, inputs=2, classes=2)
    series = [("numpy", "float32"), ("llvm", "float64")]  # both backends and dtypes, in half the compiles
    results = scaling.measure(cfg, net, batches=(1, 2), depths=(1, 2), series=series)
    assert list(results["batch"]) == list(results["depth"]) == series
    assert all(len(r["rss"]) == len(r["peak"]) == 2 for r in results["memory"])
    text = scaling.render(results, cfg, "python -m benchmarks.scaling", net)
    assert "| batch | numpy float32 (ms/step) | llvm float64 (ms/step) |" in text
    assert "| hidden layers | numpy float32 (ms/step) |" in text
    assert text.count("| yes |") + text.count("| **no** |") == len(series)


def test_the_scaling_model_has_the_asked_depth() -> None:
    from dlc.compiler import compile_model

    module = compile_model(scaling.Mlp(width=5, inputs=4, classes=3).text(3))
    shapes = module.PARAM_SHAPES
    assert shapes["W1"] == (5, 4) and shapes["W3"] == (5, 5) and shapes["W4"] == (3, 5) and len(shapes) == 8


def _row(size: str, peer: str, ms: float) -> dict:
    return {"size": size, "dtype": "float64", "peer": peer, "timing": Timing([ms / 1e3]), "other_load": 0.0}


def test_goals_are_judged_against_the_peers_present() -> None:
    rows = [_row("tiny", "llvm", 0.002), _row("tiny", "pytensor", 0.02), _row("tiny", "torch", 0.1)]
    rows += [_row("small", "llvm", 0.01), _row("small", "torch", 0.1), _row("small", "jax", 0.04)]
    found = {g[0]: g for g in goals.step_goals(rows, ["float64"], load_warn=0.1)}
    assert found["tiny: LLVM step ≥ 7× faster than PyTensor"][3] == "met"  # 10×
    assert found["tiny: LLVM step ≥ 100× faster than PyTorch"][3] == "**not met**"  # 50×
    assert found["tiny: LLVM step ≥ 20× faster than JAX jit"][3].startswith("not measured")
    small = found["small: LLVM step ≥ 5× faster than the best peer"]
    assert small[2].startswith("4.00× (JAX jit") and small[3] == "**not met**"
    assert not any(g.startswith("medium") for g in found)  # a size not run has no goal rows


def test_epoch_and_first_step_goals() -> None:
    fast, slow = Timing([0.5e-6]), Timing([2e-6])
    rows = [{"size": "tiny", "dtype": d, "backend": "llvm", "train": slow, "native": t}
            for d, t in (("float32", fast), ("float64", slow))]  # fmt: skip
    assert [g[3] for g in goals.epoch_goals(rows, 1.0)] == ["met", "**not met**"]
    first = [{"model": m, "backend": "llvm", "dtype": "float64", "cold": c} for m, c in (("a", (0.1, 0.2)),
             ("b", (0.3, 0.4)))]  # fmt: skip
    (goal,) = goals.first_step_goals(first, 0.5)
    assert goal[2].startswith("slowest 0.700 s (`b`); 1 of 2 over") and goal[3] == "**not met**"


def test_the_limits_benchmark_runs_every_case() -> None:
    rows = limits.measure(20)
    assert [row[0] for row in rows] == list(limits.CASES)
    assert all(row[1] == "ok" or row[1].startswith("error: ") for row in rows)


@pytest.mark.parametrize("case", list(compile_time.CASES))
def test_the_compile_time_benchmark_times_every_phase(case: str) -> None:
    make = compile_time.CASES[case][0]
    seconds = compile_time.compile_once(make(3), llvm=True)
    assert set(seconds) == set(compile_time.PHASES)
    assert all(s >= 0 for s in seconds.values()) and seconds["llvm-jit"] > 0


def test_the_tensor_ops_benchmark_makes_its_table(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import tensor_ops

    tensor_ops.main(["--rounds", "1", "--seconds", "0.001", "--blocks", "where"])
    out = capsys.readouterr().out
    for name in ("dlc llvm where", "dlc llvm leaky_relu", "dlc numpy where", "dlc numpy leaky_relu"):
        assert f"| {name} | " in out


def test_the_conv_benchmark_makes_its_tables(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from benchmarks import conv

    has_torch = importlib.util.find_spec("torch") is not None
    monkeypatch.setattr(conv, "have", lambda lib: lib != "jax" and has_torch)  # JAX's compiles are slow
    conv.main(["--rounds", "1", "--seconds", "0.001", "--blocks", "check,step"])
    out = capsys.readouterr().out
    assert "held to 1 thread(s)" in out
    for name in ("dlc LLVM", "dlc NumPy", *(["PyTorch eager"] if has_torch else [])):
        assert f"| {name} | " in out
    assert "dlc LLVM ≥ 3× faster than PyTorch eager: " in out
    assert "no slower than JAX jit: not measured (no JAX)" in out
    if has_torch:  # dlc against PyTorch at float64, every row within its tolerance
        assert "| dlc LLVM | float64 | loss and gradients | " in out
        assert "| dlc NumPy | float64 | loss and gradients | " in out
        assert "| dlc LLVM | float64 | parameters after 2 steps | " in out
        assert "**NO**" not in out


@pytest.mark.slow  # a fresh process for the compile time, three LLVM modules
def test_the_conv_benchmark_times_compile_time_and_the_breakdown(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    from benchmarks import conv

    monkeypatch.setattr(conv, "have", lambda lib: lib != "jax")  # JAX's jit of LeNet-5 takes 10 s here

    argv = [
        "--rounds",
        "1",
        "--seconds",
        "0.001",
        "--compile-runs",
        "1",
        "--blocks",
        "step,compile,breakdown",
    ]
    conv.main(argv)
    out = capsys.readouterr().out
    assert "no slower than JAX jit: not measured (no JAX)" in out
    assert "| 1 | " in out and "Goal: model file to first step under 1 s (cold): median " in out
    for row in ("dlc LLVM", "PyTorch", "conv1 block + head", "LeNet-5", "*conv2 block*"):
        assert f"| {row} | " in out


@pytest.mark.slow  # a sweep on 1 and 2 local workers, and (with Ray) a private Ray instance twice
def test_the_sweep_benchmark_makes_its_tables(capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    from benchmarks import sweep

    has_ray = importlib.util.find_spec("ray") is not None
    argv = ["--cases", "spiral-numpy", "--ray-cases", "spiral-numpy", "--epochs", "1", "--lrs", "2"]
    sweep.main([*argv, "--seeds", "1", "--repeats", "1", "--wait", "0", *([] if has_ray else ["--no-ray"])])
    out = capsys.readouterr().out
    assert out.count("| spiral-numpy | numpy | ") == 3 + 4 * has_ray  # 1 and 2 workers, their ratio; Ray's
    for executor in ("1 worker | 2 |", "2 workers | 2 |"):
        assert f"| spiral-numpy | numpy | {executor} " in out
    assert "| 2 of 2 |" in out  # every run trained
    assert out.count("- Goal: ") == 1 + 2 * has_ray
    if has_ray:
        for executor in ("Ray start-up (ray.init)", "Ray, started by the sweep", "Ray, started once"):
            assert f"| spiral-numpy | numpy | {executor} | " in out
    else:
        assert "Not measured: --no-ray." in out


def test_the_play_benchmark_measures_training_with_and_without_the_page(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("aiohttp", reason="dlc play needs the extra dlc[play]")
    from benchmarks import play

    monkeypatch.setenv("DLC_CACHE_DIR", "")  # main() sets its own temporary cache; monkeypatch restores ours
    play.main(["--quick", "--backend", "numpy"])
    out = capsys.readouterr().out
    assert "spiral.dlc, 200 epochs, numpy" in out
    assert "dlc train alone" in out and "play, no page" in out and "time x1.00 of dlc train alone" in out
