"""Model file to first trained step, in fresh processes: parse, differentiate, emit, (JIT,) one step.

    python -m benchmarks.firststep [--quick] [--backends numpy,llvm] [--dtype float64]

For every teaching example (``examples/*.dlc``) and benchmark network, and
for each backend, a fresh Python process imports dlc, warms it up on a
one-line model (so the one-time start-up of Lark, SymPy and LLVM is timed
apart, as "start-up") and then times ``compile_model(path)`` and the first
``train_step`` on a random batch of the model's shapes. "Cold" runs with the
machine-code cache off (``DLC_CACHE_DIR=""``), so the LLVM module is
JIT-compiled; "warm" is a third process, after a second one has filled an
empty cache folder, as the next run of the same model finds it (the NumPy
backend has no such cache). Without ``--quick`` every model gets its own
processes; with it, one process of each kind times all models in turn
(what the earlier ones leave behind is only warmed libraries).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("numpy", "llvm")
GOAL_S = 0.5  # the goal for "model file to first trained step", every example


def model_files() -> list[Path]:
    """The teaching examples, then the four benchmark networks."""
    from benchmarks.spec import SIZES, model_path

    return sorted((ROOT / "examples").glob("*.dlc")) + [model_path(s) for s in SIZES]


def batch_for(module: object, seed: int = 0) -> tuple[object, object]:
    """A random batch of the model's shapes and training batch size (None where it has no input/target).

    Targets are drawn from [0, 1) so that every loss (mse, cross-entropies
    that expect probabilities) is finite on them; a class-index target gets
    class 0. Several inputs (targets) come as a dict by name.
    """
    rng = np.random.default_rng(seed)
    batch = int(module.TRAINING["batch_size"])  # type: ignore[attr-defined]
    dtype = module.DTYPE  # type: ignore[attr-defined]
    classes = module.CLASSES  # type: ignore[attr-defined]
    X = {k: rng.standard_normal((batch, *s)).astype(dtype) for k, s in module.INPUT_SHAPES.items()}  # type: ignore[attr-defined]
    Y = {
        k: np.zeros(batch, dtype) if k in classes else rng.random((batch, *s)).astype(dtype)
        for k, s in module.TARGET_SHAPES.items()  # type: ignore[attr-defined]
    }
    return _form(X), _form(Y)


def _form(arrays: dict[str, np.ndarray]) -> object:
    """None, the one array, or the dict by name: as the module takes them."""
    return None if not arrays else next(iter(arrays.values())) if len(arrays) == 1 else arrays


def first_step(path: Path, backend: str, dtype: str) -> tuple[float, float]:
    """Seconds for compile_model(path) and for the first train_step after it."""
    from dlc.compiler import compile_model

    t0 = time.perf_counter()
    module = compile_model(path, backend=backend, dtype=dtype)
    t1 = time.perf_counter()
    params = module.init_params(0)
    state = module.init_state(params)
    X, Y = batch_for(module)
    t2 = time.perf_counter()
    module.train_step(params, state, X, Y)  # the model's optimizer and settings
    return t1 - t0, time.perf_counter() - t2


def child(backend: str, dtype: str, paths: list[Path]) -> dict:
    """The measurements of one fresh process (see the module's docstring); the cache is the caller's."""
    t0 = time.perf_counter()
    import dlc.compiler  # noqa: F401 (timed: the import is part of start-up)
    from benchmarks.peers import Dlc, DlcLlvm

    cache, os.environ["DLC_CACHE_DIR"] = os.environ.get("DLC_CACHE_DIR"), ""  # the one-liner stays out
    (DlcLlvm if backend == "llvm" else Dlc).warm_library()
    if cache is None:
        del os.environ["DLC_CACHE_DIR"]
    else:
        os.environ["DLC_CACHE_DIR"] = cache
    startup = time.perf_counter() - t0
    return {"startup_s": startup, "models": {str(p): first_step(p, backend, dtype) for p in paths}}


def run_child(backend: str, dtype: str, paths: list[Path], cache_dir: str, timeout: float = 600) -> dict:
    """``child`` in a fresh Python process with ``DLC_CACHE_DIR=cache_dir``; {"error": ...} if it fails."""
    cmd = [sys.executable, "-m", "benchmarks.firststep", "--child", backend, dtype, *map(str, paths)]
    env = dict(os.environ, DLC_CACHE_DIR=cache_dir)
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or [f"exit code {out.returncode}"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_group(backend: str, dtype: str, paths: list[Path], quick: bool = False) -> dict:
    """``child``'s result with the cache off, and under "warm" the result of a process that reads the
    cache another one has just filled (LLVM only; None for NumPy). With ``quick`` the cold process
    itself fills the cache (an empty folder: it still compiles everything, and writes a file per model).
    """
    if backend != "llvm":
        return run_child(backend, dtype, paths, "") | {"warm": None}
    with tempfile.TemporaryDirectory(prefix="dlc-first-step-") as cache:
        cold = run_child(backend, dtype, paths, cache if quick else "")
        if "error" in cold:
            return cold
        filled = cold if quick else run_child(backend, dtype, paths, cache)
        warm = filled if "error" in filled else run_child(backend, dtype, paths, cache)
    return cold | {"warm": warm}


def measure(backends: list[str], dtype: str = "float64", quick: bool = False,
            paths: list[Path] | None = None) -> list[dict]:  # fmt: skip
    """One row per model and backend: start-up, compile and first step, cold and warm (seconds)."""
    paths = model_files() if paths is None else paths
    rows = []
    for backend in backends:
        for group in [paths] if quick else [[p] for p in paths]:
            result = measure_group(backend, dtype, group, quick)
            for path in group:
                row = {"model": _name(path), "backend": backend, "dtype": dtype}
                if "error" in result:
                    rows.append(row | {"error": result["error"]})
                    continue
                warm = result["warm"]
                rows.append(row | {
                    "startup_s": result["startup_s"],
                    "cold": tuple(result["models"][str(path)]),
                    "warm": None if warm is None or "error" in warm else tuple(warm["models"][str(path)]),
                })  # fmt: skip
    return rows


def _name(path: Path) -> str:
    return str(path.resolve().relative_to(ROOT))


def table(rows: list[dict]) -> str:
    """The Markdown table of ``measure``'s rows."""
    lines = [
        "| model | backend | start-up (s) | cold: compile_model (s) | cold: first step (s) | "
        f"cold: total (s) | warm cache: total (s) | cold total ≤ {GOAL_S} s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| `{r['model']}` | {r['backend']} | failed: {r['error']} | | | | | |")
            continue
        compile_s, step_s = r["cold"]
        total = compile_s + step_s
        warm = "–" if r["warm"] is None else f"{sum(r['warm']):.3f}"
        lines.append(
            f"| `{r['model']}` | {r['backend']} | {r['startup_s']:.2f} | {compile_s:.3f} | {step_s:.3f} "
            f"| {total:.3f} | {warm} | {'yes' if total <= GOAL_S else '**no**'} |"
        )
    return "\n".join(lines)


DESCRIPTION = (
    "From the model file to the end of the first `train_step` on a random batch of the model's shapes "
    "(its training batch size; no batch for a model without input and target), in float64. "
    "Start-up is importing dlc and compiling a one-line model (for LLVM: and JIT-compiling it): "
    "Lark's parser, SymPy and LLVM's initialisation, paid once per process. "
    "compile_model parses, checks, differentiates and writes the module; "
    "the first step of an LLVM module JIT-compiles its IR. "
    'Cold: the machine-code cache is off (`DLC_CACHE_DIR=""`); warm cache: a fresh process after '
    "another one compiled the same model into an empty cache folder, so the LLVM module's machine "
    "code is read from disk instead of compiled (the NumPy backend has no such cache)."
)


QUICK_NOTE = (
    "--quick: one process of each kind times all models in turn (so only the first one finds the "
    "libraries cold), and the cold process writes the cache (into an empty folder) that the warm one reads."
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.firststep", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one process per backend for all models")
    ap.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated: numpy,llvm")
    ap.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)  # BACKEND DTYPE MODEL...
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        backend, dtype, *paths = args.child
        print(json.dumps(child(backend, dtype, [Path(p) for p in paths])))
        return 0
    rows = measure([b for b in args.backends.split(",") if b], args.dtype, args.quick)
    print(DESCRIPTION + ("\n\n" + QUICK_NOTE if args.quick else "") + "\n\n" + table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
