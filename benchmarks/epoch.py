"""Time per step inside a whole epoch of ``module.train()``: the native epoch against NumPy's loop.

    python -m benchmarks.epoch [--quick] [--sizes tiny,small] [--dtypes float32]

A training step timed on its own (``benchmarks.run``) pays a Python call
per step; ``train()`` of the LLVM module runs an epoch's mini-batches in one
native call, gathering each batch through the epoch's permutation. Here each
module trains on a data set of ``steps × batch`` random examples (100 steps
per epoch) for several epochs per timed call; time per step = wall time /
steps. Two numbers for the LLVM module: through ``train()`` (which also
draws the permutation, keeps a copy of the parameters to restore on NaN and
checks them once per epoch) and the native epoch call alone, which is what
"inside the native epoch" means.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from benchmarks.measure import Timing
from benchmarks.spec import DATA_SEED, DTYPES, PARAM_SEED, SIZES, Spec, load_spec

STEPS = 100  # mini-batches per epoch
GOAL_US = 1.0  # the goal for tiny: at most 1 µs per step inside the native epoch
FULL = {"rounds": 7, "round_s": 0.3, "steps": {s: STEPS for s in SIZES}}
QUICK = {"rounds": 3, "round_s": 0.03, "steps": {"tiny": STEPS, "small": STEPS, "medium": 20, "large": 10}}


class Trainer:
    """One module, its parameters and optimizer state, and an epoch's worth of data."""

    def __init__(self, backend: str, spec: Spec, dtype: str, steps: int) -> None:
        from dlc.compiler import compile_model

        self.backend, self.spec, self.steps = backend, spec, steps
        self.mod = compile_model(spec.path, backend=backend, dtype=dtype)
        self.params = self.mod.init_params(PARAM_SEED)
        self.state = self.mod.init_state(self.params)
        rng = np.random.default_rng(DATA_SEED)
        n = steps * spec.batch
        self.X = rng.standard_normal((n, spec.dims[0])).astype(dtype)
        self.Y = np.eye(spec.dims[-1], dtype=dtype)[rng.integers(0, spec.dims[-1], size=n)]
        self.train(1, self.X[: 2 * spec.batch], self.Y[: 2 * spec.batch])  # JIT, scratch memory

    def train(self, epochs: int, X: np.ndarray | None = None, Y: np.ndarray | None = None) -> None:
        s = self.spec
        self.mod.train(self.params, self.X if X is None else X, self.Y if Y is None else Y, epochs=epochs,
                       batch_size=s.batch, seed=0, lr=s.lr, momentum=s.momentum, nesterov=False,
                       state=self.state)  # fmt: skip

    def native_epochs(self) -> Callable[[int], None] | None:
        """A function running n epochs as n bare native calls, or None where the module has none.

        It reaches into the generated module (``_native().epoch``, what
        ``train()`` calls per epoch, with the arrays train() checked).
        """
        native = getattr(self.mod, "_native", None)
        if self.backend != "llvm" or native is None or not hasattr(native(), "epoch"):
            return None
        nat, n = native(), len(self.X)
        order = np.random.default_rng(0).permutation(n).astype(np.int64)
        losses = np.zeros(self.steps, dtype=np.float64)
        check = self.mod._CHECK
        p, s, _ = check.state(self.params, self.state)  # the lists train() passes
        # the optimizer's numbers for each step, as train() computes them from the settings it is given
        given = check.chosen({"lr": self.spec.lr, "momentum": self.spec.momentum, "nesterov": False})
        table = self.mod._scalars(given, 0, np.arange(self.steps, dtype=np.float64))

        def run(epochs: int) -> None:
            for _ in range(epochs):
                nat.epoch(p, s, (self.X,), (self.Y,), order, self.spec.batch, 0, self.steps, losses, table)

        return run


def _timed(run: Callable[[int], None], epochs: int, steps: int) -> float:
    """Seconds per step of ``run(epochs)``."""
    t0 = time.perf_counter()
    run(epochs)
    return (time.perf_counter() - t0) / (epochs * steps)


def measure_one(spec: Spec, dtype: str, backends: list[str], cfg: dict) -> list[dict]:
    """Per-step times of train() (and of the bare native epoch) for each backend, rounds interleaved."""
    steps = cfg["steps"][spec.size]
    trainers = [Trainer(b, spec, dtype, steps) for b in backends]
    runs: dict[str, Callable[[int], None]] = {}
    for t in trainers:
        runs[f"{t.backend}:train"] = t.train  # train(epochs): one call of the module's train()
        bare = t.native_epochs()
        if bare is not None:
            runs[f"{t.backend}:native"] = bare
    epochs = {}
    for key, run in runs.items():  # the untimed epoch sizes the rounds: about round_s of work each
        epochs[key] = int(min(200, max(1, cfg["round_s"] / (_timed(run, 1, steps) * steps))))
    timings = {key: Timing() for key in runs}
    for _ in range(cfg["rounds"]):
        for key, run in runs.items():
            timings[key].samples.append(_timed(run, epochs[key], steps))
    return [
        {"size": spec.size, "dtype": dtype, "backend": t.backend, "steps": steps, "batch": spec.batch,
         "train": timings[f"{t.backend}:train"], "native": timings.get(f"{t.backend}:native")}
        for t in trainers
    ]  # fmt: skip


def measure(sizes: list[str], dtypes: list[str], backends: list[str], quick: bool = False) -> list[dict]:
    cfg = QUICK if quick else FULL
    rows = []
    for size in sizes:
        spec = load_spec(size)
        for dtype in dtypes:
            rows += measure_one(spec, dtype, backends, cfg)
    return rows


def _us(t: Timing | None) -> str:
    if t is None:
        return "–"
    fmt = lambda s: f"{s * 1e6:.2f}" if s < 1e-5 else f"{s * 1e6:.1f}" if s < 1e-3 else f"{s * 1e6:.0f}"  # noqa: E731
    return f"{fmt(t.median)} ({fmt(t.low)}–{fmt(t.high)})"


def table(rows: list[dict]) -> str:
    lines = [
        "| size | dtype | backend | steps per epoch × batch | µs/step, train() "
        "| µs/step, native epoch call |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['dtype']} | {r['backend']} | {r['steps']} × {r['batch']} "
            f"| {_us(r['train'])} | {_us(r['native'])} |"
        )
    return "\n".join(lines)


def describe(quick: bool) -> str:
    cfg = QUICK if quick else FULL
    return (
        "Each module trains on `steps × batch` random examples (one-hot targets, shuffled per epoch). "
        f"{cfg['rounds']} samples per module, interleaved, each of as many whole epochs as take about "
        f"{cfg['round_s']} s (sized by an untimed epoch); median (min–max) over the samples of wall time / "
        "steps. train(): one call of the module's training loop for all the epochs of a sample (for LLVM "
        "one native call per epoch, plus drawing the permutation, keeping the parameters to restore on "
        "NaN and checking them, once per epoch). Native epoch call: that one call alone, with a fixed "
        "permutation: the time inside the native epoch."
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.epoch", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer calls, fewer steps for medium and large")
    ap.add_argument("--sizes", default=",".join(SIZES))
    ap.add_argument("--dtypes", default=",".join(DTYPES))
    ap.add_argument("--backends", default="llvm,numpy")
    args = ap.parse_args(argv)
    split = lambda text: [x for x in text.split(",") if x]  # noqa: E731
    rows = measure(split(args.sizes), split(args.dtypes), split(args.backends), args.quick)
    print(describe(args.quick) + "\n\n" + table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
