"""One run of a sweep, as a worker gets it, and what it sends back.

A :class:`Job` carries everything a run needs as plain data (the model's
text, the module compiled for it, the options), so that a worker process on
this machine or a Ray worker elsewhere trains it the same way, with one BLAS
thread: the same configuration and seed give bit-identical results on
either. A worker keeps the models and modules it has loaded, so the runs of
a sweep compile nothing after the first.
"""

from __future__ import annotations

import hashlib
import math
import time
import traceback
from dataclasses import dataclass
from types import ModuleType
from typing import Any

#: A run's outcomes: trained to the end (or stopped early), diverged, refused by a check,
#: or lost with its worker (twice).
OK, DIVERGED, ERROR, DIED = "ok", "diverged", "error", "died"


@dataclass(frozen=True)
class Job:
    key: str  # "lr = 0.1, momentum = 0.9, seed = 0": the run's name in the results
    config: tuple[tuple[str, str], ...]  # the swept settings, (name, value as written)
    seed: int
    model_source: str
    model_path: str
    optimizer: str | None  # a swept optimizer call; None: the model's own
    module_source: str  # the module compiled for the model with that optimizer
    options: dict[str, Any]  # dlc.train.run.Options fields: data, epochs, batch_size, backend, ...
    settings: tuple[tuple[str, float], ...]  # the swept optimizer settings, by name


_models: dict[tuple[str, str, str | None], Any] = {}
_modules: dict[str, ModuleType] = {}


def run_job(job: Job) -> dict[str, Any]:
    """Train ``job``'s run; its record (never raises for a mistake in the run: that is its record)."""
    from dlc.errors import DlcError

    began = time.perf_counter()
    try:
        record = _train(job)
    except DlcError as err:
        record = {"status": ERROR, "message": err.render()}
    except MemoryError:
        record = {"status": ERROR, "message": "out of memory"}
    except Exception as exc:  # a bug in dlc: kept in the results, with where it happened
        lines = traceback.format_exception_only(type(exc), exc)
        record = {"status": ERROR, "message": "internal error: " + "".join(lines).strip()}
    return {"key": job.key, "config": dict(job.config), "seed": job.seed,
            "seconds": time.perf_counter() - began, **record}  # fmt: skip


def _train(job: Job) -> dict[str, Any]:
    from dlc.compiler import load_module
    from dlc.frontend import load_source
    from dlc.train.run import Options, train

    which = (job.model_source, job.model_path, job.optimizer)
    if which not in _models:
        _models[which] = load_source(job.model_source, job.model_path, optimizer=job.optimizer)
    model = _models[which]
    digest = hashlib.sha256(job.module_source.encode()).hexdigest()
    if digest not in _modules:
        _modules[digest] = load_module(job.module_source, f"dlc_{model.graph.name}")
    options = Options(**job.options, seed=job.seed, settings=job.settings, blas_threads=1)
    result = train(model, options, module=_modules[digest])
    history = [[e.epoch, e.loss, e.accuracy, e.val_loss, e.val_accuracy] for e in result.history]
    losses = [e.loss for e in result.history if math.isfinite(e.loss)]
    last = result.history[-1] if result.history else None
    return {
        "status": DIVERGED if result.diverged else OK,
        "message": result.diverged,
        "epochs": len(result.history),
        "final_loss": last.loss if last else None,
        "best_loss": min(losses) if losses else None,
        "accuracy": last.accuracy if last else None,
        "val_loss": last.val_loss if last else None,
        "val_accuracy": last.val_accuracy if last else None,
        "stopped_early": result.stopped_early,
        "history": history,
    }
