"""The progress bar of ``dlc train`` (tqdm): per epoch, and per batch when epochs are long."""

from __future__ import annotations

from typing import Any, TextIO

from dlc.train.run import Epoch

#: With more steps than this in an epoch, the bar also moves during the epoch.
LONG_EPOCH = 20


class Progress:
    """An Observer that draws one tqdm bar over all epochs (or all steps, for long epochs)."""

    def __init__(self, file: TextIO, enabled: bool) -> None:
        self.file, self.enabled = file, enabled
        self.bar: Any = None
        self.per_step = False

    def start(self, first: int, epochs: int, steps: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        self.per_step = steps > LONG_EPOCH
        total = max(epochs - first, 0) * (steps if self.per_step else 1)
        self.bar = tqdm(total=total, file=self.file, unit="step" if self.per_step else "epoch", leave=True,
                        dynamic_ncols=True)  # fmt: skip

    def step(self, epoch: int, step: int, steps: int, loss: float) -> None:
        if self.bar is not None and self.per_step:
            self.bar.update(1)
            if step % 10 == 0:
                self.bar.set_description(f"epoch {epoch + 1}")

    def epoch(self, record: Epoch) -> None:
        if self.bar is None:
            return
        shown = {"loss": f"{record.loss:.4g}"}
        for key in ("accuracy", "val_loss", "val_accuracy"):
            value = getattr(record, key)
            if value is not None:
                shown[key.replace("accuracy", "acc")] = f"{value:.4g}"
        self.bar.set_postfix(shown, refresh=False)
        if not self.per_step:
            self.bar.set_description(f"epoch {record.epoch}")
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
