"""Built-in data sets (``builtin:NAME``), generated in code from a fixed seed.

Each is the same on every call and every machine: no files, no downloads
(``digits`` reads the copy that scikit-learn ships inside its package).

| name | examples | input | target |
| --- | --- | --- | --- |
| ``xor`` | 4 | the corners of the unit square | class 0 or 1: x1 xor x2 |
| ``spiral`` | 400 | 2-D points on two interleaved spirals, a little noise | class 0 or 1: the spiral |
| ``points`` | 400 | 2-D points in a rotated frame, with a margin | class 0 or 1: the side of a line |
| ``regression`` | 256 | x in [-3, 3] | sin(x) plus a little noise |
| ``digits`` | 1797 | 8x8 images of handwritten digits in [0, 1]: ``[64]``, ``[1, 8, 8]`` | class 0..9 |
| ``chars`` | 476 | 4 characters of a text, one-hot over 14 letters: ``[4, 14]`` | class 0..13: the next |
| ``two_heads`` | 600 | ``image`` [8] and ``meta`` [3], by name | ``label`` (class 0..2), ``value`` |

:mod:`dlc.train.data` turns class labels into what the model's target expects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dlc.errors import DlcError

SEED = 0


@dataclass(frozen=True)
class Builtin:
    """A generated data set.

    Attributes:
        X: float64 inputs, ``[N, *input shape]``.
        target: int64 class labels ``[N]`` (0..classes-1) when ``classes`` is set,
            else float64 targets ``[N, *target shape]``.
        classes: the number of classes, or None for a regression target.
        named: for a set of several inputs and targets, every array by name (a model
            takes those its inputs and targets are called); X and target are two of them.
        shapes: per-example input shapes a model may declare for X, for hints (the
            images of ``digits`` are 8x8: ``[64]``, ``[8, 8]`` or ``[1, 8, 8]``); any
            shape of as many values is read row-major.
    """

    X: np.ndarray
    target: np.ndarray
    classes: int | None
    named: dict[str, np.ndarray] | None = None
    shapes: tuple[tuple[int, ...], ...] = ()


def xor() -> Builtin:
    """The four corners of the unit square; the label is x1 xor x2."""
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    return Builtin(X, np.array([0, 1, 1, 0], dtype=np.int64), 2)


def spiral(per_class: int = 200, noise: float = 0.03) -> Builtin:
    """Two spirals of 1.5 turns, the second the first turned by half a turn."""
    rng = np.random.default_rng(SEED)
    t = np.linspace(0.0, 1.0, per_class)
    radius = 0.1 + t
    points, labels = [], []
    for label in (0, 1):
        angle = 3 * np.pi * t + label * np.pi
        xy = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
        points.append(xy + rng.normal(0.0, noise, xy.shape))
        labels.append(np.full(per_class, label, dtype=np.int64))
    return Builtin(np.concatenate(points), np.concatenate(labels), 2)


def points(per_class: int = 200, margin: float = 0.1, angle: float = np.pi / 6) -> Builtin:
    """Points whose class is the sign of their first coordinate in a frame turned by ``angle``.

    No point lies within ``margin`` of the dividing line, so a linear model can
    separate the classes exactly.
    """
    rng = np.random.default_rng(SEED)
    side = np.repeat([-1.0, 1.0], per_class)
    u = side * (margin + rng.uniform(0.0, 1.0, 2 * per_class))
    v = rng.uniform(-1.1, 1.1, 2 * per_class)
    cos, sin = np.cos(angle), np.sin(angle)
    X = np.stack([cos * u - sin * v, sin * u + cos * v], axis=1)
    labels = (side > 0).astype(np.int64)
    order = rng.permutation(2 * per_class)
    return Builtin(X[order], labels[order], 2)


def regression(count: int = 256, noise: float = 0.05) -> Builtin:
    """``y = sin(x) + noise`` for x drawn uniformly from [-3, 3] (sorted)."""
    rng = np.random.default_rng(SEED)
    x = np.sort(rng.uniform(-3.0, 3.0, count))
    y = np.sin(x) + rng.normal(0.0, noise, count)
    return Builtin(x[:, None], y[:, None], None)


def digits() -> Builtin:
    """The 8x8 handwritten digits that scikit-learn ships, scaled to [0, 1]."""
    try:
        from sklearn.datasets import load_digits  # optional, and slow to import
    except ImportError:
        raise DlcError(
            "builtin:digits needs scikit-learn, which is not installed",
            hint="pip install scikit-learn",
        ) from None
    try:
        bunch = load_digits()
    except (OSError, ValueError) as exc:
        raise DlcError(f"builtin:digits: scikit-learn's copy cannot be read ({exc})") from None
    X = np.asarray(bunch.data, dtype=np.float64) / 16.0
    return Builtin(X, np.asarray(bunch.target, dtype=np.int64), 10, shapes=((64,), (8, 8), (1, 8, 8)))


#: The text ``chars`` reads; its letters, sorted, are the classes.
TEXT = "the cat sat on the mat. the dog sat on the log. "
#: Characters of context per example.
WINDOW = 4


def chars(repeats: int = 10) -> Builtin:
    """Each window of WINDOW characters of TEXT (repeated, so every window recurs) as one-hot
    rows, and the character that follows it: a character-level language model's data."""
    letters = sorted(set(TEXT))
    codes = np.array([letters.index(c) for c in TEXT * repeats], dtype=np.int64)
    starts = np.arange(len(codes) - WINDOW)
    windows = codes[starts[:, None] + np.arange(WINDOW)]
    X = np.eye(len(letters))[windows]
    shapes = ((WINDOW, len(letters)), (WINDOW * len(letters),))
    return Builtin(X.reshape(len(starts), -1), codes[starts + WINDOW], len(letters), shapes=shapes)


def two_heads(count: int = 600, noise: float = 0.05) -> Builtin:
    """Two inputs and two targets: a class and a number, both depending on both inputs.

    ``image`` [8] and ``meta`` [3] are standard normal; ``label`` (0, 1 or 2) is the
    largest of three fixed linear scores of both, ``value`` a smooth function of both
    plus noise. For a model with a shared trunk and two heads (examples/two_heads.dlc).
    """
    rng = np.random.default_rng(SEED)
    image, meta = rng.normal(size=(count, 8)), rng.normal(size=(count, 3))
    mix = np.random.default_rng(SEED + 1)
    scores = image @ mix.normal(size=(8, 3)) + meta @ mix.normal(size=(3, 3))
    label = np.argmax(scores, axis=1).astype(np.int64)
    value = np.tanh(image[:, 0] - image[:, 1]) + 0.5 * meta[:, 0] * meta[:, 1] + rng.normal(0.0, noise, count)
    named = {"image": image, "meta": meta, "label": label, "value": value}
    return Builtin(image, label, 3, named)


BUILTINS: dict[str, Callable[[], Builtin]] = {
    "xor": xor,
    "spiral": spiral,
    "points": points,
    "regression": regression,
    "digits": digits,
    "chars": chars,
    "two_heads": two_heads,
}


def builtin(name: str) -> Builtin:
    """The built-in data set called ``name``.

    Raises:
        DlcError: for an unknown name (with a did-you-mean hint), or ``digits``
            without scikit-learn.
    """
    make = BUILTINS.get(name)
    if make is None:
        from dlc.frontend.hints import did_you_mean  # the model's names are matched the same way

        raise DlcError(
            f"unknown built-in data set 'builtin:{name}'; there are: {', '.join(BUILTINS)}",
            hint=did_you_mean(name, BUILTINS, prefix="builtin:"),
        )
    return make()
