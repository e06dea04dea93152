"""Regenerate the figures of the teaching examples.

    python examples/plots.py [--out DIR]        (default: examples/figures/)

Every model is trained the way ``dlc train`` trains it (``dlc.train.run.train``
with the model's own train block; digits with ``--val-split 0.2``), then
compiled with ``dlc.compiler.compile_model`` to draw what it learned on the
data that ``dlc.train.data.load_data`` reads. A hidden layer is drawn by
compiling the same model text with its ``output`` line changed to that layer
(``output h3``) and calling ``predict`` with the trained parameters: the very
values the network computes, nothing re-implemented here.

Figures: points.png, spiral.png (decision boundary and hidden representation),
loss_surface.png (gradient-descent paths), regression.png, training.png
(loss and accuracy per epoch), momentum.png (the lecture's momentum with its
plus sign, and corrected), digits_cnn.png (the first convolution's filters,
and one digit's feature maps layer by layer).

A convolutional network you trained yourself is drawn without retraining:

    dlc train examples/digits_cnn.dlc --val-split 0.2       (writes digits_cnn.npz)
    python examples/plots.py --cnn digits_cnn.npz [--model examples/digits_cnn.dlc] [--digit 3] [--out DIR]

draws DIR/digits_cnn.png (named after the model) from those parameters: the
filters of the first kernel of rank 4 the model declares, then the image and
every named value of shape [C, H, W] in the order the file defines them
(``conv1``, ``pool1``, ...), computed by compiling the model with those values
as extra named outputs (``output view_conv1 = conv1``), then the class
probabilities.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

try:
    import matplotlib
except ImportError:  # an optional dependency of dlc: the [plot] extra
    raise SystemExit("plots.py needs matplotlib: pip install -e '.[plot]'") from None
matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dlc.compiler import compile_model, read_model
from dlc.frontend import Model
from dlc.train import checkpoint
from dlc.train.data import Dataset, load_data
from dlc.train.run import Epoch, Options, train

HERE = Path(__file__).resolve().parent
BLUE, ORANGE = "#1f77b4", "#ff7f0e"

#: The four runs on the loss surface: (learning rate, momentum).
SMALL_LR, LARGE_LR, MOMENTUM = 0.05, 0.3, 0.9
RUNS = [(SMALL_LR, 0.0), (LARGE_LR, 0.0), (SMALL_LR, MOMENTUM), (LARGE_LR, MOMENTUM)]


@dataclass
class Trained:
    """A model trained as ``dlc train`` trains it, and what is needed to draw it."""

    path: Path
    model: Model
    module: ModuleType
    params: dict[str, np.ndarray]
    data: Dataset
    history: list[Epoch]

    def hidden(self, name: str) -> ModuleType:
        """The same network with ``output NAME``: its ``predict`` gives that layer's values."""
        source, count = re.subn(r"^output .*$", f"output {name}", self.path.read_text(), flags=re.M)
        assert count == 1, f"{self.path.name} has no output line"
        return compile_model(source)


def fit(name: str, workdir: Path, val_split: float = 0.0) -> Trained:
    path = HERE / f"{name}.dlc"
    model = read_model(path)
    save = workdir / f"{name}.npz"
    result = train(model, Options(save=save, val_split=val_split))
    if result.diverged:
        raise SystemExit(f"{name}: training diverged: {result.diverged}")
    params = checkpoint.load(save, model.graph, "float64").params
    data = load_data(f"builtin:{model.graph.train.data}", model.graph)
    last = result.history[-1]
    print(
        f"{name}: {len(result.history)} epochs, loss {last.loss:.4g}"
        + (f", accuracy {last.accuracy:.4f}" if last.accuracy is not None else "")
        + (f", validation accuracy {last.val_accuracy:.4f}" if last.val_accuracy is not None else "")
    )
    return Trained(path, model, compile_model(path), params, data, result.history)


def classes(data: Dataset) -> np.ndarray:
    return (data.Y[:, 0] > 0.5).astype(int) if data.Y.shape[1] == 1 else data.Y.argmax(axis=1)


def scatter(ax: Any, xy: np.ndarray, labels: np.ndarray) -> None:
    for label, colour in ((0, BLUE), (1, ORANGE)):
        pick = labels == label
        ax.scatter(
            xy[pick, 0],
            xy[pick, 1],
            s=9,
            c=colour,
            edgecolors="white",
            linewidths=0.3,
            label=f"class {label}",
        )


def boundary(ax: Any, t: Trained, lim: float) -> None:
    """The probability of class 1 over the input plane, and its 0.5 contour."""
    g = np.linspace(-lim, lim, 300)
    gx, gy = np.meshgrid(g, g)
    p = t.module.predict(t.params, np.stack([gx.ravel(), gy.ravel()], axis=1))[:, 0].reshape(gx.shape)
    ax.contourf(gx, gy, p, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.35)
    ax.contour(gx, gy, p, levels=[0.5], colors="k", linewidths=1.2)
    scatter(ax, t.data.X, classes(t.data))
    ax.set_xlim(-lim, lim), ax.set_ylim(-lim, lim), ax.set_aspect("equal")
    ax.set_xlabel("$x_1$"), ax.set_ylabel("$x_2$")


def accuracy(t: Trained) -> float:
    return float(t.history[-1].accuracy or 0.0)


def plot_points(t: Trained, out: Path) -> None:
    theta = float(t.params["theta"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 5.2))
    boundary(left, t, 1.6)
    for vec, label in (((np.cos(theta), np.sin(theta)), "$h_1$"), ((-np.sin(theta), np.cos(theta)), "$h_2$")):
        left.annotate(
            "",
            xy=(1.3 * vec[0], 1.3 * vec[1]),
            xytext=(0, 0),
            arrowprops={"arrowstyle": "->", "lw": 2, "color": "k"},
        )
        left.text(1.4 * vec[0], 1.4 * vec[1], label, fontsize=13, ha="center", va="center")
    left.set_title(f"input coordinates; the learned frame, turned by {np.degrees(theta):.1f}°")
    left.legend(loc="lower right", fontsize=8)
    h = t.hidden("h").predict(t.params, t.data.X)
    scatter(right, h, classes(t.data))
    right.axvline(0, color="k", lw=1.2)
    right.set_aspect("equal"), right.set_xlim(-1.6, 1.6), right.set_ylim(-1.6, 1.6)
    right.set_xlabel("$h_1$"), right.set_ylabel("$h_2$")
    right.set_title(f"hidden layer h = R(θ) x: class 1 iff $h_1$ > 0 (accuracy {accuracy(t):.0%})")
    fig.suptitle("points.dlc: learning is finding a coordinate change that makes the task easy")
    fig.tight_layout()
    fig.savefig(out / "points.png", dpi=110)
    plt.close(fig)


def spiral_arms(count: int = 600) -> list[np.ndarray]:
    """The centre lines of builtin:spiral's two arms (its formula without the noise)."""
    t = np.linspace(0.0, 1.0, count)
    return [
        np.stack(
            [(0.1 + t) * np.cos(3 * np.pi * t + k * np.pi), (0.1 + t) * np.sin(3 * np.pi * t + k * np.pi)],
            axis=1,
        )
        for k in (0, 1)
    ]


def principal_plane(H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean and the first two principal directions of the rows of H."""
    mean = H.mean(axis=0)
    _, _, vt = np.linalg.svd(H - mean, full_matrices=False)
    return mean, vt[:2].T


def plot_spiral(t: Trained, out: Path) -> None:
    fig, axes = plt.subplots(1, 4, figsize=(19, 5.2))
    boundary(axes[0], t, 1.35)
    axes[0].set_title(f"input x: decision boundary (accuracy {accuracy(t):.1%})")
    arms = spiral_arms()
    for arm, colour in zip(arms, (BLUE, ORANGE), strict=True):
        axes[0].plot(arm[:, 0], arm[:, 1], color=colour, lw=1)
    labels = classes(t.data)
    for ax, name in zip(axes[1:], ("h1", "h2", "h3"), strict=True):
        layer = t.hidden(name)
        H = layer.predict(t.params, t.data.X)
        if H.shape[1] > 2:  # a 32-unit layer: its first two principal components
            mean, basis = principal_plane(H)
            view = lambda values, mean=mean, basis=basis: (values - mean) @ basis  # noqa: E731
            ax.set_title(f"{name} (32 units): its 2 principal components")
            ax.set_xlabel("PC 1"), ax.set_ylabel("PC 2")
        else:
            view = lambda values: values  # noqa: E731
            ax.set_title(f"{name} (2 units): a straight line separates the spirals")
            ax.set_xlabel(f"${name[0]}_{{{name[1]},1}}$"), ax.set_ylabel(f"${name[0]}_{{{name[1]},2}}$")
        scatter(ax, view(H), labels)
        for arm, colour in zip(arms, (BLUE, ORANGE), strict=True):
            mapped = view(layer.predict(t.params, arm))
            ax.plot(mapped[:, 0], mapped[:, 1], color=colour, lw=1.2)
    w, b = t.params["w4"][0], float(t.params["b4"][0])
    s = np.linspace(-1.1, 1.1, 2)  # the line w4 . h3 + b4 = 0, drawn along its larger coordinate
    last = axes[3]
    if abs(w[1]) > abs(w[0]):
        last.plot(s, -(b + w[0] * s) / w[1], "k", lw=1.2, label="$w_4 h_3 + b_4 = 0$")
    else:
        last.plot(-(b + w[1] * s) / w[0], s, "k", lw=1.2, label="$w_4 h_3 + b_4 = 0$")
    last.set_xlim(-1.1, 1.1), last.set_ylim(-1.1, 1.1)
    for ax in axes:
        ax.set_aspect("equal", adjustable="datalim" if ax is not axes[0] and ax is not last else "box")
    axes[0].legend(loc="lower right", fontsize=8)
    last.legend(loc="center left", fontsize=8)
    fig.suptitle(
        "spiral.dlc, layer by layer (lines: the centre lines of the two arms). h1 and h2 have 32 dimensions "
        "and are seen through a linear shadow;\nin h3, the 2-D layer the classifier reads, the network has "
        "uncrumpled the arms until a straight line separates them"
    )
    fig.tight_layout()
    fig.savefig(out / "spiral.png", dpi=100)
    plt.close(fig)


def plot_regression(t: Trained, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    x = t.data.X[:, 0]
    ax.scatter(x, t.data.Y[:, 0], s=8, c="0.5", label="data: sin(x) + noise")
    grid = np.linspace(-3.2, 3.2, 400)[:, None]
    ax.plot(grid[:, 0], np.sin(grid[:, 0]), "k--", lw=1, label="sin(x)")
    ax.plot(grid[:, 0], t.module.predict(t.params, grid)[:, 0], color=ORANGE, lw=2, label="the network")
    mse = t.module.loss(t.params, t.data.X, t.data.Y)
    ax.set_title(f"regression.dlc: a 16-unit tanh layer fitted by MSE (final MSE {mse:.4f})")
    ax.set_xlabel("x"), ax.set_ylabel("y"), ax.legend()
    fig.tight_layout()
    fig.savefig(out / "regression.png", dpi=110)
    plt.close(fig)


@dataclass
class Descent:
    """One gradient-descent run on the loss surface."""

    lr: float
    momentum: float
    path: np.ndarray  # [steps + 1, 2]: (a, b) from the start to the end
    losses: list[float]  # the loss before each step
    ends_in: str = ""  # "local", "global" or "neither"


@dataclass
class Surface:
    module: ModuleType
    start: np.ndarray
    minima: dict[str, np.ndarray]  # "local", "global": (a, b)
    runs: list[Descent]

    def loss(self, a: float, b: float) -> float:
        return float(self.module.loss({"a": np.array(a), "b": np.array(b)}, None, None))


def descend(
    module: ModuleType, start: dict[str, np.ndarray], lr: float, momentum: float, epochs: int | None = None
) -> Descent:
    """Train from ``start`` (one step per epoch: the model has no data), recording every point."""
    params = {k: v.copy() for k, v in start.items()}
    path = [(float(params["a"]), float(params["b"]))]

    def record(epoch: int, loss: float) -> bool:
        path.append((float(params["a"]), float(params["b"])))
        return True

    history = module.train(params, epochs=epochs, lr=lr, momentum=momentum, callback=record)
    return Descent(lr, momentum, np.array(path), history["loss"])


def loss_surface() -> Surface:
    """The surface's two minima and the four runs, each labelled with the minimum it ends in.

    The minima are found by plain gradient descent, long and slow, started at
    each dip's centre; a run ends in a minimum when it stops within 0.05 of it.
    All four runs start where the model's initializers put a and b.
    """
    path = HERE / "loss_surface.dlc"
    module = compile_model(path)
    minima = {
        name: descend(module, {"a": np.array(a), "b": np.array(b)}, 0.02, 0.0, 3000).path[-1]
        for name, (a, b) in (("local", (1.0, 0.5)), ("global", (-1.5, -0.5)))
    }
    start = module.init_params(read_model(path).graph.train.seed)
    surface = Surface(
        module,
        np.array([start["a"], start["b"]], dtype=float),
        minima,
        [descend(module, start, lr, mu) for lr, mu in RUNS],
    )
    assert surface.loss(*minima["global"]) < surface.loss(*minima["local"])
    for run in surface.runs:
        near = {k: float(np.linalg.norm(run.path[-1] - m)) for k, m in minima.items()}
        closest = min(near, key=lambda k: near[k])
        run.ends_in = closest if near[closest] < 0.05 else "neither"
    return surface


def plot_loss_surface(out: Path) -> Surface:
    surface = loss_surface()
    ga, gb = np.linspace(-3.3, 3.6, 140), np.linspace(-2.4, 2.8, 110)
    z = np.array([[surface.loss(a, b) for a in ga] for b in gb])
    fig = plt.figure(figsize=(15, 8.6))
    grid = fig.add_gridspec(2, 3, width_ratios=[1, 1, 0.9])
    colours = {"local": "#e41a1c", "global": "#ffffff", "neither": "#ff7f00"}
    curves = fig.add_subplot(grid[:, 2])
    for i, run in enumerate(surface.runs):
        ax = fig.add_subplot(grid[i // 2, i % 2])
        ax.contourf(ga, gb, z, levels=30, cmap="viridis")
        ax.contour(ga, gb, z, levels=30, colors="k", linewidths=0.25, alpha=0.5)
        colour = colours[run.ends_in]
        ax.plot(run.path[:, 0], run.path[:, 1], "-", color=colour, lw=1.3, marker=".", ms=4)
        ax.plot(*surface.start, "s", color="w", mec="k", ms=10)
        ax.annotate(
            "start",
            surface.start,
            xytext=(-10, 8),
            textcoords="offset points",
            color="w",
            ha="right",
            weight="bold",
        )
        for name, marker in (("local", "X"), ("global", "*")):
            ax.plot(*surface.minima[name], marker, color="w", mec="k", ms=15 if name == "global" else 11)
            ax.annotate(
                f"{name} minimum",
                surface.minima[name],
                xytext=(10, -14),
                textcoords="offset points",
                color="w",
                fontsize=9,
            )
        ax.plot(*run.path[-1], "o", color=colour, mec="k", ms=8)
        mom = "no momentum" if run.momentum == 0 else f"momentum {run.momentum:g}"
        ax.set_title(
            f"{'small' if run.lr == SMALL_LR else 'large'} rate (lr {run.lr:g}), {mom}\n"
            f"ends in the {run.ends_in} minimum"
        )
        ax.set_xlabel("a"), ax.set_ylabel("b")
        curves.plot(
            run.losses,
            ls="-" if run.momentum == 0 else "--",
            lw=1.6,
            label=f"lr {run.lr:g}, {mom}: {run.ends_in}",
        )
    for name in ("local", "global"):
        level = surface.loss(*surface.minima[name])
        curves.axhline(level, color="0.6", ls=":", lw=1)
        steps = len(surface.runs[0].losses)
        curves.text(steps, level, f"{name} minimum ", ha="right", va="bottom", fontsize=8)
    curves.set_xlabel("step"), curves.set_ylabel("loss"), curves.set_title("loss per step")
    curves.legend(fontsize=8)
    fig.suptitle(
        f"loss_surface.dlc: gradient descent from ({surface.start[0]:g}, {surface.start[1]:g}); "
        "momentum carries the run out of the local minimum"
    )
    fig.tight_layout()
    fig.savefig(out / "loss_surface.png", dpi=100)
    plt.close(fig)
    return surface


def plot_training(trained: dict[str, Trained], surface: Surface, out: Path) -> None:
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.6))
    for ax, (name, t) in zip(axes.flat, trained.items(), strict=False):
        epochs = [e.epoch for e in t.history]
        ax.semilogy(epochs, [max(e.loss, 1e-12) for e in t.history], color=BLUE, label="training loss")
        if t.history[0].val_loss is not None:
            ax.semilogy(epochs, [e.val_loss for e in t.history], color=BLUE, ls="--", label="validation loss")
        ax.set_xlabel("epoch"), ax.set_ylabel("loss (log scale)", color=BLUE), ax.set_title(f"{name}.dlc")
        ax.legend(loc="upper right", fontsize=7)
        if t.history[0].accuracy is not None:
            acc = ax.twinx()
            acc.plot(epochs, [e.accuracy for e in t.history], color=ORANGE, label="training accuracy")
            if t.history[0].val_accuracy is not None:
                acc.plot(
                    epochs,
                    [e.val_accuracy for e in t.history],
                    color=ORANGE,
                    ls="--",
                    label="validation accuracy",
                )
            acc.set_ylim(0, 1.02), acc.set_ylabel("accuracy", color=ORANGE)
            acc.legend(loc="center right", fontsize=7)
    ax = axes.flat[len(trained)]
    for run in surface.runs:
        ax.plot(
            run.losses,
            ls="-" if run.momentum == 0 else "--",
            label=f"lr {run.lr:g}, momentum {run.momentum:g}",
        )
    ax.set_xlabel("epoch (one step)"), ax.set_ylabel("loss"), ax.set_title("loss_surface.dlc")
    ax.legend(fontsize=7)
    fig.suptitle("training curves: loss and accuracy per epoch, as dlc train reports them")
    fig.tight_layout()
    fig.savefig(out / "training.png", dpi=100)
    plt.close(fig)


def plot_momentum(out: Path) -> dict[str, list[float]]:
    """The lecture's momentum with its plus sign against the corrected one: loss per epoch."""
    path = HERE / "momentum.dlc"
    data = load_data("builtin:regression", read_model(path).graph)
    losses = {}
    for name in ("lecture_momentum", "corrected_momentum"):
        module = compile_model(path, optimizer=name)
        params = module.init_params(0)
        with np.errstate(all="ignore"):
            losses[name] = module.train(params, data.X, data.Y)["loss"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for (name, loss), color in zip(losses.items(), (ORANGE, BLUE), strict=True):
        ax.semilogy(range(1, len(loss) + 1), loss, color=color, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean squared error")
    ax.set_title("momentum: velocity = past_velocity * momentum ± learning_rate * gradient")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "momentum.png", dpi=120)
    plt.close(fig)
    return losses


# --- a convolutional network: its filters, and one image going through them -----------------------


@dataclass
class Views:
    """What one image becomes in a convolutional network, layer by layer."""

    filters: tuple[str, np.ndarray]  # the first kernel of rank 4: (name, [O, C, kh, kw])
    maps: list[tuple[str, np.ndarray]]  # (name, [C, H, W]): the image, then each named feature map
    probabilities: np.ndarray | None  # the model's output for the image, when it is a vector


def cnn_views(model_path: Path, params: dict[str, np.ndarray], image: np.ndarray) -> Views:
    """The filters of ``model_path``'s first convolution and ``image``'s feature maps, from the network.

    The model is compiled once more with every named value of shape [C, H, W]
    as an extra named output (``output view_conv1 = conv1``), and the input as
    one too; its ``predict`` with the trained ``params`` gives the values the
    network computes. ``image`` is one example, shaped as the model's input.
    """
    model = read_model(model_path)
    graph = model.graph
    kernels = [p for p in graph.params if len(p.shape) == 4]
    if not kernels or len(graph.inputs) != 1:
        raise SystemExit(f"{model_path}: not a convolutional network of one input (no kernel [O, C, kh, kw])")
    names = [name for node, name in graph.names.items() if len(node.shape) == 3]
    source = model.source
    if not graph.named_outputs:  # one unnamed output: name it, so that the views can join it
        source, count = re.subn(
            r"^output (?!\w+\s*=[^=])(.*)$", r"output view_output = \1", source, flags=re.M
        )
        if count != 1:
            raise SystemExit(f"{model_path}: write the output statement on one line to draw the network")
    views = [graph.inputs[0].name, *names]
    source += "".join(f"\noutput view_{name} = {name}" for name in views)
    values = compile_model(source).predict(params, image[None])
    outputs = [v[0] for k, v in values.items() if not k.startswith("view_") or k == "view_output"]
    probabilities = outputs[0] if outputs and outputs[0].ndim == 1 else None
    maps = [(name, values[f"view_{name}"][0]) for name in views]
    maps = [(name, m[None] if m.ndim == 2 else m) for name, m in maps]  # an input [H, W]: one channel
    kernel = kernels[0]
    return Views((kernel.name, params[kernel.name]), maps, probabilities)


def plot_cnn(views: Views, path: Path, title: str, label: int | None = None) -> Path:
    """The filters (first row), then one row of maps per layer, then the class probabilities."""
    name, K = views.filters
    rows = [(f"filters {name}", K.sum(axis=1) if K.shape[1] > 1 else K[:, 0]), *views.maps]
    width = max(len(r[1]) for r in rows)
    fig = plt.figure(figsize=(2.2 + 0.5 * width, 0.75 * len(rows) + 2.4))
    grid = fig.add_gridspec(
        len(rows) + 1, width + 1, width_ratios=[4] + [1] * width, hspace=0.55, wspace=0.12
    )
    for row, (label_text, maps) in enumerate(rows):
        is_filter = row == 0
        lim = float(np.abs(maps).max()) or 1.0
        lo, hi = (-lim, lim) if is_filter else (0.0, float(maps.max()) or 1.0)
        head = fig.add_subplot(grid[row, 0])
        head.axis("off")
        shape = "[" + ", ".join(map(str, K.shape if is_filter else maps.shape)) + "]"
        head.text(1.0, 0.5, f"{label_text}\n{shape}", ha="right", va="center", fontsize=9)
        for i, m in enumerate(maps):
            ax = fig.add_subplot(grid[row, i + 1])
            # the filters' weights (blue < 0 < red), the image itself, then the maps
            cmap = "RdBu_r" if is_filter else "gray_r" if row == 1 else "viridis"
            ax.imshow(m, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
    if views.probabilities is not None:
        ax = fig.add_subplot(grid[len(rows), 1 : min(width, 12) + 1])
        p = views.probabilities
        ax.bar(range(len(p)), p, color=[ORANGE if i == p.argmax() else BLUE for i in range(len(p))])
        ax.set_xticks(range(len(p))), ax.set_ylim(0, 1), ax.set_yticks([0, 1])
        guess = f"the network says {p.argmax()} ({p.max():.0%})"
        ax.set_title(guess + (f"; the label is {label}" if label is not None else ""), fontsize=9)
        head = fig.add_subplot(grid[len(rows), 0])
        head.axis("off")
        head.text(1.0, 0.5, "output\n(probabilities)", ha="right", va="center", fontsize=9)
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def draw_cnn(model_path: Path, params_path: Path, out: Path, digit: int, data: str | None = None) -> Path:
    """digits_cnn.png (named after the model) from a trained network's parameters file."""
    model = read_model(model_path)
    params = checkpoint.load(params_path, model.graph, "float64").params
    source = data or f"builtin:{model.graph.train.data}"
    examples = load_data(source, model.graph)
    X, Y = examples.X, examples.Y
    if not isinstance(X, np.ndarray):
        raise SystemExit(f"{model_path}: not a network of one input")
    if not 0 <= digit < len(X):
        raise SystemExit(f"--digit {digit}: {source} has examples 0..{len(X) - 1}")
    label = int(np.argmax(Y[digit])) if examples.classes and isinstance(Y, np.ndarray) else None
    views = cnn_views(model_path, params, X[digit])
    title = (
        f"{model_path.name}: example {digit} of {source} going through the trained network. Top: the "
        f"first layer's filters {views.filters[0]} (red > 0 > blue);\nthen the image and each layer's "
        "feature maps (one per channel: the filter's response at every position, after relu; pooling "
        "keeps the strongest of each 2x2 block)"
    )
    return plot_cnn(views, out / f"{model_path.stem}.png", title, label)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "figures", help="where the PNGs go")
    parser.add_argument(
        "--cnn", type=Path, metavar="PARAMS.npz", help="only draw this trained CNN (no training)"
    )
    parser.add_argument("--model", type=Path, default=HERE / "digits_cnn.dlc", help="the CNN's model file")
    parser.add_argument("--digit", type=int, default=3, help="which example goes through the CNN")
    parser.add_argument("--data", help="the CNN's data (default: the model's own)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.cnn is not None:
        print(f"wrote {draw_cnn(args.model, args.cnn, args.out, args.digit, args.data)}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        trained = {name: fit(name, work) for name in ("xor", "points", "spiral", "regression")}
        trained["digits"] = fit("digits", work, val_split=0.2)
        fit("digits_cnn", work, val_split=0.2)
        draw_cnn(HERE / "digits_cnn.dlc", work / "digits_cnn.npz", args.out, args.digit)
    plot_points(trained["points"], args.out)
    plot_spiral(trained["spiral"], args.out)
    plot_regression(trained["regression"], args.out)
    surface = plot_loss_surface(args.out)
    plot_training(trained, surface, args.out)
    for name, loss in plot_momentum(args.out).items():
        print(f"momentum: {name}: loss {loss[0]:.4g} after epoch 1, {loss[-1]:.4g} after epoch {len(loss)}")
    for run in surface.runs:
        print(
            f"loss_surface: lr {run.lr:g}, momentum {run.momentum:g}: ends in the {run.ends_in} minimum "
            f"at ({run.path[-1][0]:.3f}, {run.path[-1][1]:.3f})"
        )
    print(f"figures in {args.out}: " + ", ".join(sorted(p.name for p in args.out.glob("*.png"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
