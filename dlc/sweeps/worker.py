"""``python -m dlc.sweeps.worker``: a local sweep worker.

It reads jobs (pickled :class:`~dlc.sweeps.job.Job`) from its standard
input and writes each one's record (a pickled dict) to its standard output,
one at a time, until its input ends. Anything else that would be printed
goes to its standard error. The BLAS thread count is set by its parent,
in the environment, before NumPy loads.
"""

from __future__ import annotations

import os
import pickle
import sys


def main() -> None:
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray output must not reach the replies
    from dlc.sweeps.job import run_job

    jobs = sys.stdin.buffer
    while True:
        try:
            job = pickle.load(jobs)
        except EOFError:  # the sweep is over (or its process is gone)
            return
        pickle.dump(run_job(job), replies)
        replies.flush()


if __name__ == "__main__":
    main()
