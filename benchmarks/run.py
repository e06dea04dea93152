"""Training-step time of dlc's NumPy and LLVM modules side by side with their peers.

    python -m benchmarks.run [--quick] [--sizes tiny,small] [--peers dlc,llvm,numpy,...] [--out PATH]

For every size (benchmarks/models/mlp_<size>.dlc) and dtype: cross-check all
implementations against dlc's NumPy module, measure the time to the first
step and the memory in a fresh process per implementation (skipped with
--quick), then time training steps round-robin. Then the time per step
inside a whole epoch of ``train()`` (benchmarks/epoch.py), the time from
model file to first trained step for every example (benchmarks/firststep.py),
and the LLVM backend's goals judged from it all. Prints a Markdown report
and writes it to benchmarks/RESULTS.md (or --out).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.measure import (
    OtherLoad,
    available_peers,
    cross_check,
    first_step_in_process,
    run_probe,
    time_steps,
)
from benchmarks.peers import PEERS, Dlc, Peer
from benchmarks.report import c_tol, render, step_settings
from benchmarks.sections import extra_sections, machine_code_cache
from benchmarks.spec import DTYPES, SIZES, Spec, load_spec, reference_module, start_state

Array = np.ndarray

DEFAULT_OUT = Path(__file__).parent / "RESULTS.md"
# attempts: a block that other processes disturbed (OtherLoad) is timed again, up to this many times;
# quiet_wait_s: before each timed block, wait up to this long for the other processes to go quiet.
FULL = {
    "rounds": 15,
    "round_s": 0.08,
    "max_steps": 100,
    "min_steps": 3,
    "probe": True,
    "attempts": 3,
    "quiet_wait_s": 30,
}
QUICK = {
    "rounds": 4,
    "round_s": 0.02,
    "max_steps": 50,
    "min_steps": 2,
    "probe": False,
    "attempts": 1,
    "quiet_wait_s": 0,
}
PROBE_STEPS = 5
OTHER_LOAD_WARN = 0.1  # cores
RETRY_PAUSE_S = 5
RETRY_BUDGET_S = 360  # no retries after this many seconds of a run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds, no fresh-process probes (~1 minute)")
    ap.add_argument("--sizes", default=",".join(SIZES), help=f"comma-separated, from {','.join(SIZES)}")
    ap.add_argument("--dtypes", default=",".join(DTYPES), help="comma-separated: float32,float64")
    ap.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated, from {','.join(PEERS)}")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the Markdown report")
    ap.add_argument("--steps-only", action="store_true", help="skip the epoch, first-step and goals sections")
    args = ap.parse_args(argv)
    args.sizes = [s for s in args.sizes.split(",") if s]
    args.dtypes = [d for d in args.dtypes.split(",") if d]
    args.peers = [p for p in args.peers.split(",") if p]
    for name, given, allowed in (("size", args.sizes, SIZES), ("dtype", args.dtypes, DTYPES),
                                 ("peer", args.peers, tuple(PEERS))):  # fmt: skip
        bad = [g for g in given if g not in allowed]
        if bad:
            ap.error(f"unknown {name} {', '.join(bad)}; choose from {', '.join(allowed)}")
    if "dlc" not in args.peers:
        args.peers.insert(0, "dlc")  # the reference every other implementation is checked against
    return args


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def probe_all(
    spec: Spec, dtype: str, peer_classes: list[type[Peer]], params: dict, X: Array, Y: Array, notes: list[str]
) -> dict[str, dict]:
    """Time to first step and memory of every peer, each in a fresh process."""
    mem: dict[str, dict] = {}
    for cls in peer_classes:
        log(f"  {spec.size} {dtype}: fresh-process probe of {cls.label}")
        result = run_probe(cls.key, spec, dtype, params, X, Y, steps=PROBE_STEPS)
        if "error" in result:
            notes.append(f"probe of {cls.label} ({spec.size}, {dtype}) failed: {result['error']}")
        elif not result.get("resettable", True):
            notes.append("peak RSS could not be reset (/proc/self/clear_refs): memory is process peak")
        mem[cls.key] = result
    return mem


def steps_per_round(peers: list[Peer], cfg: dict) -> int:
    """Warm every peer up; dlc's step time sets how many steps a round times."""
    for p in peers:
        p.step()
    dlc = next(p for p in peers if p.key == "dlc")
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        dlc.step()
        ts.append(time.perf_counter() - t0)
    return int(min(cfg["max_steps"], max(cfg["min_steps"], cfg["round_s"] / min(ts))))


def wait_for_quiet(max_wait_s: float, what: str) -> None:
    """Wait (up to max_wait_s) until other processes leave the CPUs alone for a second."""
    deadline = time.monotonic() + max_wait_s
    waited = False
    while time.monotonic() < deadline:
        load = OtherLoad()
        load.start()
        time.sleep(1.0)
        other = load.stop()
        if other is None or other <= OTHER_LOAD_WARN:
            break
        if not waited:
            log(f"  {what}: waiting for other processes to leave the CPUs ({other:.2f} cores busy)")
            waited = True


def timed_quietly(
    peers: list[Peer], params: dict, X: Array, Y: Array, cfg: dict, steps: int, what: str
) -> tuple[dict, float | None, int]:
    """time_steps, repeated (up to cfg["attempts"]) while other processes disturb it.

    Returns the least disturbed timings, the other processes' load then, and the number of attempts.
    """
    best: tuple[dict, float | None] | None = None
    for attempt in range(1, cfg["attempts"] + 1):
        wait_for_quiet(min(cfg["quiet_wait_s"], cfg.get("retry_until", 0) - time.monotonic()), what)
        load = OtherLoad()
        load.start()
        timings = time_steps(peers, params, X, Y, cfg["rounds"], steps)
        other = load.stop()
        if best is None or (other is not None and best[1] is not None and other < best[1]):
            best = (timings, other)
        if other is None or other <= OTHER_LOAD_WARN:
            break
        log(f"  {what}: other processes used {other:.2f} cores meanwhile (attempt {attempt})")
        if time.monotonic() + RETRY_PAUSE_S > cfg.get("retry_until", 0):
            break  # keep a full run within its time budget
        if attempt < cfg["attempts"]:
            time.sleep(RETRY_PAUSE_S)
    assert best is not None
    return best[0], best[1], attempt


def bench_one(
    spec: Spec, dtype: str, peer_classes: list[type[Peer]], cfg: dict, rows: list[dict], notes: list[str]
) -> None:
    """Probe (fresh processes), then time round-robin; appends one row per implementation."""
    params, X, Y = start_state(spec, dtype)
    mem = probe_all(spec, dtype, peer_classes, params, X, Y, notes) if cfg["probe"] else {}
    peers = [cls(spec, dtype) for cls in peer_classes]
    with machine_code_cache(""):  # the LLVM module's first step is a cold JIT compile
        first = {p.key: first_step_in_process(p, params, X, Y) for p in peers}
    steps = steps_per_round(peers, cfg)
    log(f"  {spec.size} {dtype}: timing {len(peers)} implementations, {cfg['rounds']} rounds × {steps} steps")
    timings, other, attempts = timed_quietly(peers, params, X, Y, cfg, steps, f"{spec.size} {dtype}")
    if other is not None and other > OTHER_LOAD_WARN:
        notes.append(
            f"**{spec.size} {dtype} is disturbed**: other processes used {other:.2f} cores on average "
            f"while it was timed (the least disturbed of {attempts} attempts); rerun on a quiet machine"
        )
    for p in peers:
        probe = mem.get(p.key, {})
        rows.append({
            "size": spec.size, "dtype": dtype, "peer": p.key, "label": p.label, "timing": timings[p.label],
            "first_step_s": probe.get("first_step_s", first[p.key]) if cfg["probe"] else first[p.key],
            "mem": probe or None, "other_load": other, "steps": steps,
        })  # fmt: skip


def check_and_time(args: argparse.Namespace, cfg: dict, peer_classes: list[type[Peer]],
                   notes: list[str]) -> tuple[dict, dict, list[dict]]:  # fmt: skip
    """Cross-check every size in both dtypes, then time it in the asked dtypes: (specs, checks, rows)."""
    specs, checks, rows = {}, {}, []
    for size in args.sizes:
        spec = specs[size] = load_spec(size, reference_module(size, "float64"))
        usable = list(peer_classes)
        for dtype in DTYPES:  # both dtypes are checked, whatever --dtypes times
            log(f"{size} ({spec.describe()}): cross-check in {dtype}")
            results = checks[(size, dtype)] = cross_check(spec, peer_classes, dtype)
            for c in results:
                if not (c.dtype_ok and c.error <= c_tol(dtype)):
                    bad = next(cls for cls in peer_classes if cls.label == c.peer)
                    if bad in usable and bad is not Dlc:
                        usable.remove(bad)
                    notes.append(f"{c.peer} failed the {dtype} cross-check at {size} ({c.error:.1e} "
                                 f"{c.note}); not timed")  # fmt: skip
        for dtype in args.dtypes:
            bench_one(spec, dtype, usable, cfg, rows, notes)
    return specs, checks, rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    started = time.perf_counter()
    cfg["retry_until"] = time.monotonic() + RETRY_BUDGET_S
    peer_classes, skipped = available_peers(args.peers)
    for label, why in skipped.items():
        log(f"skipping {label}: {why}")
    notes: list[str] = []
    # The LLVM modules compiled here share one empty machine-code cache, so that each model is
    # JIT-compiled once per dtype, not once per use; the timed first steps switch it off.
    with tempfile.TemporaryDirectory(prefix="dlc-bench-cache-") as cache, machine_code_cache(cache):
        specs, checks, rows = check_and_time(args, cfg, peer_classes, notes)
        log(f"step tables: {time.perf_counter() - started:.0f} s")
        sections = []
        if not args.steps_only:
            timed = list(dict.fromkeys(r["peer"] for r in rows))
            sections = extra_sections(args.sizes, args.dtypes, timed, args.quick, rows, OTHER_LOAD_WARN)
    settings = step_settings(cfg, rows, probe_steps=PROBE_STEPS, load_warn=OTHER_LOAD_WARN,
                             retry_budget_s=RETRY_BUDGET_S)  # fmt: skip
    command = "python -m benchmarks.run" + (
        " " + " ".join(sys.argv[1:]) if argv is None and sys.argv[1:] else ""
    )
    notes.append(f"the whole run took {time.perf_counter() - started:.0f} s")
    text = render(command=command, specs=specs, rows=rows, checks=checks, skipped=skipped,
                  settings=settings, notes=list(dict.fromkeys(notes)), sections=sections)  # fmt: skip
    print(text)
    args.out.write_text(text)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
