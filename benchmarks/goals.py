"""The LLVM backend's performance goals, each judged from the medians a run measured.

Speed goals are stated against the peers: the libraries PyTorch, JAX and
PyTensor (dlc's NumPy module and the hand-written NumPy step are in the
tables, but are not peers). "Best peer" is the fastest of those present;
a peer that is not installed or failed its cross-check cannot be judged
against, and the goal says so.
"""

from __future__ import annotations

PEERS = {"torch": "PyTorch", "jax": "JAX jit", "pytensor": "PyTensor"}
# (size, what the LLVM step must beat, by at least this factor); "best" is the fastest peer present.
STEP_GOALS = [
    ("tiny", "pytensor", 7.0),
    ("tiny", "jax", 20.0),
    ("tiny", "torch", 100.0),
    ("small", "best", 5.0),
    ("medium", "best", 1.0),
    ("large", "best", 1.0),
]


def _verdict(ok: bool, disturbed: float | None = None) -> str:
    text = "met" if ok else "**not met**"
    return text + (f" (disturbed: other load {disturbed:.2f} cores)" if disturbed else "")


def step_goals(rows: list[dict], dtypes: list[str], load_warn: float) -> list[tuple[str, str, str, str]]:
    """(goal, dtype, measured, verdict) for each step-time goal of the sizes in benchmarks.run's rows."""
    median = {(r["size"], r["dtype"], r["peer"]): r["timing"].median for r in rows}
    load = {(r["size"], r["dtype"]): r["other_load"] for r in rows}
    out = []
    sizes = {r["size"] for r in rows}
    for size, against, factor in STEP_GOALS:
        if size not in sizes:
            continue  # not run (--sizes)
        for dtype in dtypes:
            present = {k: median[(size, dtype, k)] for k in PEERS if (size, dtype, k) in median}
            other = load.get((size, dtype))
            disturbed = other if other is not None and other > load_warn else None
            out.append(_step_goal(size, against, factor, dtype, median.get((size, dtype, "llvm")), present,
                                  disturbed))  # fmt: skip
    return out


def _step_goal(size: str, against: str, factor: float, dtype: str, llvm: float | None,
               present: dict[str, float], disturbed: float | None) -> tuple[str, str, str, str]:  # fmt: skip
    key: str | None = against
    if against == "best":
        than = f"≥ {factor:g}× faster than" if factor > 1 else "no slower than"
        goal = f"{size}: LLVM step {than} the best peer"
        key = min(present, key=present.__getitem__, default=None)
    else:
        goal = f"{size}: LLVM step ≥ {factor:g}× faster than {PEERS[against]}"
    if llvm is None or key is None or key not in present:
        why = "LLVM not timed" if llvm is None else f"{PEERS[key]} not timed" if key else "no peer timed"
        return goal, dtype, "–", f"not measured ({why})"
    speedup = present[key] / llvm
    measured = f"{speedup:.2f}× ({PEERS[key]} {present[key] * 1e3:.3f} ms, LLVM {llvm * 1e3:.3f} ms)"
    return goal, dtype, measured, _verdict(speedup >= factor, disturbed)


def epoch_goals(rows: list[dict], goal_us: float) -> list[tuple[str, str, str, str]]:
    """Tiny: at most ``goal_us`` per step inside the native epoch (the bare call, else train())."""
    out = []
    for r in rows:
        if r["size"] != "tiny" or r["backend"] != "llvm":
            continue
        native = r["native"] is not None
        timing, how = (r["native"], "native epoch call") if native else (r["train"], "train()")
        us = timing.median * 1e6
        out.append((f"tiny: ≤ {goal_us:g} µs per step inside the native epoch", r["dtype"],
                    f"{us:.2f} µs ({how})", _verdict(us <= goal_us)))  # fmt: skip
    return out


def first_step_goals(rows: list[dict], goal_s: float) -> list[tuple[str, str, str, str]]:
    """Every model: file to first trained step (cold cache, after start-up) under ``goal_s``, per backend."""
    out = []
    for backend in dict.fromkeys(r["backend"] for r in rows):
        mine = [r for r in rows if r["backend"] == backend]
        goal = f"every model: file → first trained step < {goal_s:g} s ({backend}, cold)"
        failed = [r["model"] for r in mine if "error" in r]
        if failed:
            out.append((goal, mine[0]["dtype"], "–", f"not measured ({len(failed)} failed)"))
            continue
        worst = max(mine, key=lambda r: sum(r["cold"]))
        slowest = sum(worst["cold"])
        over = sum(sum(r["cold"]) >= goal_s for r in mine)
        measured = f"slowest {slowest:.3f} s (`{worst['model']}`); {over} of {len(mine)} over"
        out.append((goal, mine[0]["dtype"], measured, _verdict(slowest < goal_s)))
    return out


def table(goals: list[tuple[str, str, str, str]]) -> str:
    lines = ["| goal | dtype | measured | verdict |", "|---|---|---|---|"]
    lines += [f"| {g} | {d} | {m} | {v} |" for g, d, m, v in goals]
    return "\n".join(lines)
