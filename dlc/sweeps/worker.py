"""``python -m dlc.sweeps.worker``: a local sweep worker.

It reads jobs (pickled :class:`~dlc.sweeps.job.Job`) from its standard
input and writes each one's record (a pickled dict) to its standard output,
one at a time, until its input ends or its parent (the sweep, whose process
id is its argument) ends. Anything else that would be printed
goes to its standard error. The BLAS thread count is set by its parent,
in the environment, before NumPy loads.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys

#: prctl's option that asks for a signal when the parent process ends.
PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    """Be killed when the sweep's process ends, however it ends (Linux; elsewhere input's end does it)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it ended before this process could ask
        os._exit(0)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].isdigit():
        _die_with(int(sys.argv[1]))
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray output must not reach the replies
    # what every run needs, imported while the sweep is still compiling the model
    import dlc.compiler
    import dlc.train.run  # noqa: F401
    from dlc.frontend.grammar import lark_parser
    from dlc.sweeps.job import run_job

    lark_parser()  # built once per process, before the first model is read

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
