"""NumPy implementations of dlc's scalar functions, in their numerically stable forms."""

from __future__ import annotations

from typing import Any

import numpy as np

from dlc.graph import scalar
from dlc.graph.scalar import EPS

Array = Any


def sigmoid(x: Array) -> Array:
    # exp of a non-positive number only: no overflow for large |x|.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def softplus(x: Array) -> Array:
    return np.logaddexp(0, x)


def relu(x: Array) -> Array:
    return np.maximum(x, 0)


def step(x: Array) -> Array:
    return (x > 0).astype(np.result_type(x, np.float32))


def leaky_relu(x: Array, alpha: Array) -> Array:
    return np.where(x > 0, x, alpha * x)


def clip01(p: Array) -> Array:
    eps = float(EPS)
    return np.clip(p, eps, 1 - eps)


def inside01(p: Array) -> Array:
    eps = float(EPS)
    return ((p > eps) & (p < 1 - eps)).astype(np.result_type(p, np.float32))


# Comparisons give 0 and 1 in the arguments' float type. (Each helper is copied into generated
# modules by its own source text, so each is written out whole.)


def gt(a: Array, b: Array) -> Array:
    return np.greater(a, b).astype(np.result_type(a, b, np.float32))


def ge(a: Array, b: Array) -> Array:
    return np.greater_equal(a, b).astype(np.result_type(a, b, np.float32))


def lt(a: Array, b: Array) -> Array:
    return np.less(a, b).astype(np.result_type(a, b, np.float32))


def le(a: Array, b: Array) -> Array:
    return np.less_equal(a, b).astype(np.result_type(a, b, np.float32))


def eq(a: Array, b: Array) -> Array:
    return np.equal(a, b).astype(np.result_type(a, b, np.float32))


def ne(a: Array, b: Array) -> Array:
    return np.not_equal(a, b).astype(np.result_type(a, b, np.float32))


def where(c: Array, a: Array, b: Array) -> Array:
    chosen: Array = np.where(np.not_equal(c, 0), a, b)
    return chosen.astype(np.result_type(c, a, b, np.float32), copy=False)


def maximum(a: Array, b: Array) -> Array:
    return np.maximum(a, b)


def minimum(a: Array, b: Array) -> Array:
    return np.minimum(a, b)


def softmax(x: Array, axis: int = -1) -> Array:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def logsumexp(x: Array, axis: int = -1) -> Array:
    m = x.max(axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.exp(x - m).sum(axis=axis))


#: Name -> implementation, for the printers of elementwise bodies: one per function in
#: :data:`dlc.graph.scalar.FUNCTIONS`.
FUNCTIONS = {name: globals()[name] for name in scalar.FUNCTIONS}


# Per-example losses: x has a leading batch axis; each averages over the rest.


def mse(p: Array, y: Array) -> Array:
    return np.mean((p - y) ** 2, axis=tuple(range(1, np.ndim(p))))


def bce(p: Array, y: Array) -> Array:
    q = np.clip(p, float(EPS), 1 - float(EPS))
    return np.mean(-(y * np.log(q) + (1 - y) * np.log(1 - q)), axis=tuple(range(1, np.ndim(p))))


def bce_logits(z: Array, y: Array) -> Array:
    return np.mean(np.logaddexp(0, z) - y * z, axis=tuple(range(1, np.ndim(z))))


def softmax_ce(z: Array, y: Array) -> Array:
    return logsumexp(z) - np.sum(y * z, axis=-1)


def softmax_ce_softmax(z: Array, y: Array) -> tuple[Array, Array]:
    """softmax_ce(z, y) and softmax(z) from one pass of exp, for when both are needed."""
    # Array methods rather than np.max/np.sum: on small arrays their wrappers cost as much.
    m = z.max(axis=-1, keepdims=True)
    e = np.exp(z - m)
    s = e.sum(axis=-1, keepdims=True)
    return (m + np.log(s))[..., 0] - (y * z).sum(axis=-1), e / s


def softmax_ce_index(z: Array, label: Array) -> Array:
    """logsumexp(z) - z[label] per example, for class indices (whole numbers, as floats).

    As in native code, a label that is no index 0..k-1 (the module's checks let none
    through) gives NaN, and nothing outside the row is read.
    """
    ok = (label >= 0) & (label < z.shape[-1])
    index = np.where(ok, label, 0).astype(np.intp)
    picked = np.take_along_axis(z, index[:, None], axis=-1)[:, 0]
    return logsumexp(z) - np.where(ok, picked, np.nan)


def class_delta(s: Array, label: Array, g: Array) -> Array:
    """g * (s - onehot(label)) per example, the one-hot never built: g * s, less g at the label."""
    g = np.broadcast_to(np.asarray(g, dtype=s.dtype), (len(s),))
    out = s * g[:, None]
    ok = np.flatnonzero((label >= 0) & (label < s.shape[-1]))
    out[ok, label[ok].astype(np.intp)] -= g[ok]
    return out


# Windows (convolution and pooling): x is [B, C, *spatial]; one Python step per kernel offset
# at most, never per example or position.


def unfold(x: Array, kernel: tuple, stride: tuple, padding: tuple, fill: float, channels_last: bool) -> Array:
    """Every window of x [B, C, *spatial], as an array of its own (im2col): [B, *positions, C,
    *kernel] (channels last, for a matrix product) or [B, *kernel, C, *positions] (for pooling,
    which then works on whole slices). Padding (before, after) per axis holds ``fill``."""
    rank = len(kernel)
    if any(lo or hi for lo, hi in padding):
        x = np.pad(x, ((0, 0), (0, 0), *padding), constant_values=fill)
    windows = np.lib.stride_tricks.sliding_window_view(x, kernel, axis=tuple(range(2, 2 + rank)))
    windows = windows[(slice(None), slice(None), *(slice(None, None, s) for s in stride))]
    if channels_last:
        return np.array(np.moveaxis(windows, 1, 1 + rank), order="C")
    offsets = tuple(range(2 + rank, 2 + 2 * rank))
    return np.array(np.moveaxis(windows, offsets, tuple(range(1, 1 + rank))), order="C")


def fold(g: Array, shape: tuple, kernel: tuple, stride: tuple, padding: tuple, channels_last: bool) -> Array:
    """The windows g added back into x [B, *shape] where they came from (the adjoint of unfold):
    g laid out offsets first, then one whole-slice addition per offset of the kernel."""
    rank = len(kernel)
    if channels_last:  # [B, *positions, C, *kernel] -> [B, *kernel, C, *positions]
        order = (0, *range(2 + rank, 2 + 2 * rank), 1 + rank, *range(1, 1 + rank))
        g = np.ascontiguousarray(np.transpose(g, order))
    positions = g.shape[2 + rank :]
    padded = [n + lo + hi for n, (lo, hi) in zip(shape[1:], padding, strict=True)]
    out = np.zeros((len(g), shape[0], *padded), dtype=g.dtype)
    for k in np.ndindex(*kernel):
        at = tuple(slice(i, i + s * (p - 1) + 1, s) for i, s, p in zip(k, stride, positions, strict=True))
        out[(slice(None), slice(None), *at)] += g[(slice(None), *k)]
    inside = tuple(slice(lo, lo + n) for n, (lo, _) in zip(shape[1:], padding, strict=True))
    return out[(slice(None), slice(None), *inside)]


def reduce_first(x: Array, n: int, how: str) -> Array:
    """x [B, *a, *rest] reduced over the n axes after the batch axis (a pooling window's offsets),
    one whole-array step per element of them: NumPy is much faster so than reducing over
    small strided axes. ``how``: max, min, sum or mean."""
    step = np.maximum if how == "max" else np.minimum if how == "min" else np.add
    out = None
    for i in np.ndindex(*x.shape[1 : 1 + n]):
        part = x[(slice(None), *i)]
        out = np.array(part) if out is None else step(out, part, out=out)
    return out / np.prod(x.shape[1 : 1 + n]) if how == "mean" else out
