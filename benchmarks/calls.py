"""What a call of a generated module costs: each entry point, this dlc against modules written earlier.

    python -m benchmarks.calls [--before DIR] [--sizes tiny,small] [--dtypes float32,float64]

Every entry point checks its arguments in the call (shapes, dtypes,
writability, batch sizes) and the LLVM module writes every address the
native code reads afresh: this measures what that costs where calls are
shortest. For each network it times ``predict``, ``loss``,
``value_and_grad`` and ``train_step`` per call, and ``train()`` per step
(a 100-step epoch: for the LLVM module one native call, so the checks are
paid once per epoch). With ``--before DIR``, the same calls of modules
compiled earlier into DIR (``{backend}_{size}_{dtype}.py``, e.g. by
``dlc compile`` at another commit) are timed in the same process,
interleaved, and the table gives after / before. Samples are round-robin;
a sample during which other processes kept more than a third of a core
busy is flagged in the table.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

from benchmarks.measure import OtherLoad
from benchmarks.spec import DATA_SEED, PARAM_SEED, load_spec, model_path

ENTRIES = ("predict", "loss", "value_and_grad", "train_step", "train")
STEPS = 100  # steps per epoch of train()
BUSY = 1 / 3  # cores of other load that flag a sample


def load_file(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem + "_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def calls(module: ModuleType, size: str) -> dict[str, tuple[Callable[[], object], int]]:
    """Each entry point as a function of no arguments, and how many steps one call is."""
    spec = load_spec(size, module)
    dtype = module.DTYPE  # type: ignore[attr-defined]
    rng = np.random.default_rng(DATA_SEED)
    n = STEPS * spec.batch
    X = rng.standard_normal((n, spec.dims[0])).astype(dtype)
    Y = np.eye(spec.dims[-1], dtype=dtype)[rng.integers(0, spec.dims[-1], size=n)]
    xb, yb = X[: spec.batch].copy(), Y[: spec.batch].copy()
    params = module.init_params(PARAM_SEED)  # type: ignore[attr-defined]
    m = module
    lr = 1e-6  # small steps: the parameters stay where they start
    sgd = {"lr": lr, "momentum": 0.9}
    if hasattr(m, "init_state"):  # the optimizer's state, its settings by keyword
        state = m.init_state(params)  # type: ignore[attr-defined]
        epoch = {"epochs": 1, "batch_size": spec.batch, **sgd, "state": state}

        def step() -> object:
            return m.train_step(params, state, xb, yb, **sgd)  # type: ignore[attr-defined]

    else:  # a module compiled before optimizers were formulas: velocity, and lr, momentum in order
        velocity = {k: np.zeros_like(v) for k, v in params.items()}
        epoch = {"epochs": 1, "batch_size": spec.batch, **sgd, "velocity": velocity}

        def step() -> object:
            return m.train_step(params, velocity, xb, yb, lr, 0.9)  # type: ignore[attr-defined]

    return {
        "predict": (lambda: m.predict(params, xb), 1),  # type: ignore[attr-defined]
        "loss": (lambda: m.loss(params, xb, yb), 1),  # type: ignore[attr-defined]
        "value_and_grad": (lambda: m.value_and_grad(params, xb, yb), 1),  # type: ignore[attr-defined]
        "train_step": (step, 1),
        "train": (lambda: m.train(params, X, Y, **epoch), STEPS),  # type: ignore[attr-defined]
    }


def sample(run: Callable[[], object], steps: int, seconds: float) -> tuple[float, float | None]:
    """Seconds per step over about ``seconds`` of calls, and the other load meanwhile (cores)."""
    count = max(1, int(seconds / _once(run)))
    load = OtherLoad()
    gc.disable()
    try:
        load.start()
        t0 = time.perf_counter()
        for _ in range(count):
            run()
        elapsed = time.perf_counter() - t0
        other = load.stop()
    finally:
        gc.enable()
    return elapsed / (count * steps), other


def _once(run: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    for _ in range(3):
        run()
    return max((time.perf_counter() - t0) / 3, 1e-7)


def measure(modules: dict[str, ModuleType], size: str, rounds: int, seconds: float) -> dict:
    """{(label, entry): (median seconds per step, worst other load)}, labels interleaved per round."""
    runs = {(label, e): calls(m, size)[e] for label, m in modules.items() for e in ENTRIES}
    samples: dict[tuple[str, str], list[tuple[float, float | None]]] = {k: [] for k in runs}
    for r in range(rounds):
        keys = list(runs)
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            samples[key].append(sample(*runs[key], seconds))
    return {
        key: (float(np.median([t for t, _ in s])), max((o for _, o in s if o is not None), default=None))
        for key, s in samples.items()
    }


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f}" if seconds < 1e-5 else f"{seconds * 1e6:.1f}"


def table(results: dict, labels: list[str]) -> str:
    before = "before" in labels
    head = "| network | dtype | backend | entry | µs per step |" + (
        " before | after / before |" if before else ""
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for (size, dtype, backend), res in results.items():
        for entry in ENTRIES:
            now, load = res["after", entry]
            flag = " (busy)" if load is not None and load > BUSY else ""
            row = f"| {size} | {dtype} | {backend} | {entry} | {_us(now)}{flag} |"
            if before:
                then, load_b = res["before", entry]
                flag_b = " (busy)" if load_b is not None and load_b > BUSY else ""
                row += f" {_us(then)}{flag_b} | {now / then:.2f} |"
            lines.append(row)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.calls", description=__doc__.split("\n")[0])
    ap.add_argument("--before", type=Path, help="a folder of modules compiled earlier")
    ap.add_argument("--sizes", default="tiny,small")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--backends", default="llvm,numpy")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.1, help="per sample")
    args = ap.parse_args(argv)
    from dlc.compiler import compile_model

    os.environ.setdefault("DLC_CACHE_DIR", "")  # compile in this process; leave no cache behind
    results = {}
    for size in args.sizes.split(","):
        for dtype in args.dtypes.split(","):
            for backend in args.backends.split(","):
                modules = {"after": compile_model(model_path(size), backend=backend, dtype=dtype)}
                if args.before:
                    modules["before"] = load_file(args.before / f"{backend}_{size}_{dtype}.py")
                results[size, dtype, backend] = measure(modules, size, args.rounds, args.seconds)
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    print(f"{args.rounds} samples of about {args.seconds} s each, interleaved; BLAS threads: {threads}\n")
    print(table(results, ["after", "before"] if args.before else ["after"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
