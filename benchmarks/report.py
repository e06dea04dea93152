"""The machine description and the Markdown report."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

from benchmarks.measure import CHECK_RTOL, CheckResult, Timing

FIRST_STEP_MEANING = {
    "dlc": "model file → first step: parse, check, differentiate, generate, import, first step",
    "llvm": "model file → first step: the same, with LLVM IR, which the first step JIT-compiles (cache off)",
    "numpy": "first step (nothing to compile)",
    "torch": "first step (eager: nothing to compile)",
    "jax": "jax.jit trace + XLA compile + first step",
    "pytensor": "graph + pytensor.grad + pytensor.function (rewrites, Numba compile) + first step",
}


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info

        return (
            "; ".join(
                f"{i.get('internal_api')} {i.get('version') or ''} ({i.get('num_threads')} threads, "
                f"{Path(i.get('filepath', '?')).parent.name}/{i.get('prefix')})"
                for i in threadpool_info()
            )
            + " (threadpoolctl: every BLAS/OpenMP runtime loaded by the peers)"
        )
    except ImportError:
        pass
    import numpy as np

    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        text = f"{blas.get('name')} {blas.get('version')}"
        if blas.get("openblas configuration"):
            text += f" ({blas['openblas configuration'].strip()})"
        return text + " (numpy.show_config; threadpoolctl not installed)"
    except Exception as exc:  # the layout of show_config's dict changes between versions
        return f"unknown ({exc})"


def machine() -> list[tuple[str, str]]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    rows = [
        ("date", datetime.datetime.now().astimezone().isoformat(timespec="seconds")),
        ("CPU", cpu_model()),
        ("cores", f"{os.cpu_count()} logical, {usable} usable by this process"),
        ("OS", platform.platform()),
        ("Python", sys.version.split()[0]),
        ("numpy", _version("numpy")),
        ("BLAS", blas_info()),
        ("dlc", _version("dlc")),
        ("torch", _version("torch")),
        ("jax / jaxlib", f"{_version('jax')} / {_version('jaxlib')}"),
        ("pytensor", _version("pytensor")),
    ]
    try:
        import torch

        rows.append(("torch threads", str(torch.get_num_threads())))
    except ImportError:
        pass
    try:
        from benchmarks.peers import PyTensor

        if PyTensor.missing() is None:
            rows.append(("pytensor linker", PyTensor.linker()))
    except Exception:
        pass
    return rows


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def _mib(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def timing_table(rows: list[dict]) -> str:
    """rows: size, dtype, peer (key), label, timing, first_step_s, mem (dict or None)."""
    head = (
        "| size | dtype | implementation | median ms/step | min–max ms | time / dlc NumPy "
        "| time / dlc LLVM | to first step (s) | peak RSS Δ, build + 1st step (MiB) "
        "| peak RSS Δ, steps (MiB) | step temporaries, tracemalloc (MiB) |"
    )
    lines = [head, "|" + "---|" * 11]
    base = {(r["size"], r["dtype"], r["peer"]): r["timing"].median for r in rows}
    for r in rows:
        t: Timing = r["timing"]
        ratios = []
        for ref_key in ("dlc", "llvm"):
            ref = base.get((r["size"], r["dtype"], ref_key))
            ratios.append(f"{t.median / ref:.2f}×" if ref else "–")
        mem = r.get("mem") or {}
        first = r.get("first_step_s")
        lines.append(
            f"| {r['size']} | {r['dtype']} | {r['label']} | {_ms(t.median)} | {_ms(t.low)}–{_ms(t.high)} "
            f"| {ratios[0]} | {ratios[1]} | {'–' if first is None else f'{first:.3f}'} "
            f"| {_mib(mem.get('build_peak_mib'))} | {_mib(mem.get('step_peak_mib'))} "
            f"| {_mib(mem.get('traced_step_mib'))} |"
        )
    return "\n".join(lines)


def check_table(checks: dict[tuple[str, str], list[CheckResult]]) -> str:
    lines = [
        "| size | dtype | implementation | largest relative difference from dlc | verdict |",
        "|---|---|---|---|---|",
    ]
    for (size, dtype), results in checks.items():
        for c in results:
            verdict = "ok" if c.dtype_ok and c.error <= c_tol(dtype) else f"FAILED {c.note}".strip()
            lines.append(f"| {size} | {dtype} | {c.peer} | {c.error:.1e} | {verdict} |")
    return "\n".join(lines)


def c_tol(dtype: str) -> float:
    return CHECK_RTOL if dtype == "float64" else 1e-4


def _probe_texts(probe: bool, probe_steps: int) -> tuple[str, str]:
    """How "to first step" and the memory columns were measured: (first step, memory)."""
    if not probe:
        return (
            "--quick: measured in the benchmark's own process, where earlier sizes have already warmed "
            "the libraries (the LLVM module's machine-code cache off); run without --quick for "
            "fresh-process numbers.",
            "not measured with --quick.",
        )
    first_text = (
        "measured in a fresh Python process per implementation, size and dtype, after importing "
        "the library and one trivial use of it (for dlc: compiling a one-line model), so one-time "
        "library start-up is excluded; PyTensor gets an empty compile directory (cold cache), "
        "dlc's LLVM module no machine-code cache."
    )
    memory_text = (
        "peak resident set size (VmHWM from /proc/self/status, reset through /proc/self/clear_refs) "
        "in the same fresh process, minus the RSS just before building the implementation (libraries "
        "imported and warmed, start state and batch in memory): first over build + first step, then "
        f"over {probe_steps} more steps. This counts what the implementation keeps (its copy of the "
        "parameters, velocity, compiled code, scratch memory, allocator caches) plus a step's peak "
        "temporaries. For the implementations whose arrays are NumPy's (dlc's two modules, NumPy by "
        "hand), the last column is tracemalloc's peak during one step above the memory allocated "
        "before it: the step's temporaries alone (gradients included; the LLVM module's scratch "
        "memory is allocated once, before)."
    )
    return first_text, memory_text


def step_settings(cfg: dict, rows: list[dict], *, probe_steps: int, load_warn: float,
                  retry_budget_s: float) -> dict:  # fmt: skip
    """The texts that say how the step table was measured (they depend on --quick)."""
    blocks = {(r["size"], r["dtype"]): (r["steps"], r["other_load"]) for r in rows}
    steps_text = ", ".join(
        f"{s} {d}: {n}" + ("" if load is None else f" (other load {load:.2f} cores)")
        for (s, d), (n, load) in blocks.items()
    )
    first_text, memory_text = _probe_texts(cfg["probe"], probe_steps)
    if cfg["attempts"] > 1:
        retry_text = (
            f"before each block the run waits (up to {cfg['quiet_wait_s']} s) for a quiet second; a block "
            f"above {load_warn} is timed again (up to {cfg['attempts']} attempts, within the first "
            f"{retry_budget_s // 60:.0f} minutes of a run; the least disturbed kept) and, if still "
            "disturbed, flagged in the notes."
        )
    else:
        retry_text = f"--quick times each block once and flags it in the notes above {load_warn}."
    return {"retry_text": retry_text, "rounds": cfg["rounds"], "steps_text": steps_text,
            "first_step_text": first_text, "memory_text": memory_text}  # fmt: skip


def _step_section(rows: list[dict], settings: dict) -> list[str]:
    out = ["## Time per training step", ""]
    out += [
        "One step = forward pass, loss, gradient, heavy-ball momentum update in place "
        "(v ← μv − ηg; w ← w + v; dlc's modules keep PyTorch's v ← μv + g; w ← w − ηv, the same steps), "
        "on one fixed random batch; for dlc's LLVM module one native call.",
        f"Measurements are interleaved: {settings['rounds']} rounds; in each round every implementation "
        "in turn (order rotating) restarts from the same state, takes one untimed step, then "
        "a fixed number of timed steps (the same for all implementations of a size and dtype: "
        f'{settings["steps_text"]}). "Other load" is the CPU time other processes (and hypervisor '
        "steal) used while a block was timed, from /proc/stat, in cores; " + settings["retry_text"] + " "
        "Median and min–max are over all timed steps. "
        '"time / dlc NumPy" and "time / dlc LLVM" are the median divided by the median of dlc\'s NumPy '
        "module and of its LLVM module (above 1: slower than that module).",
        "",
        timing_table(rows),
        "",
        "**To first step**: " + settings["first_step_text"],
        "",
    ]
    out += [f"- {peer}: {FIRST_STEP_MEANING[peer]}" for peer in FIRST_STEP_MEANING]
    return [*out, "", "**Memory**: " + settings["memory_text"], ""]


def _check_section(checks: dict) -> list[str]:
    return [
        "## Correctness cross-check",
        "",
        f"Before timing, every implementation runs 3 steps from dlc's start state on the same batch; "
        f"the loss of each step and every parameter after each step are compared with dlc's NumPy module: "
        f"largest |a − b| / max |b|. Tolerance {CHECK_RTOL:g} in float64, 1e-4 in float32 (where the "
        "check also confirms that each implementation really computes in float32). "
        "An implementation that fails is not timed.",
        "",
        check_table(checks),
        "",
    ]


def render(
    *,
    command: str,
    specs: dict,
    rows: list[dict],
    checks: dict,
    skipped: dict[str, str],
    settings: dict,
    notes: list[str],
    sections: list[tuple[str, str]] | None = None,
) -> str:
    """The Markdown report. ``sections`` are (title, body) pairs placed after the step times;
    one titled "Goals" goes first, right after the machine and the networks."""
    out = ["# dlc training-step benchmark", "", f"Written by `{command}`. Do not edit by hand.", ""]
    out += ["## Machine", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in machine()]
    out += ["", "## Networks", ""]
    out += [
        f"- **{s.size}**: `{s.path.relative_to(s.path.parent.parent.parent)}`, MLP {s.describe()}, "
        f"tanh hidden layers, softmax cross-entropy, sgd(lr = {s.lr}, momentum = {s.momentum})"
        for s in specs.values()
    ]
    out.append("")
    sections = sections or []
    for title, body in sections:
        if title == "Goals":
            out += [f"## {title}", "", body, ""]
    out += _step_section(rows, settings)
    for title, body in sections:
        if title != "Goals":
            out += [f"## {title}", "", body, ""]
    out += _check_section(checks)
    if skipped or notes:
        out += ["## Notes", ""]
        out += [f"- **{label}** skipped: {why}" for label, why in skipped.items()]
        out += [f"- {n}" for n in notes]
        out.append("")
    return "\n".join(out)
