"""Cross-check, step timing (round-robin) and the fresh-process probe for compile time and memory."""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.peers import PEERS, NumpyState, Peer
from benchmarks.spec import Spec, start_state

CHECK_STEPS = 3
CHECK_RTOL = 1e-6


def available_peers(keys: list[str] | None = None) -> tuple[list[type[Peer]], dict[str, str]]:
    """The peer classes that can run here, and a note for each one that cannot."""
    ok, skipped = [], {}
    for key, cls in PEERS.items():
        if keys is not None and key not in keys:
            continue
        why = cls.missing()
        if why is None:
            ok.append(cls)
        else:
            skipped[cls.label] = why
    return ok, skipped


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b| (b the reference), 0 when both are zero."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = float(np.max(np.abs(b), initial=0.0))
    diff = float(np.max(np.abs(a - b), initial=0.0))
    return diff / scale if scale > 0 else diff


@dataclass
class CheckResult:
    peer: str
    error: float  # largest relative error over losses and parameters after each step
    dtype_ok: bool
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.error <= CHECK_RTOL and self.dtype_ok


def cross_check(
    spec: Spec, peers: list[type[Peer]], dtype: str = "float64", steps: int = CHECK_STEPS
) -> list[CheckResult]:
    """Run ``steps`` training steps with every peer from dlc's start state and compare with dlc.

    Compares the loss of every step and every parameter after every step
    (relative to dlc's value), and that each peer really computes in ``dtype``.
    """
    from benchmarks.peers import Dlc

    params, X, Y = start_state(spec, dtype)
    trace: dict[str, list[tuple[float, dict[str, np.ndarray]]]] = {}
    dtypes: dict[str, str] = {}
    for cls in [Dlc, *[p for p in peers if p is not Dlc]]:
        peer = cls(spec, dtype)
        peer.build()
        peer.load(params, X, Y)
        trace[cls.label] = [(peer.step(), peer.state()) for _ in range(steps)]
        dtypes[cls.label] = peer.state_dtype()
    reference = trace[Dlc.label]
    results = []
    for label, runs in trace.items():
        err = 0.0
        for (loss, state), (ref_loss, ref_state) in zip(runs, reference, strict=True):
            err = max(err, relative_error(np.float64(loss), np.float64(ref_loss)))
            for k, w in ref_state.items():
                err = max(err, relative_error(state[k], w))
        note = "" if dtypes[label] == dtype else f"computes in {dtypes[label]}, not {dtype}"
        results.append(CheckResult(label, err, dtypes[label] == dtype, note))
    return results


@dataclass
class Timing:
    samples: list[float] = field(default_factory=list)  # seconds per step

    @property
    def median(self) -> float:
        return float(np.median(self.samples))

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)


def time_steps(
    peers: list[Peer], params: dict, X: np.ndarray, Y: np.ndarray, rounds: int, steps: int
) -> dict[str, Timing]:
    """Per-step wall times, interleaved: each round gives every peer ``steps`` timed steps in turn.

    Every peer restarts from the same state each round (untimed), takes one
    untimed step (so whatever the previous peer left spinning settles), then
    ``steps`` timed steps; so all peers time the same part of the same
    trajectory. The order rotates from round to round. GC is off while timing.
    """
    timings = {p.label: Timing() for p in peers}
    clock = time.perf_counter
    for r in range(rounds):
        order = peers[r % len(peers) :] + peers[: r % len(peers)]
        for peer in order:
            peer.load(params, X, Y)
            peer.step()
            gc.collect()
            gc.disable()
            try:
                samples = timings[peer.label].samples
                for _ in range(steps):
                    t0 = clock()
                    peer.step()
                    samples.append(clock() - t0)
            finally:
                gc.enable()
    return timings


class OtherLoad:
    """CPU time that other processes (and the hypervisor: steal) used while this one measured.

    From /proc/stat (the whole machine) minus this process's own CPU time, over
    the wall time between ``start()`` and ``stop()``; in cores (2.0 = both
    cores of a 2-core machine busy with something else). None where
    /proc/stat is missing.
    """

    @staticmethod
    def _machine_busy_s() -> float | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _self_s() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def start(self) -> None:
        self.t0, self.busy0, self.self0 = time.perf_counter(), self._machine_busy_s(), self._self_s()

    def stop(self) -> float | None:
        busy = self._machine_busy_s()
        if busy is None or self.busy0 is None:
            return None
        wall = time.perf_counter() - self.t0
        return max(0.0, (busy - self.busy0) - (self._self_s() - self.self0)) / wall


def first_step_in_process(peer: Peer, params: dict, X: np.ndarray, Y: np.ndarray) -> float:
    """Seconds for build + load + first step, in this (already warm) process."""
    t0 = time.perf_counter()
    peer.build()
    peer.load(params, X, Y)
    peer.step()
    return time.perf_counter() - t0


# --- fresh-process probe: time to first step and memory -------------------------------------------


def _status_kib(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise KeyError(field_name)


def _reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM); Linux >= 4.0."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def probe(peer_key: str, size: str, dtype: str, state_file: str, steps: int) -> dict:
    """In a fresh process: time from nothing built to the first step done, and peak memory (RSS).

    The library is imported and warmed with a trivial use first; the start
    state comes from ``state_file`` (so dlc's compiler is not run before dlc
    is timed). Memory is the peak RSS above the RSS before ``build()``:
    during build + first step, and during ``steps`` further steps (the peak is
    reset in between through /proc/self/clear_refs). For the NumPy-based
    peers, also tracemalloc's peak over one more step, above what is
    allocated before it: the step's own temporaries.
    """
    from benchmarks.spec import load_spec_from

    cls = PEERS[peer_key]
    cls.warm_library()
    with np.load(state_file) as data:
        spec = load_spec_from(data, size)
        params = {k: data["param_" + k] for k in spec.names}
        X, Y = data["X"], data["Y"]
    peer = cls(spec, dtype)
    gc.collect()
    resettable = _reset_peak()
    rss0 = _status_kib("VmRSS")
    t0 = time.perf_counter()
    peer.build()
    peer.load(params, X, Y)
    peer.step()
    first = time.perf_counter() - t0
    peak_build = _status_kib("VmHWM")
    resettable = _reset_peak() and resettable
    for _ in range(steps):
        peer.step()
    peak_steps = _status_kib("VmHWM")
    traced = None
    if isinstance(peer, NumpyState):  # every array is NumPy's: tracemalloc sees all of a step's memory
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        peer.step()
        traced = (tracemalloc.get_traced_memory()[1] - base) / 2**20
        tracemalloc.stop()
    return {
        "traced_step_mib": traced,
        "first_step_s": first,
        "build_peak_mib": (peak_build - rss0) / 1024 if resettable else None,
        "step_peak_mib": (peak_steps - rss0) / 1024 if resettable else None,
        "process_peak_mib": peak_steps / 1024 if resettable else _status_kib("VmHWM") / 1024,
        "resettable": resettable,
    }


def run_probe(peer_key: str, spec: Spec, dtype: str, params: dict, X: np.ndarray, Y: np.ndarray,
              steps: int = 5, timeout: float = 300) -> dict:  # fmt: skip
    """Run ``probe`` in a fresh Python process (PyTensor and dlc's LLVM module with cold caches)."""
    with tempfile.TemporaryDirectory(prefix="dlc-bench-") as tmp:
        state_file = Path(tmp) / "state.npz"
        np.savez(
            state_file,
            X=X,
            Y=Y,
            dims=np.array(spec.dims),
            batch=spec.batch,
            lr=spec.lr,
            momentum=spec.momentum,
            **{"param_" + k: v for k, v in params.items()},
        )
        # Cold caches: an empty compile directory for PyTensor, no machine-code cache for dlc's LLVM module.
        env = dict(os.environ, PYTENSOR_FLAGS=f"compiledir={tmp}/pytensor", DLC_CACHE_DIR="")
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.probe",
            peer_key,
            spec.size,
            dtype,
            str(state_file),
            str(steps),
        ]
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root, timeout=timeout)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or [f"exit code {out.returncode}"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])
