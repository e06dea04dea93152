"""The history of a training run: one CSV row per epoch, written as the run goes.

``epoch,loss,accuracy,val_loss,val_accuracy``; a value a model has not (a
regression's accuracy) is empty. Rows are appended one whole line per write,
so a run killed in the middle leaves at most a last line without its newline,
which :func:`earlier_rows` drops.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dlc.errors import DlcError
from dlc.files import open_regular

COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")
HEADER = ",".join(COLUMNS) + "\n"


@dataclass
class Epoch:
    epoch: int  # 1-based, as people count
    loss: float
    accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None


def row(record: Epoch) -> str:
    """The CSV line of one epoch, newline included."""
    return ",".join("" if getattr(record, c) is None else repr(getattr(record, c)) for c in COLUMNS) + "\n"


def parse(line: str) -> Epoch | None:
    """The epoch of one CSV line, or None if it is not a whole row of dlc's form."""
    fields = line.rstrip("\r\n").split(",")
    if not line.endswith("\n") or len(fields) != len(COLUMNS) or not fields[0].isdigit():
        return None
    try:
        values = [float(f) if f else None for f in fields[1:]]
    except ValueError:
        return None
    if values[0] is None:
        return None
    return Epoch(int(fields[0]), values[0], *values[1:])


def earlier_rows(path: Path, last: int) -> list[str]:
    """The rows of the history at ``path`` for epochs 1..``last``, in order.

    A missing or unreadable file, or one that is not a dlc history, gives none;
    reading stops at a line that is not a whole row (the writer was killed
    there) or whose epoch does not follow the one before.
    """
    kept: list[str] = []
    try:
        with open_regular(path) as f:
            if f.readline() != HEADER.encode():
                return kept
            previous = 0
            for raw in f:
                line = raw.decode("utf-8", errors="replace")
                record = parse(line)
                if record is None or not previous < record.epoch <= last:
                    break
                kept.append(line)
                previous = record.epoch
    except (DlcError, OSError):
        return []
    return kept
