"""Sweeps: runs per second with 1 and 2 local workers, and what Ray adds per run.

    python -m benchmarks.sweep [--quick] [--repeats 3] [--cases small,spiral,...] [--no-ray]

Every measurement is one call of ``dlc.sweeps.sweep.run_sweep`` on a model
already read and checked (``read_model``), over a grid of ``--lrs`` learning
rates (``lr = 0.01, 0.02, 0.05, 0.1``) times ``--seeds`` seeds (12 runs by
default), timed from the call to the last run recorded in the sweep's folder:
the check of every configuration (which reads the data), the compile of the
module, the workers' start-up (Python, dlc, the data, the module and its
machine code) and every run. Each measurement has a fresh, empty ``--out``
folder and a fresh, empty machine-code cache (``DLC_CACHE_DIR``, a temporary
folder, set before anything is compiled): the cache is cold, so the timed
call includes making the LLVM module's machine code. The user's
``~/.cache/dlc`` is never used. Every worker, local or Ray's, trains with one
BLAS thread (the sweep sets it); the parent does not train. Before a model's
first measurement, one untimed sweep (one run of one epoch) pays what this
process does only once (importing scikit-learn for ``builtin:digits``, ...).

The models (``--cases``):

- ``small``: ``benchmarks/models/mlp_small.dlc`` (64-32-10, tanh, batch 64,
  SGD momentum 0.9), which names no data: it trains on ``builtin:digits``
  (8x8 digits, 1,797 examples, 64 values, 10 classes; scikit-learn's copy)
  for 300 epochs (its train block says none: 10 by default), LLVM backend;
- ``spiral``: ``examples/spiral.dlc`` as it is (``builtin:spiral``, 300
  epochs of batch 16), LLVM backend;
- ``small-numpy`` and ``spiral-numpy``: the same on the NumPy backend (the
  default backend of ``dlc sweep``, as of ``dlc train``).

Two blocks:

1. **Throughput**: the sweep with 1 local worker and with 2, interleaved
   (the order rotates from round to round), ``--repeats`` times each; the
   table gives medians: set-up (from the call until the runs start: grid,
   checks, compile), the first and the last run recorded, and runs per
   second. Goal: 2 workers at least 1.8x one worker's runs per second.
2. **Ray**: the same sweep as Ray tasks (``ray="local"``, Ray given 2 CPUs),
   against the 2 local workers of block 1, in the same rounds. Ray's
   start-up (``ray.init`` as the sweep calls it) is a fixed cost, timed on
   its own in the same rounds; the overhead per run is (Ray sweep - Ray
   start-up - 2 local workers) / runs. Then the same with a Ray instance
   started once in this process (``ray.init(num_cpus=2)`` before the calls:
   the sweep uses that connection), as a notebook would: (Ray sweep - 2 local
   workers) / runs. Goal: at most 0.2 s per run. The time to the last run
   recorded leaves out Ray's shutdown.

Before each measurement the benchmark waits (up to ``--wait`` seconds) for
the machine to be quiet. Other processes' load while a measurement ran is the
machine's busy CPU time (``/proc/stat``) minus this process's and its
descendants' (the workers, Ray's processes: sampled from ``/proc`` every
0.1 s, which costs about 2% of a core, and counts a process that ends
between two samples short of at most 0.1 s of CPU time), over the wall
time; a measurement during which it was above a third of a core is marked
``*`` and left out of the median where quiet ones exist (a row with only
disturbed ones says "disturbed": rerun when the machine is quiet).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import logging
import os
import resource
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks.measure import OtherLoad

ROOT = Path(__file__).resolve().parent.parent
BUSY = 1 / 3  # cores of other load that flag a measurement
SPEEDUP_GOAL = 1.8  # 2 local workers against 1
RAY_GOAL_S = 0.2  # Ray's overhead per run over local workers
RAY_CPUS = 2
LRS = (0.01, 0.02, 0.05, 0.1)


@dataclass(frozen=True)
class Case:
    name: str
    model: Path
    backend: str
    data: str | None = None  # None: the model's own
    epochs: int | None = None  # None: the model's own


CASES = {
    "small": Case("small", ROOT / "benchmarks" / "models" / "mlp_small.dlc", "llvm", "builtin:digits", 300),
    "spiral": Case("spiral", ROOT / "examples" / "spiral.dlc", "llvm"),
    "spiral-numpy": Case("spiral-numpy", ROOT / "examples" / "spiral.dlc", "numpy"),
    "small-numpy": Case(
        "small-numpy", ROOT / "benchmarks" / "models" / "mlp_small.dlc", "numpy", "builtin:digits", 300
    ),
}
FULL = {"repeats": 3, "lrs": 4, "seeds": 3, "cases": ("small", "spiral", "small-numpy", "spiral-numpy"),
        "ray_cases": ("small", "spiral")}  # fmt: skip
QUICK = {"repeats": 1, "lrs": 4, "seeds": 1, "cases": ("small", "spiral"), "ray_cases": ("spiral",)}

LOCAL_1, LOCAL_2, RAY_INIT = "1 worker", "2 workers", "Ray start-up (ray.init)"
RAY, RAY_ONCE = "Ray, started by the sweep", "Ray, started once"


# --- other load -----------------------------------------------------------------------------------


class TreeLoad(OtherLoad):
    """:class:`OtherLoad`, with this process's descendants (workers, Ray's processes) counted as its own.

    They are not all its children (Ray's workers are the raylet's), so their
    CPU time is sampled from ``/proc`` by a thread, every ``every`` seconds,
    and kept after they end (at its last sample).
    """

    def __init__(self, every: float = 0.1) -> None:
        self.every = every
        self.seen: dict[tuple[int, int], float] = {}  # (pid, start time): CPU seconds at the last sample
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _sample(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        parent: dict[int, int] = {}
        cpu: dict[int, tuple[int, float]] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    text = f.read()
            except OSError:
                continue
            fields = text[text.rindex(")") + 2 :].split()  # from field 3 (state) on
            pid = int(entry.name)
            parent[pid] = int(fields[1])
            cpu[pid] = (int(fields[19]), (int(fields[11]) + int(fields[12])) / tick)
        known = {pid for pid, _ in self.seen} | {os.getpid()}
        ours = {pid for pid in cpu if pid != os.getpid() and self._descends(pid, parent, known)}
        for pid in ours:
            start, seconds = cpu[pid]
            self.seen[(pid, start)] = seconds

    @staticmethod
    def _descends(pid: int, parent: dict[int, int], known: set[int]) -> bool:
        """Whether ``pid`` is a known process or one of their descendants (an orphan stays ours)."""
        for _ in range(64):
            if pid in known:
                return True
            pid = parent.get(pid, 0)
            if pid <= 1:
                return False
        return False

    def _watch(self) -> None:
        while not self.halt.wait(self.every):
            self._sample()

    def _self_s(self) -> float:  # type: ignore[override]
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime + sum(self.seen.values())

    def start(self) -> None:
        watch = os.path.isdir("/proc")
        if watch:
            self._sample()
        super().start()  # before the thread changes ``seen``
        if watch:
            self.thread.start()

    def stop(self) -> float | None:
        if self.thread.is_alive():
            self.halt.set()
            self.thread.join()
            self._sample()
        return super().stop()


def settle(wait: float) -> None:
    """Wait, up to ``wait`` seconds, until other processes keep less than BUSY cores busy (0.5 s spells)."""
    end = time.perf_counter() + wait
    while time.perf_counter() < end:
        load = TreeLoad()
        load.start()
        time.sleep(0.5)
        other = load.stop()
        if other is None or other <= BUSY:
            return


# --- one measurement ------------------------------------------------------------------------------


@dataclass
class Sample:
    setup: float  # seconds from the call until the runs start (grid, checks, compile)
    first: float  # ... until the first run is recorded
    last: float  # ... until the last run is recorded
    other: float | None  # other processes' load meanwhile, in cores
    runs: int
    trained: int  # runs that trained to the end ("ok")

    @property
    def quiet(self) -> bool:
        return self.other is None or self.other <= BUSY


class Clock:
    """A sweep observer that notes when the runs start and when each is recorded."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.began = self.first = self.last = float("nan")

    def begin(self, total: int, earlier: int, executor: str) -> None:
        self.began = time.perf_counter() - self.t0

    def started(self, job: Any, attempt: int, pid: int) -> None:
        pass

    def finished(self, record: dict[str, Any], done: int, total: int) -> None:
        self.last = time.perf_counter() - self.t0
        if done == 1:
            self.first = self.last


@contextlib.contextmanager
def fresh_cache() -> Iterator[Path]:
    """A fresh temporary folder; DLC_CACHE_DIR is an empty folder in it meanwhile."""
    before = os.environ.get("DLC_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="dlc-bench-sweep-") as tmp:
        os.environ["DLC_CACHE_DIR"] = str(Path(tmp) / "cache")
        try:
            yield Path(tmp)
        finally:
            if before is None:
                del os.environ["DLC_CACHE_DIR"]
            else:
                os.environ["DLC_CACHE_DIR"] = before


@contextlib.contextmanager
def ray_cpus(cpus: int) -> Iterator[None]:
    """``ray.init`` called with ``num_cpus=cpus`` meanwhile (the sweep's ``ray="local"`` gives none)."""
    import ray

    init = ray.init
    ray.init = functools.partial(init, num_cpus=cpus)
    try:
        yield
    finally:
        ray.init = init


def warm(model: Any, case: Case) -> None:
    """One untimed sweep of one run of one epoch: what this process does once (importing scikit-learn to
    read builtin:digits, ...) falls on no measurement."""
    from dlc.sweeps.sweep import SweepOptions, run_sweep

    with fresh_cache() as tmp:
        options = SweepOptions(sets=(f"lr = {LRS[0]}",), data=case.data, epochs=1, backend=case.backend,
                               workers=1, out=tmp / "sweep")  # fmt: skip
        run_sweep(model, options)


def run_once(model: Any, case: Case, grid: tuple[int, int], executor: str, wait: float) -> Sample:
    """One sweep of ``case`` (``grid``: learning rates, seeds) with ``executor``, timed (see above)."""
    from dlc.sweeps.sweep import SweepOptions, run_sweep

    lrs, seeds = grid
    settle(wait)
    with fresh_cache() as tmp:
        workers = {LOCAL_1: 1, LOCAL_2: 2}.get(executor)
        options = SweepOptions(
            sets=(f"lr = {', '.join(map(str, LRS[:lrs]))}",), seeds=seeds, data=case.data, epochs=case.epochs,
            backend=case.backend, workers=workers, ray=None if workers else "local", out=tmp / "sweep",
        )  # fmt: skip
        load = TreeLoad()
        with ray_cpus(RAY_CPUS) if executor == RAY else contextlib.nullcontext():
            load.start()
            clock = Clock()
            outcome = run_sweep(model, options, clock)
            other = load.stop()
    trained = sum(r["status"] == "ok" for r in outcome.records)
    return Sample(clock.began, clock.first, clock.last, other, outcome.total, trained)


def ray_init_once(wait: float) -> Sample:
    """Ray's start-up as the sweep calls it (``ray.init`` of a private instance); then it shuts down."""
    import ray

    from dlc.sweeps.local import ONE_THREAD

    settle(wait)
    with fresh_cache():
        env = {**ONE_THREAD, "DLC_CACHE_DIR": os.environ["DLC_CACHE_DIR"]}
        load = TreeLoad()
        load.start()
        t0 = time.perf_counter()
        ray.init(num_cpus=RAY_CPUS, runtime_env={"env_vars": env}, logging_level=logging.ERROR,
                 log_to_driver=False)  # fmt: skip
        seconds = time.perf_counter() - t0
        other = load.stop()
        ray.shutdown()
    return Sample(seconds, seconds, seconds, other, 0, 0)


# --- the blocks -----------------------------------------------------------------------------------


@dataclass
class Row:
    case: Case
    executor: str
    samples: list[Sample] = field(default_factory=list)

    def kept(self) -> list[Sample]:
        """The quiet samples, or all of them if none is."""
        return [s for s in self.samples if s.quiet] or self.samples

    @property
    def disturbed(self) -> bool:
        return bool(self.samples) and not any(s.quiet for s in self.samples)

    def median(self, what: str = "last") -> float:
        return statistics.median(getattr(s, what) for s in self.kept())


def have_ray() -> bool:
    return importlib.util.find_spec("ray") is not None


def measure(cases: list[Case], ray_cases: list[str], grid: tuple[int, int], repeats: int,
            wait: float) -> dict[tuple[str, str], Row]:  # fmt: skip
    """Every row: (case name, executor) -> its samples; a case's executors interleaved, round by round.

    ``ray_cases``: the names of the cases also swept on Ray.
    """
    from dlc.compiler import read_model

    rows: dict[tuple[str, str], Row] = {}
    for case in cases:
        model = read_model(case.model)
        warm(model, case)
        executors = [LOCAL_1, LOCAL_2] + ([RAY_INIT, RAY] if case.name in ray_cases else [])
        for e in executors:
            rows[(case.name, e)] = Row(case, e)
        for r in range(repeats):
            for e in executors[r % len(executors) :] + executors[: r % len(executors)]:
                sample = ray_init_once(wait) if e == RAY_INIT else run_once(model, case, grid, e, wait)
                rows[(case.name, e)].samples.append(sample)
    on_ray = [c for c in cases if c.name in ray_cases]
    if on_ray:  # one Ray instance for all: started here, the sweeps use its connection
        import ray

        ray.init(num_cpus=RAY_CPUS, logging_level=logging.ERROR, log_to_driver=False)
        try:
            for case in on_ray:
                model = read_model(case.model)
                row = rows[(case.name, RAY_ONCE)] = Row(case, RAY_ONCE)
                for _ in range(repeats):
                    row.samples.append(run_once(model, case, grid, RAY_ONCE, wait))
        finally:
            ray.shutdown()
    return rows


def _s(row: Row, what: str = "last") -> str:
    text = f"{row.median(what):.2f}"
    return f"{text} (disturbed)" if row.disturbed else text


def _marks(row: Row) -> str:
    """Each sample's time to the last run, ``*`` and the other load (cores) where it disturbed the sample."""
    return ", ".join(f"{s.last:.2f}" + ("" if s.quiet else f"* ({s.other:.2f})") for s in row.samples)


def _verdict(ok: bool, disturbed: bool) -> str:
    return ("met" if ok else "**not met**") + (" (disturbed: rerun when quiet)" if disturbed else "")


def _label(case: Case) -> str:
    return f"{case.name} | {case.backend}"


def throughput_table(rows: dict[tuple[str, str], Row], cases: list[str]) -> tuple[str, list[str]]:
    """The block 1 tables, and its goal lines."""
    lines = [
        "| model | backend | executor | runs | set-up (s) | first run (s) | last run (s) | runs/s | "
        "runs trained | each sample: last run (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in cases:
        for e in (LOCAL_1, LOCAL_2):
            row = rows[(name, e)]
            runs, trained = row.samples[0].runs, min(s.trained for s in row.samples)
            times = f"{_s(row, 'setup')} | {_s(row, 'first')} | {_s(row)}"
            lines.append(
                f"| {_label(row.case)} | {e} | {runs} | {times} | {runs / row.median():.2f} | "
                f"{trained} of {runs} | {_marks(row)} |"
            )
    lines += ["", "| model | backend | 1 worker (s) | 2 workers (s) | 2 workers' runs/s over 1 worker's |",
              "|---|---|---|---|---|"]  # fmt: skip
    goals = []
    for name in cases:
        one, two = rows[(name, LOCAL_1)], rows[(name, LOCAL_2)]
        ratio = one.median() / two.median()
        lines.append(f"| {_label(one.case)} | {_s(one)} | {_s(two)} | {ratio:.2f}× |")
        verdict = _verdict(ratio >= SPEEDUP_GOAL, one.disturbed or two.disturbed)
        goals.append(
            f"- Goal: 2 local workers ≥ {SPEEDUP_GOAL:g}× one worker's runs per second, {name} "
            f"({one.case.backend}): {ratio:.2f}×: {verdict}"
        )
    return "\n".join(lines), goals


def ray_table(rows: dict[tuple[str, str], Row], ray_cases: list[str]) -> tuple[str, list[str]]:
    """The block 2 table, and its goal lines."""
    lines = [
        "| model | backend | executor | median (s) | overhead per run (s) | each sample (s) |",
        "|---|---|---|---|---|---|",
    ]
    goals = []
    for name in ray_cases:
        local, init = rows[(name, LOCAL_2)], rows[(name, RAY_INIT)]
        runs = local.samples[0].runs
        lines.append(f"| {_label(local.case)} | {LOCAL_2} | {_s(local)} | – | {_marks(local)} |")
        lines.append(f"| {_label(local.case)} | {RAY_INIT} | {_s(init)} | – | {_marks(init)} |")
        for e, fixed in ((RAY, init.median()), (RAY_ONCE, 0.0)):
            row = rows[(name, e)]
            per_run = (row.median() - fixed - local.median()) / runs
            lines.append(f"| {_label(row.case)} | {e} | {_s(row)} | {per_run:.3f} | {_marks(row)} |")
            disturbed = row.disturbed or local.disturbed or (e == RAY and init.disturbed)
            goals.append(
                f"- Goal: Ray's overhead ≤ {RAY_GOAL_S:g} s per run, {name} ({row.case.backend}), {e}: "
                f"{per_run:.3f} s: "
                f"{_verdict(per_run <= RAY_GOAL_S, disturbed)}"
            )
    lines.append(
        "\nOverhead per run: (Ray started by the sweep - Ray's start-up - 2 workers) / runs, and "
        "(Ray started once - 2 workers) / runs "
        "(medians; from the call to the last run recorded, so Ray's shutdown is not counted)."
    )
    return "\n".join(lines), goals


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def report(
    rows: dict[tuple[str, str], Row], names: list[str], ray_cases: list[str], ray_note: str = ""
) -> str:
    """Both blocks' tables and goal lines (``names``: the cases measured, in order; ``ray_note``: why
    there is no Ray block, if there is none)."""
    table, goals = throughput_table(rows, names)
    parts = [
        "### Throughput: 1 and 2 local workers, from the call to the last run recorded",
        table,
        "\n".join(goals),
    ]
    parts.append("### Ray against 2 local workers")
    if ray_cases:
        table, goals = ray_table(rows, ray_cases)
        parts += [table, "\n".join(goals)]
    else:
        parts.append(f"Not measured: {ray_note}.")
    parts.append(
        "`*`: a measurement during which other processes kept more than a third of a core busy (in "
        "brackets: how many cores, on average); it is left out of the median if the row has quiet ones."
    )
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.sweep", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 repeat, 4 runs, LLVM only, Ray for spiral only")
    ap.add_argument("--repeats", type=int, help="measurements of each executor (3; --quick: 1)")
    ap.add_argument("--lrs", type=int, choices=range(1, len(LRS) + 1), help="learning rates in the grid (4)")
    ap.add_argument("--seeds", type=int, help="seeds per learning rate (3; --quick: 1)")
    ap.add_argument("--cases", help=f"comma-separated, of {', '.join(CASES)}")
    ap.add_argument("--ray-cases", help="the cases also swept on Ray (small,spiral; --quick: spiral)")
    ap.add_argument("--no-ray", action="store_true", help="local workers only")
    ap.add_argument("--epochs", type=int, help="every case trains this many epochs instead of its own")
    ap.add_argument("--wait", type=float, default=60.0, help="seconds to wait for a quiet machine (60)")
    args = ap.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    repeats = args.repeats or cfg["repeats"]
    grid = (args.lrs or cfg["lrs"], args.seeds or cfg["seeds"])
    names = args.cases.split(",") if args.cases else list(cfg["cases"])
    ray_cases = args.ray_cases.split(",") if args.ray_cases else list(cfg["ray_cases"])
    for name in {*names, *ray_cases} - set(CASES):
        ap.error(f"no case {name!r}: {', '.join(CASES)}")
    ray_cases = [] if args.no_ray or not have_ray() else [c for c in names if c in ray_cases]
    ray_note = "no case on Ray"
    if args.no_ray or not have_ray():
        ray_note = "--no-ray" if args.no_ray else "Ray is not installed (pip install ray)"
    cases = [CASES[n] if args.epochs is None else replace(CASES[n], epochs=args.epochs) for n in names]
    with fresh_cache():  # nothing compiled here reaches the user's cache, even between measurements
        from dlc.sweeps.sweep import cores

        before = _load()
        rows = measure(cases, ray_cases, grid, repeats, args.wait)
        after = _load()
    runs = grid[0] * grid[1]
    print(f"{runs} runs a sweep ({grid[0]} learning rates × {grid[1]} seeds), {repeats} measurement(s) "
          f"of each executor, interleaved; {cores()} cores; each worker (local, or a Ray task) with 1 BLAS "
          f"thread; Ray with {RAY_CPUS} CPUs. Cold machine-code cache, fresh --out folder, every time. "
          f"Machine before: {before}; after: {after}.\n")  # fmt: skip
    print(report(rows, names, ray_cases, ray_note))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
