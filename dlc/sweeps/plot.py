"""``dlc sweep --plot``: every run's loss curve, and a heat map when the grid has two numeric axes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlc.sweeps.results import Row
from dlc.train.report import pyplot, save_figure


def heat_axes(rows: Sequence[Row], names: Sequence[str]) -> tuple[str, str] | None:
    """The two swept settings a heat map is drawn over: the grid's two axes, if both are numbers."""
    if len(names) != 2 or "optimizer" in names:
        return None
    return names[0], names[1]


def plot(path: Path, rows: Sequence[Row], names: Sequence[str], histories: dict[str, list[list[Any]]],
         title: str) -> None:  # fmt: skip
    """Draw the figure to ``path`` (PNG).

    Raises:
        DlcError: if matplotlib is not installed.
    """
    plt = pyplot()
    heat = heat_axes(rows, names)
    fig, axes = plt.subplots(1, 2 if heat else 1, figsize=(12 if heat else 6.5, 4.6))
    curves = axes[0] if heat else axes
    _curves(curves, rows, histories, plt)
    curves.set(xlabel="epoch", ylabel="training loss", title=f"{title}: every run")
    if heat:
        _heat(fig, axes[1], rows, heat)
    fig.tight_layout()
    save_figure(fig, path)


def _curves(ax: Any, rows: Sequence[Row], histories: dict[str, list[list[Any]]], plt: Any) -> None:
    colours = plt.get_cmap("viridis")
    positive = True
    for i, row in enumerate(rows):
        colour = colours(i / max(1, len(rows) - 1))
        label = ", ".join(f"{n} = {v}" for n, v in row.config) or "the model's settings"
        for j, run in enumerate(row.runs):
            history = histories.get(run["key"]) or []
            losses = [h[1] for h in history]
            positive = positive and all(isinstance(v, float) and v > 0 for v in losses)
            ax.plot([h[0] for h in history], losses, color=colour, lw=1, alpha=0.8,
                    label=label if j == 0 and len(rows) <= 12 else None)  # fmt: skip
    if positive:
        ax.set_yscale("log")
    if len(rows) <= 12 and rows:
        ax.legend(fontsize=7)


def _heat(fig: Any, ax: Any, rows: Sequence[Row], heat: tuple[str, str]) -> None:
    import numpy as np

    first, second = heat
    xs = list(dict.fromkeys(dict(r.config)[second] for r in rows))
    ys = list(dict.fromkeys(dict(r.config)[first] for r in rows))
    metric = "val_loss" if any(r.stats.get("val_loss") for r in rows) else "final_loss"
    grid = np.full((len(ys), len(xs)), np.nan)
    for r in rows:
        c = dict(r.config)
        stat = r.stats.get(metric)
        if stat is not None and r.complete:
            grid[ys.index(c[first]), xs.index(c[second])] = stat[0]
    image = ax.imshow(grid, cmap="viridis_r", aspect="auto", origin="lower")
    ax.set_xticks(range(len(xs)), xs)
    ax.set_yticks(range(len(ys)), ys)
    ax.set(xlabel=second, ylabel=first, title=f"mean {metric.replace('_', ' ')} (blank: diverged or failed)")
    for (i, j), value in np.ndenumerate(grid):
        if math.isfinite(value):  # dark text on the light (low) end of the colours, light on the dark
            light = float(image.norm(value)) < 0.5
            ax.text(
                j,
                i,
                f"{value:.3g}",
                ha="center",
                va="center",
                fontsize=8,
                color="black" if light else "white",
            )
    fig.colorbar(image, ax=ax)
