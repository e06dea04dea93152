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
from collections.abc import Callable, Sequence
from typing import Any

from dlc.errors import DlcError
from dlc.sweeps.job import Job, run_job
from dlc.sweeps.local import ONE_THREAD, TRIES, died


def run_ray(
    address: str,
    jobs: Sequence[Job],
    done: Callable[[Job, dict[str, Any]], None],
) -> None:
    """Run ``jobs`` on the Ray cluster at ``address``; ``done(job, record)`` as each finishes."""
    try:
        import ray
        from ray.exceptions import RayError
    except ImportError:
        raise DlcError("--ray needs Ray, which is not installed",
                       hint="pip install 'dlc[ray]' (or pip install ray)") from None  # fmt: skip
    env = dict(ONE_THREAD)
    if "DLC_CACHE_DIR" in os.environ:  # the workers share this machine's cache of machine code
        env["DLC_CACHE_DIR"] = os.environ["DLC_CACHE_DIR"]
    connected_here = not ray.is_initialized()
    if connected_here:
        try:
            ray.init(address=None if address == "local" else address, runtime_env={"env_vars": env},
                     logging_level=logging.ERROR, log_to_driver=False)  # fmt: skip
        except (ConnectionError, RuntimeError, ValueError) as exc:
            hint = "start one with 'ray start --head', or use --ray local"
            raise DlcError(f"--ray {address}: cannot connect to a Ray cluster: {exc}", hint=hint) from None
    try:
        task = ray.remote(num_cpus=1, max_retries=TRIES - 1, runtime_env={"env_vars": env})(_run)
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
    finally:
        if connected_here:
            ray.shutdown()


def _run(job: Job) -> dict[str, Any]:
    """A Ray task: one run (with one BLAS thread, from the task's environment)."""
    return run_job(job)
