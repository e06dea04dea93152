"""Running a sweep's jobs as Ray tasks (``dlc sweep --ray ADDRESS|auto|local``).

Each run is one task of one CPU, with one BLAS thread, that Ray retries once
if its worker dies; after that the run is reported, as on this machine.
``local`` starts a private Ray instance for the sweep; ``auto`` joins the
cluster this machine belongs to; anything else is a cluster's address. A
sweep called from Python in a process already connected to Ray uses that
connection. The workers must have dlc installed, and a ``--data`` file
must be at the same path on every node.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

from dlc.errors import DlcError
from dlc.sweeps.job import Job, run_job
from dlc.sweeps.local import ONE_THREAD, TRIES, died

#: How long to wait for a cluster's address to answer before calling it absent.
PROBE_SECONDS = 5.0


def connect(address: str) -> Callable[[], None]:
    """Connect to the Ray cluster at ``address`` (before any run); returns what disconnects.

    Raises:
        DlcError: if Ray is not installed or there is no cluster there.
    """
    try:
        import ray
    except ImportError:
        raise DlcError("--ray needs Ray, which is not installed",
                       hint="pip install 'dlc[ray]' (or pip install ray)") from None  # fmt: skip
    if ray.is_initialized():  # a caller's own connection: theirs to end
        return lambda: None
    hint = "start one with 'ray start --head', or use --ray local"
    _listening(address, hint)
    try:
        ray.init(address=address, runtime_env={"env_vars": _environment()},
                 logging_level=logging.ERROR, log_to_driver=False)  # fmt: skip
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise DlcError(f"--ray {address}: cannot connect to a Ray cluster: {exc}", hint=hint) from None
    return ray.shutdown


def _listening(address: str, hint: str) -> None:
    """An address ``host:port`` must have something listening (Ray itself would wait for minutes)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_SECONDS).close()
    except OSError as exc:
        raise DlcError(f"--ray {address}: cannot connect to a Ray cluster: {exc.strerror or exc}",
                       hint=hint) from None  # fmt: skip


def _environment() -> dict[str, str]:
    """The tasks' environment: one BLAS thread, and this machine's cache of machine code."""
    env = dict(ONE_THREAD)
    if "DLC_CACHE_DIR" in os.environ:
        env["DLC_CACHE_DIR"] = os.environ["DLC_CACHE_DIR"]
    return env


def run_ray(jobs: Sequence[Job], done: Callable[[Job, dict[str, Any]], None]) -> None:
    """Run ``jobs`` on the connected Ray cluster (:func:`connect`); ``done(job, record)`` as each finishes."""
    import ray
    from ray.exceptions import RayError

    task = ray.remote(num_cpus=1, max_retries=TRIES - 1, runtime_env={"env_vars": _environment()})(_run)
    running = {task.remote(job): job for job in jobs}
    while running:
        finished, _ = ray.wait(list(running), num_returns=1)
        for ref in finished:
            job = running.pop(ref)
            try:
                record = {**ray.get(ref), "attempts": None}
            except RayError as exc:
                record = died(job, TRIES, f"with Ray's {type(exc).__name__}")
            done(job, record)


def _run(job: Job) -> dict[str, Any]:
    """A Ray task: one run (with one BLAS thread, from the task's environment)."""
    return run_job(job)
