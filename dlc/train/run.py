"""Training a model end to end: data, compiled module, epochs, metrics, checkpoints.

:func:`train` drives the generated module's own training loop and reports
through an :class:`Observer` (the command line's progress bar). It never
prints; problems are ``DlcError``. Where the parameters and the history go,
and what a diverging or failing run may replace, is :mod:`dlc.train.outputs`'s
job; metrics are computed in slices of the data, so that a large data set
costs no more memory than a batch of training.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from dlc.compiler import check_memory, compile_source, load_module, out_of_memory
from dlc.errors import DlcError
from dlc.frontend import Model, load_source
from dlc.graph.graph import Graph, TrainConfig
from dlc.train import checkpoint, history
from dlc.train.arrays import Arrays, cast, count, take
from dlc.train.data import BUILTIN_PREFIX, Dataset, load_data
from dlc.train.history import Epoch
from dlc.train.outputs import RunFiles, history_path
from dlc.train.predict import classifier, compared
from dlc.train.threads import training_threads

#: Whole-number settings go up to 2^31, on the command line as in a model file.
MAX_WHOLE = 2**31
#: Arrays the size of the parameters that training holds at once: the parameters, two of
#: optimizer state and the gradient, the update's temporaries, the start of the epoch and
#: the last whole epoch (three each), and the best epoch's with early stopping.
TRAINING_COPIES = 12
#: Values of one slice of the data when computing metrics (bytes of the forward pass).
EVAL_BYTES = 32 << 20

__all__ = [
    "Epoch", "Observer", "Options", "Result", "accuracy", "check", "mean_loss", "settings", "split",
    "train", "training_data",
]  # fmt: skip


@dataclass(frozen=True)
class Options:
    """What the command line (or a caller) asks for; None leaves the model's own setting.

    ``save`` is where the parameters go, ``history`` where the history CSV goes
    (None: nowhere); ``others`` names files the caller will write after the
    run (a plot), checked with the run's own before it starts.
    """

    data: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None  # an optimizer call that replaces the model's, "adam(lr = 3e-4)"
    lr: float | None = None
    momentum: float | None = None
    nesterov: bool | None = None
    seed: int | None = None
    backend: str = "numpy"
    dtype: str = "float64"
    val_split: float = 0.0
    save: Path | None = None
    resume: Path | None = None
    checkpoint_every: int = 0  # epochs between checkpoints; 0: only at the end
    history: Path | None = None
    others: tuple[tuple[str, Path], ...] = ()
    settings: tuple[tuple[str, float], ...] = ()  # any of the optimizer's settings, by name (a sweep's)
    blas_threads: int | None = None  # None: as dlc.train.threads chooses


@dataclass
class Result:
    settings: TrainConfig
    history: list[Epoch] = field(default_factory=list)  # this run's epochs
    earlier: list[Epoch] = field(default_factory=list)  # the epochs before, from the checkpoint's history
    first: int = 0  # epochs done before this run
    seconds: float = 0.0
    saved: Path | None = None
    saved_history: Path | None = None
    problems: list[str] = field(default_factory=list)  # writes that failed, and where the work went
    diverged: str | None = None
    interrupted: bool = False
    blas_threads: int | None = None  # BLAS threads the run used (dlc.train.threads)
    stopped_early: int | None = None  # the epoch whose parameters early stopping kept
    note: str | None = None  # about the checkpoint resumed from


class Observer(Protocol):
    def start(self, first: int, epochs: int, steps: int) -> None: ...
    def step(self, epoch: int, step: int, steps: int, loss: float) -> None: ...
    def epoch(self, record: Epoch) -> None: ...
    def close(self) -> None: ...


def _whole(value: Any, flag: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= MAX_WHOLE:
        raise DlcError(f"{flag} must be a whole number from {low} to 2^31, not {value!r}")


def _real(value: Any, flag: str, ok: bool, bounds: str) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not ok:
        raise DlcError(f"{flag} must be {bounds}, not {value!r}")


def settings(graph: Graph, options: Options) -> TrainConfig:
    """The model's training section with the options' overrides, checked."""
    overrides = {k: getattr(options, k) for k in ("epochs", "batch_size", "seed")}
    t = replace(graph.train, **{k: v for k, v in overrides.items() if v is not None})
    _whole(t.epochs, "--epochs", 0)
    _whole(t.batch_size, "--batch-size", 1)
    _whole(t.seed, "--seed", 0)
    _whole(options.checkpoint_every, "--checkpoint-every", 0)
    _real(options.val_split, "--val-split", 0 <= options.val_split < 1, "at least 0 and less than 1")
    optimizer_overrides(t, options)
    return t


def optimizer_overrides(config: TrainConfig, options: Options) -> dict[str, float]:
    """--lr, --momentum and --nesterov (and a sweep's settings), as settings of the model's optimizer."""
    flags = {"lr": options.lr, "momentum": options.momentum, "nesterov": options.nesterov}
    given: dict[str, float] = {k: float(v) for k, v in options.settings}
    given.update({k: float(v) for k, v in flags.items() if v is not None})
    optimizer = config.optimizer
    names = optimizer.setting_names if optimizer is not None else ()
    for k in given:
        if k not in names:
            raise DlcError(
                f"--{k}: the optimizer {optimizer.name if optimizer else ''} has no setting '{k}'",
                hint=f"its settings are {', '.join(names)}; give them with --optimizer",
            )
    if "lr" in given:
        _real(given["lr"], "--lr", given["lr"] > 0, "greater than 0")
    if "momentum" in given:
        _real(given["momentum"], "--momentum", 0 <= given["momentum"] < 1, "at least 0 and less than 1")
    return given


def train(model: Model, options: Options, observer: Observer | None = None,
          module: ModuleType | None = None) -> Result:  # fmt: skip
    """Train ``model`` as ``options`` say; returns the history and where the parameters went.

    ``module``: the model's module compiled already (for the options' backend and dtype), for
    callers that train it many times (a sweep); by default it is compiled here.

    Raises:
        DlcError: for bad options, data or checkpoints, outputs that cannot be
            written (checked before training), or too little memory.
    """
    if options.optimizer is not None:
        model = load_source(model.source, model.path, optimizer=options.optimizer)
    graph = model.graph
    config = settings(graph, options)
    files = _files(model, options)
    train_set, val_set = _checked_data(graph, options, config)
    if module is None:
        module = load_module(compile_source(model, options.backend, options.dtype), f"dlc_{graph.name}")
    try:
        start = checkpoint.load(options.resume, graph, options.dtype) if options.resume else None
        params = start.params if start else module.init_params(config.seed)
        state = start.state if start else module.init_state(params)
        run = _Run(module, graph, config, options, observer, train_set, val_set, files)
        return run.go(params, state, start)
    except MemoryError:
        raise out_of_memory(graph, options.dtype, "training") from None


def check(model: Model, options: Options) -> None:
    """Raise the DlcError that training ``model`` as ``options`` say would raise before its first step
    (options, data, memory); what a sweep checks once for all its runs."""
    _checked_data(model.graph, options, settings(model.graph, options))


def training_data(graph: Graph, options: Options) -> tuple[TrainConfig, Dataset]:
    """The checked settings, and all the examples ``train`` would use (``split`` holds some out)."""
    config = settings(graph, options)
    _checked_data(graph, options, config)
    return config, _data(graph, options, config)


def _checked_data(graph: Graph, options: Options, config: TrainConfig) -> tuple[Dataset, Dataset | None]:
    if config.patience is not None and options.val_split == 0:
        raise DlcError(
            "early stopping (patience) watches the validation loss, and there is no validation set",
            hint="hold out some examples with --val-split 0.2",
        )
    data = _data(graph, options, config)
    held = split(data, options.val_split, config.seed)
    check_memory(graph, options.dtype, TRAINING_COPIES, "training")
    return held


def _files(model: Model, options: Options) -> RunFiles | None:
    """The run's output files, checked before any work."""
    if options.save is None:
        return None
    files = RunFiles(options.save, options.history, model.graph.name, checkpoint.fingerprint(model.graph))
    inputs: list[tuple[str, str | Path]] = []
    if model.path != "<model>":
        inputs.append(("the model file", model.path))
    if options.data and not options.data.startswith(BUILTIN_PREFIX):
        inputs.append(("the training data", options.data))
    files.check(inputs, options.others)
    return files


def _data(graph: Graph, options: Options, config: TrainConfig) -> Dataset:
    if not graph.data:
        return Dataset(None, None, "(no data)", None)
    source = options.data or (f"builtin:{config.data}" if config.data else None)
    if source is None:
        raise DlcError(
            "no training data",
            hint="give --data FILE.csv|FILE.npz|builtin:NAME, or 'data = NAME' in the model's train block",
        )
    return load_data(source, graph)


def split(data: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset | None]:
    """A seeded random hold-out of ``fraction`` of the examples."""
    if data.X is None or fraction == 0:
        return data, None
    n = count(data.X)
    held = round(n * fraction)
    if held == 0 or held == n:
        raise DlcError(f"--val-split {fraction} leaves {n - held} of {n} examples for training")
    order = np.random.default_rng([seed, 1 << 20]).permutation(n)
    pick = take
    keep, out = order[: n - held], order[n - held :]
    return (
        replace(data, X=pick(data.X, keep), Y=pick(data.Y, keep)),
        replace(data, X=pick(data.X, out), Y=pick(data.Y, out), name=data.name + " (validation)"),
    )


class _Run:
    """One training run's state, so that callbacks can reach it."""

    def __init__(self, module: ModuleType, graph: Graph, config: TrainConfig, options: Options,
                 observer: Observer | None, train_set: Dataset, val_set: Dataset | None,
                 files: RunFiles | None) -> None:  # fmt: skip
        self.module, self.graph, self.config, self.options = module, graph, config, options
        self.observer, self.files = observer, files
        self.result = Result(config)
        self.X, self.Y = cast(train_set.X, options.dtype), cast(train_set.Y, options.dtype)
        self.val = (
            None if val_set is None else (cast(val_set.X, options.dtype), cast(val_set.Y, options.dtype))
        )
        self.rows = eval_rows(graph)

    def go(self, params: dict[str, np.ndarray], state: dict[str, Any],
           start: checkpoint.Checkpoint | None) -> Result:  # fmt: skip
        self.params, self.state = params, state
        first = start.epoch if start else 0
        self.result.first, self.result.note = first, start.note if start else None
        self.good = self._snapshot(first)
        self.best: tuple[float, checkpoint.Checkpoint] | None = None  # early stopping's
        self.waited = 0
        self._begin_history(first)
        n = 1 if self.X is None else count(self.X)
        if self.observer:
            self.observer.start(first, self.config.epochs, -(-n // self.config.batch_size))
        began = time.perf_counter()
        try:
            self._loop(first)
        finally:
            if self.observer:
                self.observer.close()
            self.result.seconds = time.perf_counter() - began
            self._finish(first)
        return self.result

    def _loop(self, first: int) -> None:
        batch = min(self.config.batch_size, 1 if self.X is None else count(self.X))
        try:
            # a diverging run is reported once, not per overflow; BLAS threads as dlc.train.threads says
            with (
                np.errstate(all="ignore"),
                training_threads(self.graph, batch, self.options.blas_threads) as threads,
            ):
                self.result.blas_threads = threads
                self.module.train(
                    self.params, self.X, self.Y, epochs=self.config.epochs, batch_size=self.config.batch_size,
                    seed=self.config.seed, state=self.state, start_epoch=first,
                    callback=self._epoch_done, on_step=self.observer.step if self.observer else None,
                    **optimizer_overrides(self.config, self.options),
                )  # fmt: skip
        except FloatingPointError as exc:
            self.result.diverged = str(exc)
        except KeyboardInterrupt:
            self.result.interrupted = True

    def _begin_history(self, first: int) -> None:
        if self.files is None:
            return
        rows = history.earlier_rows(history_path(self.options.resume), first) if self.options.resume else []
        self.result.earlier = [e for e in map(history.parse, rows) if e is not None]
        self.files.begin(rows)

    def _epoch_done(self, epoch: int, loss: float) -> bool:
        record = Epoch(
            epoch + 1, loss, accuracy(self.graph, self.module, self.params, self.X, self.Y, self.rows)
        )
        if self.val is not None:
            vx, vy = self.val
            record.val_loss = mean_loss(self.module, self.params, vx, vy, self.rows)
            record.val_accuracy = accuracy(self.graph, self.module, self.params, vx, vy, self.rows)
        self.result.history.append(record)
        self.good = self._snapshot(epoch + 1)
        if self.files is not None:
            self.files.append(record)
            every = self.options.checkpoint_every
            if every and (epoch + 1) % every == 0:
                self.files.commit(self.good)
        if self.observer:
            self.observer.epoch(record)
        return self._patient(record)

    def _snapshot(self, epoch: int) -> checkpoint.Checkpoint:
        state = {k: v if k == "step" else _copy(v) for k, v in self.state.items()}
        call = self.config.optimizer.call if self.config.optimizer else ""
        return checkpoint.Checkpoint(_copy(self.params), state, epoch, optimizer=call)

    def _patient(self, record: Epoch) -> bool:
        """Early stopping: False once the validation loss has not improved for ``patience`` epochs."""
        patience = self.config.patience
        if patience is None or record.val_loss is None:
            return True
        if self.best is None or record.val_loss < self.best[0]:
            self.best, self.waited = (record.val_loss, self.good), 0
            return True
        self.waited += 1
        if self.waited < patience:
            return True
        best = self.best[1]  # the best epoch's parameters are what training keeps
        for k, v in best.params.items():
            self.params[k][...] = v
        self.state.update({k: v if k == "step" else _copy(v) for k, v in best.state.items()})
        self.good = best
        self.result.stopped_early = best.epoch
        return False

    def _finish(self, first: int) -> None:
        """Parameters at the end; after a failure or an interrupt, the last whole epoch's, if any."""
        if self.files is None:
            return
        # the end of the last whole epoch (or the best one's, when stopped early): a run that
        # ended normally is there too, since each epoch's end is taken as it comes
        state: checkpoint.Checkpoint | None = self.good
        failed = self.result.diverged is not None or self.result.interrupted
        if failed and self.good.epoch == first:
            state = None  # no epoch of this run finished: nothing new to keep
        saved = self.files.finish(state, diverged=self.result.diverged is not None)
        self.result.saved, self.result.saved_history = saved.params, saved.history
        self.result.problems = saved.problems


def _copy(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in arrays.items()}


def eval_rows(graph: Graph) -> int:
    """How many examples one slice of a metric's pass holds: about EVAL_BYTES of values."""
    per_example = sum(math.prod(n.shape) for n in graph.nodes() if n.batched)
    return max(1, EVAL_BYTES // (8 * max(per_example, 1)))


def accuracy(graph: Graph, module: ModuleType, params: dict[str, Any], X: Arrays, Y: Arrays,
             rows: int | None = None) -> float | None:  # fmt: skip
    """The fraction of examples classified right, for classifiers with a declared output.

    The examples are predicted ``rows`` at a time (default: :func:`eval_rows`).
    """
    pair = classifier(graph)
    if pair is None or X is None or Y is None or count(X) == 0:
        return None
    name, target = pair
    rows = rows or eval_rows(graph)
    right = 0
    for s in range(0, count(X), rows):
        part = slice(s, s + rows)
        out = module.predict(params, take(X, part))
        y = take(Y, part)
        assert y is not None
        found = compared(graph, out[name] if graph.named_outputs else out,
                         y[target.name] if isinstance(y, dict) else y, target)  # fmt: skip
        if found is None:
            return None
        right += int(np.count_nonzero(found[0] == found[1]))
    return right / count(X)


def mean_loss(module: ModuleType, params: dict[str, Any], X: Arrays, Y: Arrays, rows: int) -> float:
    """The loss over all examples (a mean over the batch), computed ``rows`` examples at a time."""
    total, n = 0.0, count(X) or count(Y)
    for s in range(0, n, rows):
        part = slice(s, s + rows)
        total += float(module.loss(params, take(X, part), take(Y, part))) * min(rows, n - s)
    return total / n
