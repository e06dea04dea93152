"""Step time against batch size and depth, and memory across epochs, for both backends and dtypes.

    python -m benchmarks.scaling [--quick] [--out benchmarks/SCALING.md]

The network is a tanh MLP written out in code (``Mlp.text``): 64 inputs,
hidden layers of width 64, 10 classes, softmax cross-entropy. One training
step (``train_step``) is timed at batch sizes 1, 2, 4 ... 1024 with 2 hidden
layers, and at 1, 2, 4, 8, 16 hidden layers with batch 64. Step time should
grow smoothly: a doubling of the batch or the depth that multiplies the time
by more than ``CLIFF`` is reported as a cliff. Memory: the resident set size
and its peak (reset before training) after each of 20 epochs of ``train()``
on 8,192 examples; the peak should not grow after the first epoch.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.measure import OtherLoad, _reset_peak, _status_kib
from benchmarks.sections import machine_code_cache

BATCHES = tuple(2**i for i in range(11))  # 1 .. 1024
DEPTHS = (1, 2, 4, 8, 16)
BATCH_SWEEP_DEPTH, DEPTH_SWEEP_BATCH = 2, 64
CLIFF = 2.5  # a doubling that multiplies the step time by more than this is a cliff
FLAT_MIB = 1.0  # growth of the peak RSS from epoch 1 to the last that still counts as flat
FULL = {"samples": 7, "sample_s": 0.05, "examples": 8192, "batch": 128, "epochs": 20}
QUICK = {"samples": 3, "sample_s": 0.01, "examples": 8192, "batch": 128, "epochs": 20}
SERIES = [(b, d) for d in ("float32", "float64") for b in ("numpy", "llvm")]
DEFAULT_OUT = Path(__file__).parent / "SCALING.md"


@dataclass(frozen=True)
class Mlp:
    """The family of networks: ``depth`` tanh hidden layers of ``width``, softmax cross-entropy."""

    width: int = 64
    inputs: int = 64
    classes: int = 10

    def text(self, depth: int) -> str:
        """The model's dlc source."""
        dims = [self.inputs] + [self.width] * depth + [self.classes]
        lines = [f"model scaling_{depth}", f"input x : [{self.inputs}]", f"target y : [{self.classes}]"]
        for i in range(1, depth + 2):
            lines += [
                f"param W{i} : [{dims[i]}, {dims[i - 1]}] = glorot",
                f"param b{i} : [{dims[i]}] = zeros",
            ]
        h = "x"
        for i in range(1, depth + 1):
            lines.append(f"h{i} = tanh(W{i} @ {h} + b{i})")
            h = f"h{i}"
        lines += [f"logits = W{depth + 1} @ {h} + b{depth + 1}", "output softmax(logits)",
                  "loss softmax_cross_entropy(logits, y)"]  # fmt: skip
        return "\n".join(lines) + "\n"


class Stepper:
    """A compiled MLP with its parameters, optimizer state and ``most`` random examples."""

    def __init__(self, backend: str, dtype: str, net: Mlp, depth: int, most: int) -> None:
        from dlc.compiler import compile_model

        self.mod = compile_model(net.text(depth), backend=backend, dtype=dtype)
        self.params = self.mod.init_params(0)
        self.state = self.mod.init_state(self.params)
        rng = np.random.default_rng(1)
        self.X = rng.standard_normal((most, net.inputs)).astype(dtype)
        self.Y = np.eye(net.classes, dtype=dtype)[rng.integers(0, net.classes, size=most)]
        self.batches: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def step(self, batch: int) -> None:
        X, Y = self.batches.setdefault(batch, (self.X[:batch], self.Y[:batch]))
        self.mod.train_step(self.params, self.state, X, Y, lr=0.01, momentum=0.9, nesterov=False)

    def steps_per_sample(self, batch: int, cfg: dict) -> int:
        """How many steps take about ``cfg["sample_s"]``, after a warm-up step (JIT, scratch memory)."""
        self.step(batch)
        t0 = time.perf_counter()
        self.step(batch)
        return int(min(1000, max(1, cfg["sample_s"] / max(time.perf_counter() - t0, 1e-7))))

    def sample(self, batch: int, steps: int) -> float:
        """Seconds per step over ``steps`` steps."""
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step(batch)
        return (time.perf_counter() - t0) / steps


def interleaved(points: dict[int, tuple[Stepper, int]], cfg: dict) -> dict[int, float]:
    """{point: median seconds per step} for (stepper, batch) points sampled round-robin.

    Each round takes one sample of every point, so that a spell of load on the
    shared machine slows all points of a sweep alike instead of a few
    neighbours, which would look like a cliff.
    """
    steps = {x: stepper.steps_per_sample(batch, cfg) for x, (stepper, batch) in points.items()}
    samples: dict[int, list[float]] = {x: [] for x in points}
    for _ in range(cfg["samples"]):
        for x, (stepper, batch) in points.items():
            samples[x].append(stepper.sample(batch, steps[x]))
    return {x: float(np.median(v)) for x, v in samples.items()}


def batch_sweep(
    cfg: dict, net: Mlp, batches: tuple[int, ...], depth: int, series: list[tuple[str, str]]
) -> tuple[dict, dict]:
    """{(backend, dtype): {batch: seconds per step}}, and the other processes' load while each was timed."""
    out, loads = {}, {}
    for backend, dtype in series:
        stepper = Stepper(backend, dtype, net, depth, max(batches))
        load = OtherLoad()
        load.start()
        out[(backend, dtype)] = interleaved({b: (stepper, b) for b in batches}, cfg)
        loads[(backend, dtype)] = load.stop()
    return out, loads


def depth_sweep(
    cfg: dict, net: Mlp, depths: tuple[int, ...], batch: int, series: list[tuple[str, str]]
) -> tuple[dict, dict]:
    """{(backend, dtype): {depth: seconds per step}}, and the other processes' load while each was timed."""
    out, loads = {}, {}
    for backend, dtype in series:
        steppers = {d: Stepper(backend, dtype, net, d, batch) for d in depths}
        load = OtherLoad()
        load.start()
        out[(backend, dtype)] = interleaved({d: (s, batch) for d, s in steppers.items()}, cfg)
        loads[(backend, dtype)] = load.stop()
    return out, loads


def memory(backend: str, dtype: str, net: Mlp, cfg: dict, depth: int = BATCH_SWEEP_DEPTH) -> dict:
    """RSS and peak RSS (MiB) after each epoch of train(); the peak is reset just before training."""
    s = Stepper(backend, dtype, net, depth, cfg["examples"])
    s.mod.train(s.params, s.X[: cfg["batch"]], s.Y[: cfg["batch"]], epochs=1, batch_size=cfg["batch"])  # JIT
    rss: list[float] = []
    peak: list[float] = []

    def after_epoch(epoch: int, loss: float) -> None:
        rss.append(_status_kib("VmRSS") / 1024)
        peak.append(_status_kib("VmHWM") / 1024)

    resettable = _reset_peak()
    s.mod.train(s.params, s.X, s.Y, epochs=cfg["epochs"], batch_size=cfg["batch"], lr=0.01, momentum=0.9,
                state=s.state, callback=after_epoch)  # fmt: skip
    return {"backend": backend, "dtype": dtype, "rss": rss, "peak": peak, "resettable": resettable}


# --- report ----------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.4f}" if ms < 0.1 else f"{ms:.3f}" if ms < 10 else f"{ms:.1f}"


def growth(times: dict[int, float]) -> tuple[float, int, int]:
    """The largest factor between two neighbouring points, and where: (factor, from, to)."""
    keys = sorted(times)
    factors = [(times[b] / times[a], a, b) for a, b in itertools.pairwise(keys)]
    return max(factors, default=(1.0, keys[0], keys[0]))


def sweep_table(what: str, sweep: dict, loads: dict) -> str:
    """Rows: the swept values; columns: ms per step of each backend and dtype; then the cliff verdicts."""
    series = list(sweep)
    head = f"| {what} | " + " | ".join(f"{b} {d} (ms/step)" for b, d in series) + " |"
    lines = [head, "|" + "---|" * (len(series) + 1)]
    for x in next(iter(sweep.values())):
        lines.append(f"| {x} | " + " | ".join(_ms(sweep[s][x]) for s in series) + " |")
    lines.append("")
    for (backend, dtype), times in sweep.items():
        factor, a, b = growth(times)
        verdict = "a **cliff**" if factor > CLIFF else "smooth"
        other = loads.get((backend, dtype))
        busy = "" if other is None else f"; other processes used {other:.2f} cores meanwhile"
        lines.append(f"- {backend} {dtype}: largest growth {factor:.2f}× ({what} {a} → {b}): {verdict}{busy}")
    return "\n".join(lines)


def memory_table(results: list[dict]) -> str:
    lines = [
        "| backend | dtype | RSS after epoch 1 (MiB) | RSS after last epoch (MiB) | peak after epoch 1 (MiB) "
        "| peak after last epoch (MiB) | flat |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        flat = r["peak"][-1] - r["peak"][0] <= FLAT_MIB
        lines.append(
            f"| {r['backend']} | {r['dtype']} | {r['rss'][0]:.1f} | {r['rss'][-1]:.1f} | {r['peak'][0]:.1f} "
            f"| {r['peak'][-1]:.1f} | {'yes' if flat else '**no**'} |"
        )
    return "\n".join(lines)


def measure(cfg: dict, net: Mlp = Mlp(), batches: tuple[int, ...] = BATCHES, depths: tuple[int, ...] = DEPTHS,
            series: list[tuple[str, str]] = SERIES) -> dict:  # fmt: skip
    """Both sweeps and the memory of every series, a (backend, dtype) pair (see the module's docstring)."""
    by_batch, batch_loads = batch_sweep(cfg, net, batches, BATCH_SWEEP_DEPTH, series)
    by_depth, depth_loads = depth_sweep(cfg, net, depths, DEPTH_SWEEP_BATCH, series)
    return {
        "batch": by_batch,
        "depth": by_depth,
        "loads": {"batch": batch_loads, "depth": depth_loads},
        "memory": [memory(b, d, net, cfg) for b, d in series],
    }


def render(results: dict, cfg: dict, command: str, net: Mlp = Mlp()) -> str:
    from benchmarks.report import blas_info, cpu_model, machine

    when = dict(machine()).get("date", "")
    return "\n".join([
        "# dlc scaling benchmark", "", f"Written by `{command}`. Do not edit by hand.", "",
        f"{when}; {cpu_model()}, {os.cpu_count()} logical cores; BLAS: {blas_info()}.", "",
        f"A tanh MLP ({net.inputs} inputs, hidden layers of width {net.width}, {net.classes} classes, "
        "softmax cross-entropy), trained by `train_step` (SGD, momentum 0.9) on random data; the time "
        f"is the median of {cfg['samples']} samples of about {cfg['sample_s']} s each, taken round-robin "
        "over the points of a sweep (so that a spell of load slows them alike). A doubling that "
        f"multiplies the step time by more than {CLIFF} is called a cliff. Other processes busy on the "
        "CPUs (the load from /proc/stat, in cores, under each sweep) distort it: a BLAS that runs on "
        "several threads waits for its threads when the other cores are taken.", "",
        f"## Step time against batch size ({BATCH_SWEEP_DEPTH} hidden layers)", "",
        sweep_table("batch", results["batch"], results["loads"]["batch"]), "",
        f"## Step time against depth (batch {DEPTH_SWEEP_BATCH})", "",
        sweep_table("hidden layers", results["depth"], results["loads"]["depth"]), "",
        f"## Memory across {cfg['epochs']} epochs of train()", "",
        f"{cfg['examples']} examples, batch {cfg['batch']}, {BATCH_SWEEP_DEPTH} hidden layers; RSS and "
        "peak RSS (VmRSS, VmHWM from /proc/self/status) of the process after each epoch, the peak reset "
        "(/proc/self/clear_refs) just before training; one process measures all four, one after the "
        f"other. Flat: the peak grows by at most {FLAT_MIB:g} MiB from the first epoch to the last.", "",
        memory_table(results["memory"]), "",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer and shorter samples")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the Markdown report")
    args = ap.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    started = time.perf_counter()
    # One empty machine-code cache for the run: the LLVM module of 2 hidden layers is compiled once
    # per dtype, although the batch sweep, the depth sweep and the memory run each build it.
    with tempfile.TemporaryDirectory(prefix="dlc-scaling-cache-") as cache, machine_code_cache(cache):
        results = measure(cfg)
    command = "python -m benchmarks.scaling" + (" --quick" if args.quick else "")
    text = render(results, cfg, command) + f"\nThe whole run took {time.perf_counter() - started:.0f} s.\n"
    print(text)
    args.out.write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
