"""Running a sweep's jobs in worker processes on this machine.

Each worker is ``python -m dlc.sweeps.worker`` with one BLAS thread, fed one
job at a time through a pipe, so that the parent always knows which run a
worker had when it died: that run is retried once on a fresh worker and,
if it dies again, reported. Workers live in their own session (Ctrl-C
reaches only the sweep, which stops them) and are killed with the sweep's
process (on Linux; elsewhere they leave when their input ends, after their
run), so a sweep that is killed leaves none behind.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait
from pathlib import Path
from typing import IO, Any

from dlc.sweeps.job import DIED, Job

#: Environment variables that set the BLAS libraries' thread counts (OpenBLAS, MKL, OpenMP, Accelerate).
ONE_THREAD = {k: "1" for k in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS",
                               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")}  # fmt: skip
#: How many times a run is tried before its worker's death is reported.
TRIES = 2


def worker_environment() -> dict[str, str]:
    """This process's environment, with one BLAS thread, and dlc importable as it is here."""
    env = {**os.environ, **ONE_THREAD}
    home = str(Path(__file__).resolve().parents[2])  # the folder that holds the package dlc
    env["PYTHONPATH"] = os.pathsep.join(p for p in (home, env.get("PYTHONPATH")) if p)
    return env


class _Worker:
    def __init__(self, env: dict[str, str]) -> None:
        self.log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (kept open as long as the worker)
        command = [sys.executable, "-m", "dlc.sweeps.worker", str(os.getpid())]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.log, env=env, start_new_session=True)  # fmt: skip
        self.job: Job | None = None

    def send(self, job: Job) -> bool:
        """Give the worker ``job``; False if it is gone already."""
        self.job = job
        assert self.process.stdin is not None
        try:
            pickle.dump(job, self.process.stdin)
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            return False
        return True

    def receive(self) -> dict[str, Any] | None:
        """The record of the job it has; None if the worker died."""
        assert self.process.stdout is not None
        try:
            record: dict[str, Any] = pickle.load(self.process.stdout)
        except (EOFError, OSError, pickle.UnpicklingError):
            return None
        return record

    def death(self) -> str:
        """How it died: its signal or exit code, and the last line it wrote."""
        self.stop()
        code = self.process.returncode
        how = f"killed by signal {signal.Signals(-code).name}" if code is not None and code < 0 else (
            f"exited with code {code}")  # fmt: skip
        self.log.seek(0)
        said = [line for line in self.log.read().decode("utf-8", "replace").splitlines() if line.strip()]
        return how + (f" ({said[-1].strip()})" if said else "")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def close(self) -> None:
        """Stop it (killed, if it is still running a job) and forget its log."""
        self.stop()
        self.log.close()


class LocalPool:
    """``workers`` worker processes, started at once: they import NumPy, SymPy and dlc while the sweep
    compiles the model, so that a run can start as soon as there is one."""

    def __init__(self, workers: int) -> None:
        self.env = worker_environment()
        self.pool = [_Worker(self.env) for _ in range(max(1, workers))]

    def run(self, jobs: Sequence[Job], done: Callable[[Job, dict[str, Any]], None],
            started: Callable[[Job, int, int], None] | None = None) -> None:  # fmt: skip
        """Run ``jobs``; ``done(job, record)`` as each finishes, ``started(job, attempt, pid)`` each
        time a job goes to a worker."""
        pending = deque(jobs)
        tries: dict[str, int] = {}
        pool, env = self.pool, self.env
        while pending or any(w.job for w in pool):
            for i, w in enumerate(pool):
                while w.job is None and pending:
                    job = pending.popleft()
                    tries[job.key] = tries.get(job.key, 0) + 1
                    if started is not None:
                        started(job, tries[job.key], w.process.pid)
                    if not w.send(job):  # it was gone before it got the job
                        pool[i] = w = _replace(w, env, job, tries, pending, done)
            busy = {w.process.stdout: w for w in pool if w.job is not None}
            for stream in wait(list(busy)):  # type: ignore[arg-type]
                w = busy[stream]  # type: ignore[index]
                record = w.receive()
                had = w.job
                assert had is not None
                w.job = None
                if record is None:
                    pool[pool.index(w)] = _replace(w, env, had, tries, pending, done)
                else:
                    done(had, {**record, "attempts": tries[had.key]})

    def close(self) -> None:
        """Stop the workers (those still running a job are killed)."""
        for w in self.pool:
            w.close()


def _replace(w: _Worker, env: dict[str, str], job: Job, tries: dict[str, int],
             pending: deque[Job], done: Callable[[Job, dict[str, Any]], None]) -> _Worker:  # fmt: skip
    """A fresh worker in place of ``w``, which died with ``job``: retried once, then reported."""
    how = w.death()
    w.close()
    w.job = None
    if tries[job.key] < TRIES:
        pending.appendleft(job)
    else:
        done(job, died(job, tries[job.key], how))
    return _Worker(env)


def died(job: Job, attempts: int, how: str) -> dict[str, Any]:
    """The record of a run whose worker died every time it ran it."""
    return {"key": job.key, "config": dict(job.config), "seed": job.seed, "status": DIED,
            "message": f"its worker died {attempts} times; the last {how}", "attempts": attempts}  # fmt: skip
