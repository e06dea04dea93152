"""What a training run leaves behind: its history as CSV, a plot, a summary line, JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dlc.atomic import replacing
from dlc.errors import DlcError
from dlc.train.history import HEADER, Epoch, row
from dlc.train.run import Result


def history_csv(history: list[Epoch]) -> str:
    """A whole history as CSV text (the file a run writes row by row, see :mod:`dlc.train.history`)."""
    return HEADER + "".join(map(row, history))


def pyplot() -> Any:
    """matplotlib's pyplot, drawing to files only.

    Raises:
        DlcError: if matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise DlcError("--plot needs matplotlib", hint='pip install "dlc[plot]"') from None
    return plt


def save_figure(fig: Any, path: Path) -> None:
    """Write ``fig`` to ``path`` as a PNG, atomically, and let it go."""
    with replacing(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    fig.clf()
    pyplot().close(fig)


def plot(path: Path, history: list[Epoch], title: str) -> None:
    """Loss (and accuracy, for classifiers) per epoch, as a PNG.

    Raises:
        DlcError: if matplotlib is not installed.
    """
    plt = pyplot()
    epochs = [e.epoch for e in history]
    has_acc = any(e.accuracy is not None for e in history)
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(10 if has_acc else 5.5, 4))
    axes = axes if has_acc else [axes]
    axes[0].plot(epochs, [e.loss for e in history], label="training")
    if any(e.val_loss is not None for e in history):
        axes[0].plot(epochs, [e.val_loss for e in history], label="validation")
    axes[0].set(xlabel="epoch", ylabel="loss", title=f"{title}: loss")
    axes[0].legend()
    if has_acc:
        axes[1].plot(epochs, [e.accuracy for e in history], label="training")
        if any(e.val_accuracy is not None for e in history):
            axes[1].plot(epochs, [e.val_accuracy for e in history], label="validation")
        axes[1].set(xlabel="epoch", ylabel="accuracy", title=f"{title}: accuracy", ylim=(0, 1.02))
        axes[1].legend()
    fig.tight_layout()
    save_figure(fig, path)


def summary(result: Result) -> dict[str, Any]:
    """The run in one JSON-ready object; ``epochs`` is the epoch reached, ``ran`` those of this run."""
    whole = [*result.earlier, *result.history]
    last = whole[-1] if whole else None
    return {
        "epochs": result.first + len(result.history),
        "ran": len(result.history),
        "final_loss": last.loss if last else None,
        "train_accuracy": last.accuracy if last else None,
        "val_loss": last.val_loss if last else None,
        "val_accuracy": last.val_accuracy if last else None,
        "seconds": round(result.seconds, 4),
        "saved": str(result.saved) if result.saved else None,
        "history": str(result.saved_history) if result.saved_history else None,
        "problems": result.problems,
        "diverged": result.diverged,
        "interrupted": result.interrupted,
    }


def summary_line(result: Result) -> str:
    s = summary(result)
    ran, plural = s["ran"], "" if s["ran"] == 1 else "s"
    since = f" (epoch{plural} {result.first + 1}{'' if ran == 1 else ' to ' + str(s['epochs'])})"
    parts = [
        f"{ran} epoch{plural}{since if result.first and ran else ''} in {s['seconds']:.2f} s",
        f"loss {s['final_loss']:.4g}" if s["final_loss"] is not None else "",
    ]
    for key, label in (
        ("train_accuracy", "accuracy"),
        ("val_loss", "val_loss"),
        ("val_accuracy", "val_accuracy"),
    ):
        if s[key] is not None:
            parts.append(f"{label} {s[key]:.4g}")
    return ", ".join(p for p in parts if p)


def to_json(result: Result) -> str:
    return json.dumps(summary(result), sort_keys=True)
