"""One model training live: the parameters, the optimizer's state, the controls, the history.

Everything that changes the parameters runs on the session's own trainer
thread, in the order the commands came (:meth:`Session.command`), so that
the page's buttons never race the training. Playing runs whole epochs in
the compiled module's own loop (``train``), as fast as ``dlc train``, and
stops between two epochs when a command waits; a single step, and the rest
of an epoch begun by steps, run one ``train_step`` at a time on the same
examples ``train`` would take (each epoch's permutation comes from
(seed, epoch)), so that stepping and playing make the same run.

A frame's view of the parameters is a copy taken between two steps or
epochs (:meth:`Session.snapshot`), at most ``1 / MAX_FPS`` apart while
playing.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

import numpy as np

from dlc.compiler import compile_source, load_module, out_of_memory
from dlc.errors import DlcError
from dlc.frontend import Model, load_source
from dlc.frontend.optimizers import out_of_bounds
from dlc.graph.optimizer import Optimizer
from dlc.train.arrays import Arrays, cast, count, take
from dlc.train.history import Epoch
from dlc.train.run import Options, accuracy, eval_rows, mean_loss, split, training_data
from dlc.train.threads import training_threads

#: Frames per second at most while playing: a copy of the parameters this often.
MAX_FPS = 30
#: Seconds: an epoch longer than this is played step by step, so that the page's buttons act at once.
SLOW_EPOCH = 0.2


@dataclass
class Snapshot:
    """The parameters between two steps, and where training is."""

    params: dict[str, np.ndarray]
    epoch: int
    step: int
    steps: int
    loss: float | None
    playing: bool
    generation: int  # grows at each reset: a page clears its chart
    history: list[Epoch] = field(default_factory=list)  # append-only: read history[:epochs_recorded]
    path: list[tuple[float, ...]] = field(default_factory=list)  # the parameters' path, two-number models
    recorded: int = 0  # len(history) when taken
    points: int = 0  # len(path) when taken
    error: str | None = None
    taken: int = 0  # steps since the start of the run
    version: int = 0  # grows with each snapshot


@dataclass(frozen=True)
class Controls:
    """What the page's controls set: the optimizer call's name, settings, batch size, seed."""

    optimizer: str
    settings: dict[str, float]
    batch_size: int
    seed: int
    epochs: int

    def as_json(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer, "settings": dict(self.settings), "batch_size": self.batch_size,
                "seed": self.seed, "epochs": self.epochs}  # fmt: skip


class Session:
    """The model's run; :meth:`command` queues what the page asks for, :meth:`snapshot` reads it."""

    def __init__(self, model: Model, data: str | None = None, backend: str = "numpy",
                 dtype: str = "float64", val_split: float = 0.0) -> None:  # fmt: skip
        self.model, self.backend, self.dtype = model, backend, dtype
        self.graph = model.graph
        options = Options(data=data, backend=backend, dtype=dtype, val_split=val_split)
        config, self.data = training_data(self.graph, options)
        self.val_split = val_split
        self.data_name = None if self.data.X is None and self.data.Y is None else self.data.name
        self._hold_out(config.seed)
        self.rows = eval_rows(self.graph)
        optimizer = config.optimizer
        assert optimizer is not None  # the front end always chooses one
        self.modules: dict[str, ModuleType] = {}
        self.optimizers: dict[str, Optimizer | None] = {}
        self.module = self._module(model, optimizer.call)
        defaults = dict(self.module.SETTINGS or {})
        self.controls = Controls(optimizer.name, {k: float(v) for k, v in defaults.items() if v is not None},
                                 config.batch_size, config.seed, config.epochs)  # fmt: skip
        self.call = optimizer.call
        self.two_numbers = _two_numbers(self.graph)
        self.commands: queue.Queue[tuple[str, Any, threading.Event | None, list[Any]]] = queue.Queue()
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # notified when a new snapshot is there
        self.generation = self.version = 0
        self.playing = self.slow = self.closed = False
        self.until = 0  # the epoch where playing stops
        self.error: str | None = None
        self.params: dict[str, np.ndarray] = {}
        self.state: dict[str, Any] = {}
        self.epoch = self.row = self.step_in_epoch = self.taken = 0
        self.epoch_sum = 0.0
        self.order: np.ndarray | None = None
        self.loss: float | None = None
        self.history: list[Epoch] = []
        self.path: list[tuple[float, ...]] = []
        self._reset()
        self._publish()
        self.thread = threading.Thread(target=self._serve, name="dlc-play-trainer", daemon=True)
        self.thread.start()

    # --- what other threads call

    def command(self, action: str, argument: Any = None, wait: bool = True) -> Any:
        """Queue ``action`` (play, pause, step, epoch, reset, settings) for the trainer thread.

        With ``wait``, returns its result once done (or raises its DlcError).

        Raises:
            DlcError: for a refused command, or when the session is closed.
        """
        if self.closed:
            raise DlcError("this page's training has stopped (its server was stopped)")
        done = threading.Event() if wait else None
        answer: list[Any] = []
        self.commands.put((action, argument, done, answer))
        if done is None:
            return None
        while not done.wait(0.25):
            if self.closed or not self.thread.is_alive():
                raise DlcError("this page's training has stopped (its server was stopped)")
        if answer and isinstance(answer[0], DlcError):
            raise answer[0]
        return answer[0] if answer else None

    def snapshot(self, after: int = -1, timeout: float | None = None) -> Snapshot:
        """The latest snapshot; with ``after``, waits (up to ``timeout``) for one newer than that version."""
        with self.changed:
            if after >= 0:
                self.changed.wait_for(lambda: self.version > after, timeout)
            return self.latest

    def close(self) -> None:
        """Stop the trainer thread at its next step or command; commands waiting are refused."""
        self.closed = True
        self.commands.put(("stop", None, None, []))

    # --- the trainer thread

    def _serve(self) -> None:
        while not self.closed:
            if self.playing and self.commands.empty():
                self._guarded(self._play)
                self._publish()
                continue
            action, argument, done, answer = self.commands.get()
            if action == "stop" or self.closed:
                return
            try:
                answer.append(self._do(action, argument))
            except DlcError as err:
                answer.append(err)
            except MemoryError:
                answer.append(out_of_memory(self.graph, self.dtype, "training"))
            except Exception as err:  # the page shows it; the session goes on
                answer.append(DlcError(f"{type(err).__name__}: {err}"))
            self._publish()
            if done:
                done.set()

    def _do(self, action: str, argument: Any) -> Any:
        if action == "play":
            # to the end of the train block's epochs, or as many more after it
            budget = self.controls.epochs or 1
            self.until = (self.epoch // budget + 1) * budget
            self.playing, self.error = True, None
        elif action == "pause":
            self.playing = False
        elif action == "step":
            self.playing = False
            self._guarded(self._step)
        elif action == "epoch":
            self.playing = False
            self._guarded(self._finish_epoch if self.row else lambda: self._epochs(1))
        elif action == "reset":
            self.playing = False
            self._reset()
        elif action == "settings":
            return self._settings(argument)
        else:
            raise DlcError(
                f"unknown action {action!r}", hint="the actions are play, pause, step, epoch, reset"
            )
        return None

    def _guarded(self, work: Callable[[], None]) -> None:
        """Run ``work``; whatever stops it (a loss that is not finite, an optimizer's number that is not,
        too little memory) pauses the run and is shown on the page, not raised."""
        self.error = None
        try:
            with np.errstate(all="ignore"), training_threads(self.graph, self._batch()):
                work()
        except (FloatingPointError, ValueError) as err:
            self.playing, self.error = False, f"training stopped: {err}"
        except MemoryError:
            message = out_of_memory(self.graph, self.dtype, "training").message
            self.playing, self.error = False, f"training stopped: {message} (try a smaller batch size)"
        except Exception as err:  # the trainer thread must outlive any one step
            self.playing, self.error = False, f"training stopped: {type(err).__name__}: {err}"

    def _play(self) -> None:
        """Train until a command waits: whole epochs in the module's loop, or steps when an epoch
        has begun by steps or takes longer than ``SLOW_EPOCH`` (so that a command waits one step)."""
        if self.row or self.slow:
            self._stepping()
        else:
            self._epochs(None)

    def _stepping(self) -> None:
        published = time.perf_counter()
        while self.commands.empty() and not self.closed:
            self._step()
            now = time.perf_counter()
            if now - published >= 1 / MAX_FPS:
                published = now
                self._publish()
            if self.row == 0 and self.epoch >= self.until:
                self.playing = False
            if self.row == 0 and (not self.slow or not self.playing):
                return

    # --- training

    def _batch(self) -> int:
        return min(self.controls.batch_size, self.n)

    def _settings_now(self) -> dict[str, float]:
        return dict(self.controls.settings)

    def _epochs(self, count_: int | None) -> None:
        """Whole epochs in the module's loop: ``count_`` of them, or until a command waits."""
        last = [time.perf_counter()] * 2  # the last snapshot, the last epoch's end
        first = self.epoch

        def after(epoch: int, loss: float) -> bool:
            now = time.perf_counter()
            self.slow = now - last[1] > SLOW_EPOCH
            self.epoch, self.taken = epoch + 1, self.taken + self._steps()
            self._record(epoch + 1, loss)
            self.loss = loss
            if now - last[0] >= 1 / MAX_FPS:
                last[0] = now
                self._publish()
            last[1] = time.perf_counter()
            more = count_ is None or self.epoch - first < count_
            return self.commands.empty() and more and not (self.slow and count_ is None) and not self.closed

        if count_ is None and self.epoch >= self.until:
            self.playing = False
            return
        epochs = self.epoch + count_ if count_ is not None else self.until
        self.module.train(self.params, self.X, self.Y, epochs=epochs, start_epoch=self.epoch,
                          batch_size=self.controls.batch_size, seed=self.controls.seed, state=self.state,
                          callback=after, **self._settings_now())  # fmt: skip
        if count_ is None and self.epoch >= self.until:
            self.playing = False

    def _finish_epoch(self) -> None:
        while self.row and (not self.playing or self.commands.empty()):
            self._step()

    def _steps(self) -> int:
        return -(-self.n // self._batch())

    def _step(self) -> None:
        """One step of the optimizer on the next batch of this epoch's order."""
        if self.order is None:
            self.order = np.random.default_rng([self.controls.seed, self.epoch]).permutation(self.n)
        rows = self.order[self.row : self.row + self._batch()]
        x = None if self.X is None else take(self.X, rows)
        y = None if self.Y is None else take(self.Y, rows)
        loss = self.module.train_step(self.params, self.state, x, y, epoch=self.epoch, **self._settings_now())
        self.loss, self.taken = loss, self.taken + 1
        self.row += len(rows)
        self.step_in_epoch += 1
        self.epoch_sum += loss * len(rows)
        self._walk()
        if self.row >= self.n:
            self.epoch += 1
            self._record(self.epoch, self.epoch_sum / self.n)
            self.row, self.order, self.step_in_epoch, self.epoch_sum = 0, None, 0, 0.0

    def _record(self, epoch: int, loss: float) -> None:
        record = Epoch(epoch, loss, accuracy(self.graph, self.module, self.params, self.X, self.Y, self.rows))
        if self.val is not None:
            vx, vy = self.val
            record.val_loss = mean_loss(self.module, self.params, vx, vy, self.rows)
            record.val_accuracy = accuracy(self.graph, self.module, self.params, vx, vy, self.rows)
        self.history.append(record)
        self._walk()

    def _walk(self) -> None:
        """The path of a two-number model grows by the point where training is, if it moved."""
        if not self.two_numbers:
            return
        point = self._point()
        last = self.path[-1]
        if max(abs(a - b) / (1 + abs(b)) for a, b in zip(point, last, strict=True)) > 1e-4:
            self.path.append(point)

    def _point(self) -> tuple[float, ...]:
        return tuple(float(v) for a in self.params.values() for v in np.ravel(a))

    def _hold_out(self, seed: int) -> None:
        """The training and validation examples for ``seed``, as ``dlc train --seed`` holds them out."""
        train_set, val_set = split(self.data, self.val_split, seed)
        self.X: Arrays = cast(train_set.X, self.dtype)
        self.Y: Arrays = cast(train_set.Y, self.dtype)
        self.val = None if val_set is None else (cast(val_set.X, self.dtype), cast(val_set.Y, self.dtype))
        self.n = 1 if self.X is None and self.Y is None else count(self.X if self.X is not None else self.Y)
        self.held_out_with = seed

    def _reset(self) -> None:
        if self.held_out_with != self.controls.seed:  # a new seed holds out other examples
            self._hold_out(self.controls.seed)
        self.params = self.module.init_params(self.controls.seed)
        self.state = self.module.init_state(self.params)
        self.epoch = self.row = self.step_in_epoch = self.taken = 0
        self.epoch_sum = 0.0
        self.order, self.loss, self.history = None, None, []
        self.path = [self._point()] if self.two_numbers else []
        self.generation += 1
        self.error = None

    def _publish(self) -> None:
        shot = Snapshot(
            params={k: v.copy() for k, v in self.params.items()}, epoch=self.epoch, step=self.step_in_epoch,
            steps=self._steps(), loss=self.loss, playing=self.playing, generation=self.generation,
            history=self.history, path=self.path, error=self.error, taken=self.taken,
            recorded=len(self.history), points=len(self.path),
        )  # fmt: skip
        with self.changed:
            self.version += 1
            shot.version = self.version
            self.latest = shot
            self.changed.notify_all()

    # --- the controls

    def _settings(self, asked: dict[str, Any]) -> dict[str, Any]:
        """Check and apply what the page's controls ask; the next step uses it."""
        if not isinstance(asked, dict):
            raise DlcError("the settings are a JSON object")
        unknown = set(asked) - {"optimizer", "settings", "batch_size", "seed"}
        if unknown:
            raise DlcError(f"unknown control {sorted(unknown)[0]!r}",
                           hint="the controls are optimizer, settings, batch_size and seed")  # fmt: skip
        batch_size = _whole(asked.get("batch_size", self.controls.batch_size), "batch_size", 1)
        seed = _whole(asked.get("seed", self.controls.seed), "seed", 0)
        name = asked.get("optimizer", self.controls.optimizer)
        values = asked.get("settings", {})
        if not isinstance(values, dict) or not all(isinstance(k, str) for k in values):
            raise DlcError('settings are an object of numbers by name, as {"lr": 0.1}')
        module = self.module
        settings = dict(self.controls.settings) if name == self.controls.optimizer else {}
        if name != self.controls.optimizer:
            if not isinstance(name, str) or not name.isidentifier():
                raise DlcError(f"not an optimizer's name: {name!r}")
            own = self.graph.train.optimizer
            # the model's own optimizer comes back with the model's settings, another with its defaults
            module = self._module(self.model, own.call if own is not None and own.name == name else name)
            settings = {k: float(v) for k, v in (module.SETTINGS or {}).items() if v is not None}
        for k, v in values.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise DlcError(f"{k} must be a finite number, not {v!r}")
            settings[k] = float(v)
        _check_settings(module, settings)
        if module is not self.module:
            self.module, self.state = module, module.init_state(self.params)
        if seed != self.controls.seed and self.row == 0:
            self.order = None
        self.controls = replace(self.controls, optimizer=name, settings=settings, batch_size=batch_size,
                                seed=seed)  # fmt: skip
        return self.controls.as_json()

    def _module(self, model: Model, call: str) -> ModuleType:
        """The module of ``model`` with the optimizer ``call`` (compiled once per call); its optimizer
        (the formulas of its update) is kept in ``optimizers`` under the module's OPTIMIZER."""
        if call not in self.modules:
            if call != (model.graph.train.optimizer.call if model.graph.train.optimizer else None):
                model = load_source(model.source, model.path, optimizer=call)
            source = compile_source(model, self.backend, self.dtype)
            module = load_module(source, f"dlc_play_{model.graph.name}")
            self.modules[call], self.optimizers[module.OPTIMIZER] = module, model.graph.train.optimizer
        return self.modules[call]

    @property
    def optimizer(self) -> Optimizer:
        """The optimizer of the module in use: its settings, numbers per step and update."""
        chosen = self.optimizers[self.module.OPTIMIZER]
        assert chosen is not None  # the front end always chooses one
        return chosen


def _whole(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 2**31:
        raise DlcError(f"{name} must be a whole number from {low} to 2^31, not {value!r}")
    return value


def _check_settings(module: ModuleType, settings: dict[str, float]) -> None:
    """The settings' names and bounds, as ``dlc train`` checks them (lr > 0, 0 <= momentum < 1, ...)."""
    names = tuple(module.SETTINGS or ())
    for k in settings:
        if k not in names:
            raise DlcError(
                f"{module.OPTIMIZER} has no setting '{k}'", hint=f"its settings are {', '.join(names)}"
            )
    for k, v in settings.items():
        words = out_of_bounds(k, v)
        if words is not None:
            raise DlcError(f"{k} must be {words}, not {v!r}")


def _two_numbers(graph: Any) -> bool:
    """Whether the parameters are two numbers in all: a loss surface to draw."""
    return sum(math.prod(p.shape) for p in graph.params) == 2


__all__ = ["MAX_FPS", "Controls", "Session", "Snapshot"]
