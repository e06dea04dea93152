"""A sweep from start to end: the grid, its checks, the jobs, an executor, the folder and the table."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dlc.compiler import BACKENDS, DTYPES, compile_source, load_module
from dlc.errors import DlcError
from dlc.frontend import Model, ast
from dlc.frontend.grid import Grid, read_grid, written
from dlc.frontend.parser import parse_sweep_values
from dlc.sweeps import results
from dlc.sweeps.job import DIED, ERROR, Job
from dlc.train.data import BUILTIN_PREFIX
from dlc.train.run import MAX_WHOLE, Options, check, settings

#: At most this many seeds per configuration.
MAX_SEEDS = 10_000
#: At most this many local workers per core (each is a process with its own copy of NumPy and dlc).
WORKERS_PER_CORE = 4
Config = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class SweepOptions:
    """What to sweep (``sets``: the ``--set`` texts) and how; None leaves the model's own setting."""

    sets: tuple[str, ...] = ()
    seeds: int = 1
    data: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    backend: str = "numpy"
    dtype: str = "float64"
    val_split: float = 0.0
    workers: int | None = None  # None: one per core (local workers)
    ray: str | None = None  # a Ray cluster's address, "auto" or "local"; None: local workers
    out: Path = Path("sweep")
    resume: bool = False


@dataclass
class Outcome:
    rows: list[results.Row]
    names: list[str]  # the swept settings, in order
    best: results.Row | None
    block: str | None  # the best configuration as a train block
    folder: Path
    total: int  # runs in the sweep
    earlier: int  # runs finished before (resumed)
    records: list[dict[str, Any]] = field(default_factory=list)  # every finished run, in the grid's order
    ran: int = 0  # runs finished by this call
    failed: int = 0  # runs of this call that raised an error or whose worker died
    interrupted: bool = False
    seconds: float = 0.0
    executor: str = ""


class Observer(Protocol):
    def begin(self, total: int, earlier: int, executor: str) -> None: ...
    def started(self, job: Job, attempt: int, pid: int) -> None: ...
    def finished(self, record: dict[str, Any], done: int, total: int) -> None: ...


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_sweep(model: Model, options: SweepOptions, observer: Observer | None = None) -> Outcome:
    """Train every configuration of the grid with every seed, as ``options`` say.

    Raises:
        DlcError: for a bad grid or option, data that cannot be read, an --out folder that holds
            another sweep: all before any run.
    """
    _check_counts(options)
    grid = read_grid(model, options.sets, options.seeds)
    first_seed = model.graph.train.seed
    if first_seed + options.seeds - 1 > MAX_WHOLE:
        raise DlcError(f"--seeds {options.seeds} from the model's seed {first_seed} passes 2^31")
    base = Options(data=options.data, epochs=options.epochs, batch_size=options.batch_size,
                   backend=options.backend, dtype=options.dtype, val_split=options.val_split)  # fmt: skip
    first, *others = grid.models.values()
    check(first, base)  # the options and the data, read once: the swept optimizers share the data
    for built in others:
        settings(built.graph, base)
    disconnect = _connect(options.ray)
    try:
        return _sweep(model, options, grid, first_seed, base, observer)
    finally:
        disconnect()


def _connect(address: str | None) -> Any:
    if address is None:
        return lambda: None
    from dlc.sweeps.ray_pool import connect

    return connect(address)


def _sweep(model: Model, options: SweepOptions, grid: Grid, first_seed: int, base: Options,
           observer: Observer | None) -> Outcome:  # fmt: skip
    names = [a.name for a in grid.axes]
    configurations = [tuple((n, v.text) for n, v in c) for c in grid.configurations()]
    keys = {c: [_key(c, first_seed + s) for s in range(options.seeds)] for c in configurations}
    folder = results.Folder(options.out, _context(model, options), options.resume)
    outcome = Outcome([], names, None, None, options.out, len(configurations) * options.seeds, 0)
    began = time.perf_counter()
    try:
        done = set(folder.finished)
        todo = [(c, first_seed + s) for c in grid.configurations() for s in range(options.seeds)]
        todo = [(c, seed) for c, seed in todo if _key(tuple((n, v.text) for n, v in c), seed) not in done]
        outcome.earlier = outcome.total - len(todo)
        _run(model, grid, options, base, todo, folder, outcome, observer)
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        folder.close()
        outcome.seconds = time.perf_counter() - began
        _finish(outcome, grid, model, options, folder, configurations, keys)
    return outcome


def _check_counts(options: SweepOptions) -> None:
    if options.backend not in BACKENDS:
        raise DlcError(f"unknown backend {options.backend!r}; choose one of {', '.join(BACKENDS)}")
    if options.dtype not in DTYPES:
        raise DlcError(f"unknown dtype {options.dtype!r}; choose one of {', '.join(DTYPES)}")
    seeds = options.seeds
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        raise DlcError(f"--seeds must be a whole number from 1 to {MAX_SEEDS}, not {options.seeds}")
    most = WORKERS_PER_CORE * cores()
    workers = options.workers
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= most
    ):
        raise DlcError(
            f"--workers must be a whole number from 1 to {most} ({WORKERS_PER_CORE} per core), "
            f"not {options.workers}",
            hint="each worker is a process of its own, with its own memory",
        )
    if options.workers is not None and options.ray is not None:
        raise DlcError("--workers is for this machine's workers; a Ray cluster has its own",
                       hint="leave out --workers with --ray")  # fmt: skip


def _key(config: Config, seed: int) -> str:
    return ", ".join([*(f"{n} = {v}" for n, v in config), f"seed = {seed}"])


def _context(model: Model, options: SweepOptions) -> dict[str, Any]:
    """What every run of the sweep shares; a resumed sweep must share it too."""
    return {
        "model": hashlib.sha256(model.source.encode()).hexdigest(),
        "data": options.data, "epochs": options.epochs, "batch_size": options.batch_size,
        "backend": options.backend, "dtype": options.dtype, "val_split": options.val_split,
    }  # fmt: skip


def _job(model: Model, grid: Grid, options: SweepOptions, base: Options,
         config: tuple[tuple[str, Any], ...], seed: int, compiled: dict[str | None, str]) -> Job:  # fmt: skip
    """The job of one run; ``compiled``: the modules compiled so far, by optimizer (once each: every
    worker loads that module, and its machine code from the cache)."""
    chosen = dict(config).get("optimizer")
    optimizer = chosen.text if chosen is not None else None
    if optimizer not in compiled:
        compiled[optimizer] = compile_source(grid.models[optimizer], options.backend, options.dtype)
    fields = {"data": base.data, "epochs": base.epochs, "batch_size": base.batch_size,
              "backend": base.backend, "dtype": base.dtype, "val_split": base.val_split}  # fmt: skip
    for name, value in config:
        if name in ("epochs", "batch_size"):
            fields[name] = int(value.number)
    settings = tuple(
        (n, float(v.number)) for n, v in config if n not in ("optimizer", "epochs", "batch_size")
    )
    texts = tuple((n, v.text) for n, v in config)
    return Job(_key(texts, seed), texts, seed, model.source, model.path, optimizer,
               compiled[optimizer], fields, settings)  # fmt: skip


def _run(model: Model, grid: Grid, options: SweepOptions, base: Options,
         todo: list[tuple[tuple[tuple[str, Any], ...], int]], folder: results.Folder, outcome: Outcome,
         observer: Observer | None) -> None:  # fmt: skip
    """Run the runs ``todo`` (configuration, seed); each one's record goes to ``folder`` as it finishes."""
    if not todo:
        return
    workers = options.workers or min(cores(), len(todo))
    outcome.executor = (
        f"Ray ({options.ray})" if options.ray else f"{workers} local worker{'s' * (workers != 1)}"
    )
    pool = None
    if options.ray is None:
        from dlc.sweeps.local import LocalPool

        pool = LocalPool(workers)  # its workers start up while the model compiles
    try:
        compiled: dict[str | None, str] = {}
        jobs = [_job(model, grid, options, base, c, seed, compiled) for c, seed in todo]
        if options.backend == "llvm":  # the machine code, made once here; the workers read it from the cache
            for source in compiled.values():
                load_module(source, "dlc_sweep_warmup")._native()
        if observer:
            observer.begin(outcome.total, outcome.earlier, outcome.executor)

        def done(job: Job, record: dict[str, Any]) -> None:
            folder.add(record)
            outcome.ran += 1
            outcome.failed += record["status"] in (ERROR, DIED)
            if observer:
                observer.finished(record, outcome.earlier + outcome.ran, outcome.total)

        if pool is not None:
            pool.run(jobs, done, observer.started if observer else None)
        else:
            from dlc.sweeps.ray_pool import run_ray

            run_ray(jobs, done)
    finally:
        if pool is not None:
            pool.close()


def _finish(outcome: Outcome, grid: Grid, model: Model, options: SweepOptions, folder: results.Folder,
            configurations: list[Config], keys: dict[Config, list[str]]) -> None:  # fmt: skip
    """The table and the files made from it (written even after an interrupt: what finished is kept)."""
    outcome.rows = results.table(configurations, folder.finished, keys)
    outcome.records = [folder.finished[k] for c in configurations for k in keys[c] if k in folder.finished]
    outcome.best = results.best(outcome.rows)
    if outcome.best is not None:
        outcome.block = train_block(model, grid, options, dict(outcome.best.config))
    from dlc.atomic import write_text

    write_text(options.out / "summary.csv", results.rows_csv(outcome.rows))
    write_text(options.out / "runs.csv", results.runs_csv(outcome.records, outcome.names))
    if outcome.block is not None:
        write_text(options.out / "best.dlc", outcome.block)


# ------------------------------------------------------------------ the best configuration


def train_block(model: Model, grid: Grid, options: SweepOptions, config: dict[str, str]) -> str:
    """``config`` as a train block to paste into the model file (the model's other settings kept)."""
    chosen = config.get("optimizer")
    built = grid.models[chosen]
    t = built.graph.train
    optimizer = t.optimizer
    call = chosen or _written_optimizer(model)
    swept = {k: v for k, v in config.items() if k not in ("optimizer", "epochs", "batch_size")}
    lines = [("optimizer", _with_settings(call, swept))]
    if built.graph.data:  # a model without data takes one step an epoch: no batch to size
        lines.append(("batch_size", config.get("batch_size", str(options.batch_size or t.batch_size))))
    lines.append(
        ("epochs", config.get("epochs", str(options.epochs if options.epochs is not None else t.epochs)))
    )
    lines.append(("seed", str(t.seed)))
    if t.patience is not None:
        lines.append(("patience", str(t.patience)))
    if optimizer is not None and optimizer.clip_norm is not None:
        lines.append(("clip_norm", f"{optimizer.clip_norm:g}"))
    data = options.data if options.data else (f"{BUILTIN_PREFIX}{t.data}" if t.data else None)
    comment = ""
    if data is not None and data.startswith(BUILTIN_PREFIX):
        lines.append(("data", data.removeprefix(BUILTIN_PREFIX)))
    elif data is not None:
        comment = f"    # trained on --data {data}\n"
    width = max(len(k) for k, _ in lines)
    body = "".join(f"    {k.ljust(width)} = {v}\n" for k, v in lines)
    return f"train {{\n{body}{comment}}}\n"


def _written_optimizer(model: Model) -> str:
    """The optimizer call as the model's train block writes it (``sgd`` when it gives none)."""
    from dlc.frontend.parser import parse

    for statement in parse(model.source).statements:
        if isinstance(statement, ast.TrainBlock):
            for setting in statement.settings:
                if setting.name.text == "optimizer":
                    span = setting.value.span
                    lines = model.source.split("\n")[span.line - 1 : span.end_line]
                    lines[-1] = lines[-1][: span.end_column - 1]
                    lines[0] = lines[0][span.column - 1 :]
                    return " ".join(line.split("#")[0].strip() for line in lines)
    return "sgd"


def _with_settings(call: str, swept: dict[str, str]) -> str:
    """The optimizer call ``call`` (settings by name, as the language requires) with the ``swept``
    settings written into it."""
    if not swept:
        return call
    line = "optimizer = " + call
    _, (expr,) = parse_sweep_values(line)
    given: dict[str, str] = {}
    if isinstance(expr, ast.Call):
        given = {k.ident.text: written(line, k.value.span) for k in expr.keywords}
        name = expr.func.text
    else:
        assert isinstance(expr, ast.Name)
        name = expr.ident.text
    given.update(swept)
    return f"{name}({', '.join(f'{k} = {v}' for k, v in given.items())})"


__all__ = ["Outcome", "SweepOptions", "run_sweep", "train_block"]
