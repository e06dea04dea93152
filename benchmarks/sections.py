"""The parts of the report beyond the single step: the native epoch, model file to first step, goals.

``benchmarks.run`` calls ``extra_sections`` after timing the steps; each
part is also a command of its own (``python -m benchmarks.epoch``,
``python -m benchmarks.firststep``).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from benchmarks import epoch, firststep, goals
from benchmarks.spec import model_path


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextmanager
def machine_code_cache(folder: str) -> Iterator[None]:
    """DLC_CACHE_DIR set to ``folder`` ("" switches the LLVM module's disk cache off) for a while."""
    before = os.environ.get("DLC_CACHE_DIR")
    os.environ["DLC_CACHE_DIR"] = folder
    try:
        yield
    finally:
        if before is None:
            del os.environ["DLC_CACHE_DIR"]
        else:
            os.environ["DLC_CACHE_DIR"] = before


def backends(peer_keys: list[str]) -> list[str]:
    """dlc's backends that can run here: the NumPy module always, LLVM where its peer is available."""
    return ["llvm", "numpy"] if "llvm" in peer_keys else ["numpy"]


def extra_sections(sizes: list[str], dtypes: list[str], peer_keys: list[str], quick: bool,
                   rows: list[dict], load_warn: float) -> list[tuple[str, str]]:  # fmt: skip
    """(title, Markdown body) of the goals, the epoch and the first-step sections."""
    which = backends(peer_keys)
    log(f"epoch: time per step inside train() ({', '.join(which)})")
    started = time.perf_counter()
    epoch_rows = epoch.measure(sizes, dtypes, which, quick)
    log(f"  {time.perf_counter() - started:.0f} s; model file to first step: fresh processes")
    started = time.perf_counter()
    paths = sorted(firststep.ROOT.joinpath("examples").glob("*.dlc")) + [model_path(s) for s in sizes]
    first_rows = firststep.measure(which, "float64", quick, paths)
    log(f"  {time.perf_counter() - started:.0f} s")
    found = goals.step_goals(rows, dtypes, load_warn)
    found += goals.epoch_goals(epoch_rows, epoch.GOAL_US)
    found += goals.first_step_goals(first_rows, firststep.GOAL_S)
    first_text = firststep.DESCRIPTION + ("\n\n" + firststep.QUICK_NOTE if quick else "")
    return [
        ("Goals", GOALS_TEXT + "\n\n" + goals.table(found)),
        ("Time per step inside an epoch", epoch.describe(quick) + "\n\n" + epoch.table(epoch_rows)),
        ("Model file to first trained step", first_text + "\n\n" + firststep.table(first_rows)),
        ("Scaling", SCALING_TEXT),
    ]


GOALS_TEXT = (
    "The LLVM backend's goals, each judged from this run's medians. The peers are PyTorch, JAX and "
    "PyTensor (those installed and passing the cross-check); the best peer is the fastest of them at "
    "that size and dtype. A goal measured on a disturbed block (other processes busy) is flagged; "
    "judge it again on a quiet machine."
)
SCALING_TEXT = (
    "Step time against batch size (1 to 1024) and depth (1 to 16 hidden layers) for both backends "
    "and dtypes, and the resident memory over 20 epochs of `train()`: `python -m benchmarks.scaling` "
    "writes them to [SCALING.md](SCALING.md)."
)
