"""Training a model end to end: data, compiled module, epochs, metrics, checkpoints.

:func:`train` drives the generated module's own training loop and reports
through an :class:`Observer` (the command line's progress bar). It never
prints; problems are ``DlcError``; a diverging run ends with the last good
parameters saved and ``Result.diverged`` set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from dlc.compiler import compile_source, load_module
from dlc.errors import DlcError
from dlc.frontend import Model
from dlc.graph.graph import Graph, TrainConfig
from dlc.train import checkpoint
from dlc.train.data import Dataset, load_data
from dlc.train.predict import class_labels, target_labels


@dataclass(frozen=True)
class Options:
    """What the command line (or a caller) asks for; None leaves the model's own setting."""

    data: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
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


@dataclass
class Epoch:
    epoch: int  # 1-based, as people count
    loss: float
    accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None


@dataclass
class Result:
    settings: TrainConfig
    history: list[Epoch] = field(default_factory=list)
    seconds: float = 0.0
    saved: Path | None = None
    diverged: str | None = None
    interrupted: bool = False


class Observer(Protocol):
    def start(self, first: int, epochs: int, steps: int) -> None: ...
    def step(self, epoch: int, step: int, steps: int, loss: float) -> None: ...
    def epoch(self, record: Epoch) -> None: ...
    def close(self) -> None: ...


def settings(graph: Graph, options: Options) -> TrainConfig:
    """The model's training section with the options' overrides, checked."""
    t = graph.train
    overrides = {
        k: getattr(options, k) for k in ("epochs", "batch_size", "lr", "momentum", "nesterov", "seed")
    }
    t = replace(t, **{k: v for k, v in overrides.items() if v is not None})
    checks = [
        (t.epochs >= 0, "--epochs must be 0 or more"),
        (t.batch_size >= 1, "--batch-size must be at least 1"),
        (t.lr > 0, "--lr must be greater than 0"),
        (0 <= t.momentum < 1, "--momentum must be at least 0 and less than 1"),
        (t.seed >= 0, "--seed must be 0 or more"),
        (0 <= options.val_split < 1, "--val-split must be at least 0 and less than 1"),
        (options.checkpoint_every >= 0, "--checkpoint-every must be 0 or more"),
    ]
    for ok, message in checks:
        if not ok:
            raise DlcError(message)
    return t


def train(model: Model, options: Options, observer: Observer | None = None) -> Result:
    """Train ``model`` as ``options`` say; returns the history and where the parameters went.

    Raises:
        DlcError: for bad options, data or checkpoints.
    """
    graph = model.graph
    config = settings(graph, options)
    data = _data(graph, options, config)
    train_set, val_set = _split(data, options.val_split, config.seed)
    module = load_module(compile_source(model, options.backend, options.dtype), f"dlc_{graph.name}")
    start = checkpoint.load(options.resume, graph, options.dtype) if options.resume else None
    params = start.params if start else module.init_params(config.seed)
    velocity = start.velocity if start else {k: np.zeros_like(v) for k, v in params.items()}
    run = _Run(module, graph, config, options, observer, train_set, val_set, params, velocity)
    return run.go(start.epoch if start else 0)


def _data(graph: Graph, options: Options, config: TrainConfig) -> Dataset:
    if graph.input is None and graph.target is None:
        return Dataset(None, None, "(no data)", None)
    source = options.data or (f"builtin:{config.data}" if config.data else None)
    if source is None:
        raise DlcError(
            "no training data",
            hint="give --data FILE.csv|FILE.npz|builtin:NAME, or 'data = NAME' in the model's train block",
        )
    return load_data(source, graph)


def _split(data: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset | None]:
    """A seeded random hold-out of ``fraction`` of the examples."""
    if data.X is None or fraction == 0:
        return data, None
    n = len(data.X)
    held = round(n * fraction)
    if held == 0 or held == n:
        raise DlcError(f"--val-split {fraction} leaves {n - held} of {n} examples for training")
    order = np.random.default_rng([seed, 1 << 20]).permutation(n)
    pick = lambda a, idx: None if a is None else a[idx]  # noqa: E731
    keep, out = order[: n - held], order[n - held :]
    return (
        replace(data, X=pick(data.X, keep), Y=pick(data.Y, keep)),
        replace(data, X=pick(data.X, out), Y=pick(data.Y, out), name=data.name + " (validation)"),
    )


class _Run:
    """One training run's state, so that callbacks can reach it."""

    def __init__(self, module: ModuleType, graph: Graph, config: TrainConfig, options: Options,
                 observer: Observer | None, train_set: Dataset, val_set: Dataset | None,
                 params: dict[str, np.ndarray], velocity: dict[str, np.ndarray]) -> None:  # fmt: skip
        self.module, self.graph, self.config, self.options = module, graph, config, options
        self.observer, self.train_set, self.val_set = observer, train_set, val_set
        self.params, self.velocity = params, velocity
        self.result = Result(config)
        self.good = checkpoint.Checkpoint(_copy(params), _copy(velocity), 0)
        dtype = np.dtype(options.dtype)
        self.X = None if train_set.X is None else train_set.X.astype(dtype)
        self.Y = None if train_set.Y is None else train_set.Y.astype(dtype)

    def go(self, first: int) -> Result:
        self.good.epoch = first
        n = 1 if self.X is None else len(self.X)
        if self.observer:
            self.observer.start(first, self.config.epochs, -(-n // self.config.batch_size))
        began = time.perf_counter()
        try:
            with np.errstate(all="ignore"):  # a diverging run is reported once, not per overflow
                self.module.train(
                    self.params, self.X, self.Y, epochs=self.config.epochs, batch_size=self.config.batch_size,
                    lr=self.config.lr, momentum=self.config.momentum, nesterov=self.config.nesterov,
                    seed=self.config.seed, velocity=self.velocity, start_epoch=first,
                    callback=self._epoch_done, on_step=self.observer.step if self.observer else None,
                )  # fmt: skip
        except FloatingPointError as exc:
            self.result.diverged = str(exc)
        except KeyboardInterrupt:
            self.result.interrupted = True
        finally:
            if self.observer:
                self.observer.close()
        self.result.seconds = time.perf_counter() - began
        self._save_final()
        return self.result

    def _epoch_done(self, epoch: int, loss: float) -> bool:
        record = Epoch(epoch + 1, loss, accuracy(self.graph, self.module, self.params, self.X, self.Y))
        if self.val_set is not None:
            vx, vy = (a.astype(self.options.dtype) for a in (self.val_set.X, self.val_set.Y))  # type: ignore[union-attr]
            record.val_loss = float(self.module.loss(self.params, vx, vy))
            record.val_accuracy = accuracy(self.graph, self.module, self.params, vx, vy)
        self.result.history.append(record)
        self.good = checkpoint.Checkpoint(_copy(self.params), _copy(self.velocity), epoch + 1)
        every = self.options.checkpoint_every
        if self.options.save and every and (epoch + 1) % every == 0:
            checkpoint.save(self.options.save, self.good, self.graph.name)
        if self.observer:
            self.observer.epoch(record)
        return True

    def _save_final(self) -> None:
        """Parameters at the end; after a failure or an interrupt, the last whole epoch's."""
        if self.options.save is None:
            return
        final = self.good
        if self.result.diverged is None and not self.result.interrupted:
            final = checkpoint.Checkpoint(self.params, self.velocity, self.config.epochs)
        checkpoint.save(self.options.save, final, self.graph.name)
        self.result.saved = self.options.save


def _copy(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in arrays.items()}


def accuracy(graph: Graph, module: ModuleType, params: dict[str, Any], X: Any, Y: Any) -> float | None:
    """The fraction of examples classified right, for classifiers with a declared output."""
    if graph.output is None or X is None or Y is None:
        return None
    predicted = class_labels(graph, module.predict(params, X))
    if predicted is None:
        return None
    return float(np.mean(predicted == target_labels(graph, Y)))
