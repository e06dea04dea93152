"""Where a training run leaves its work, so that no run loses it or spoils the work of another.

A run writes its parameters to P (``--save``) and its history to H (P's name
with ``.history.csv``). The rules:

- Before any work, every file the run may write is checked: its folder
  exists and can be written, it is no folder, pipe or device, and it names
  neither an input (the model file, the data, the plot's source) nor another
  output. A run that could not save is refused before it trains.
- H always belongs to the P beside it: it holds the rows of the run that
  wrote P, for epochs 1..k where k is P's epoch (a run killed between two
  checkpoints may leave a few rows more; a resume drops them). A resumed
  run starts from its checkpoint's history, up to the checkpoint's epoch.
- The run appends one row per epoch, a whole line per write, to a hidden
  file of its own beside H. The first time the run writes P, that file
  becomes H (a second name for it), so from then on H grows epoch by epoch;
  until then the H of the previous P stays as it was.
- A run that diverges (its loss or a parameter stops being finite) is worse
  than any run that did not, so it replaces nothing: P and H are put back as
  they were before it started (a file that was not there is removed again),
  and its last finite epoch goes to ``STEM.diverged.npz`` with
  ``STEM.diverged.history.csv`` beside P.
- A write that fails late (the folder removed, the disk full) does not end
  training: the run goes on, and its parameters and history go to a new
  temporary folder instead, which the result names.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dlc.atomic import check_writable, default_mode, own_temp, replacing
from dlc.errors import DlcError
from dlc.files import same_file
from dlc.train import checkpoint
from dlc.train.history import HEADER, Epoch, row


@dataclass
class Saved:
    """Where a run's work went, and what could not be written where it was asked."""

    params: Path | None = None
    history: Path | None = None
    problems: list[str] = field(default_factory=list)


def diverged_path(path: Path) -> Path:
    """``regression.npz`` -> ``regression.diverged.npz``."""
    return path.with_name(f"{path.stem}.diverged{path.suffix}")


def history_path(path: Path) -> Path:
    """``regression.npz`` -> ``regression.history.csv``."""
    return path.with_name(f"{path.stem}.history.csv")


class RunFiles:
    """The parameters and history files of one run; see the module's rules."""

    def __init__(self, save: Path, history: Path | None, model: str, identity: str) -> None:
        self.save, self.history, self.model, self.identity = save, history, model, identity
        self.diverged = diverged_path(save)
        self.diverged_history = history_path(self.diverged) if history else None
        self.work: Path | None = None  # this run's own history file, beside H
        self.fd: int | None = None
        self.linked = False  # H is a second name of the work file
        self.backups: dict[Path, Path | None] = {}  # target -> its previous file, kept (None: none)
        self.saved = Saved()

    def outputs(self) -> list[tuple[str, Path]]:
        pairs = [("--save", self.save), ("the history", self.history), ("--save", self.diverged)]
        pairs.append(("the history", self.diverged_history))
        return [(label, path) for label, path in pairs if path is not None]

    def check(
        self, inputs: Sequence[tuple[str, str | Path]], others: Sequence[tuple[str, Path]] = ()
    ) -> None:
        """Refuse, before any work, outputs that cannot be written or that name an input or each other.

        Raises:
            DlcError: naming the output and why.
        """
        outputs = [*self.outputs(), *others]
        for i, (label, out) in enumerate(outputs):
            for what, source in inputs:
                if same_file(out, source):
                    raise DlcError(
                        f"{label} {out} would overwrite {what}, {source}",
                        hint="give --save (or --plot) a path of its own, such as MODEL.npz",
                    )
            for other_label, other in outputs[:i]:
                if same_file(out, other):
                    raise DlcError(f"{label} {out} is also {other_label}: one file cannot hold both")
            check_writable(out, label)

    # ---------------------------------------------------------------- history

    def begin(self, earlier: Sequence[str]) -> None:
        """Start this run's history with the rows it continues (epochs 1..k of its checkpoint)."""
        if self.history is None:
            return
        try:
            self.work = own_temp(self.history, ".csv")
            self.work.write_text(HEADER + "".join(earlier), encoding="utf-8")
            default_mode(self.work)
            self.fd = os.open(self.work, os.O_RDWR | os.O_APPEND)
        except OSError as exc:
            self._problem(f"cannot write the history beside {self.history}: {exc.strerror or exc}")

    def append(self, record: Epoch) -> None:
        """Add one epoch's row: one whole line in one write."""
        if self.fd is None:
            return
        data = row(record).encode()
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError as exc:
            self._problem(f"cannot write the history {self.history}: {exc.strerror or exc}")
            os.close(self.fd)
            self.fd = None

    def _copy_history(self, target: Path) -> None:
        """Make ``target`` this run's history: a second name of the work file, or a copy."""
        assert self.work is not None
        tmp = own_temp(target, ".csv")
        try:
            os.unlink(tmp)
            os.link(self.work, tmp)
        except OSError:
            with replacing(target, suffix=".csv") as copy:
                copy.write_bytes(self._history_bytes())
            return
        os.replace(tmp, target)
        if target == self.history:
            self.linked = True

    def _history_bytes(self) -> bytes:
        """The rows so far, read through the open file (its name may be gone with its folder)."""
        if self.fd is None:
            raise OSError("the history could not be kept")
        return os.pread(self.fd, os.fstat(self.fd).st_size, 0)

    # ---------------------------------------------------------------- parameters

    def commit(self, state: checkpoint.Checkpoint) -> bool:
        """Write ``state`` to P and make H its history; False (and a problem noted) if P failed."""
        try:
            self._keep(self.save)
            checkpoint.save(self.save, state, self.model, self.identity)
        except (DlcError, OSError) as exc:
            self._problem(_reason(exc, self.save))
            return False
        self.saved.params = self.save
        if self.history is not None and self.work is not None:
            try:
                if not self.linked:
                    self._keep(self.history)
                    self._copy_history(self.history)
                self.saved.history = self.history
            except (DlcError, OSError) as exc:
                self._problem(_reason(exc, self.history))
        return True

    def _keep(self, target: Path) -> None:
        """Before this run first replaces ``target``, keep its previous file under a hidden name."""
        if target in self.backups:
            return
        if not target.exists():
            self.backups[target] = None
            return
        keep = own_temp(target, ".keep")
        os.unlink(keep)
        try:
            os.link(target, keep)
        except OSError:
            shutil.copy2(target, keep)
        self.backups[target] = keep

    def finish(self, state: checkpoint.Checkpoint | None, diverged: bool) -> Saved:
        """End the run: ``state`` to P (None: nothing new to save), or, if it diverged, beside P."""
        try:
            if diverged and state is not None:
                self._diverged(state)
            elif state is not None and not self.commit(state):
                self._fallback(state)
        finally:
            self._close()
        return self.saved

    def _diverged(self, state: checkpoint.Checkpoint) -> None:
        try:
            checkpoint.save(self.diverged, state, self.model, self.identity)
            self.saved.params = self.diverged
            if self.work is not None and self.diverged_history is not None:
                self._copy_history(self.diverged_history)
                self.saved.history = self.diverged_history
        except (DlcError, OSError) as exc:
            self._problem(_reason(exc, self.diverged))
            self._fallback(state, self.diverged.name)
        for target, keep in self.backups.items():
            with contextlib.suppress(OSError):
                if keep is not None:
                    os.replace(keep, target)
                else:
                    os.unlink(target)
        self.backups.clear()

    def _fallback(self, state: checkpoint.Checkpoint, name: str | None = None) -> None:
        """Save to a new temporary folder when the asked place cannot be written.

        Raises:
            DlcError: if that cannot be written either.
        """
        try:
            folder = Path(tempfile.mkdtemp(prefix="dlc-"))
            params = folder / (name or self.save.name)
            checkpoint.save(params, state, self.model, self.identity)
            self.saved.params, self.saved.history = params, None
            if self.fd is not None and self.history is not None:
                self.saved.history = folder / history_path(params).name
                self.saved.history.write_bytes(self._history_bytes())
        except (DlcError, OSError) as exc:
            problems = "; ".join([*self.saved.problems, _reason(exc, "a temporary folder")])
            raise DlcError(f"the trained parameters could not be saved anywhere: {problems}") from None

    def _close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(self.fd)
            os.close(self.fd)
            self.fd = None
        for keep in [*self.backups.values(), self.work]:
            if keep is not None:
                with contextlib.suppress(OSError):
                    os.unlink(keep)
        self.backups.clear()

    def _problem(self, message: str) -> None:
        if message not in self.saved.problems:
            self.saved.problems.append(message)


def _reason(exc: Exception, path: str | Path | None) -> str:
    if isinstance(exc, DlcError):
        return exc.message
    return f"cannot write {path}: {getattr(exc, 'strerror', None) or exc}"
