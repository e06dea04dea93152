"""Constructors for graph nodes: each checks its operands' shapes and infers its own.

A constructor raises :class:`~dlc.graph.nodes.ShapeError` (a message, no
position) for operands it does not accept; the caller adds the position.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import sympy

from dlc.graph.nodes import (
    BatchSize,
    ClassDelta,
    Concat,
    Constant,
    Einsum,
    Elementwise,
    Expand,
    Fold,
    Index,
    Init,
    Input,
    LogSumExp,
    Loss,
    MatMul,
    Node,
    Param,
    Permute,
    Reduce,
    ReduceKind,
    Reshape,
    Shape,
    ShapeError,
    Slice,
    Softmax,
    Tangent,
    Transpose,
    Unfold,
    Window,
    broadcast,
    show_shape,
)
from dlc.graph.printer import LOSS_NAMES
from dlc.graph.scalar import element_symbol

#: Above this many elements a declared tensor is refused before anything is allocated.
MAX_ELEMENTS = 10**9
#: At most this many per-example dimensions (NumPy allows 64 in all, batch axis included).
MAX_RANK = 32


# ------------------------------------------------------------ shape rules


def _batched(*nodes: Node) -> bool:
    return any(n.batched for n in nodes)


def _check_size(shape: Shape) -> Shape:
    if len(shape) > MAX_RANK:
        raise ShapeError(f"a shape of {len(shape)} dimensions: at most {MAX_RANK} are allowed")
    if math.prod(shape) > MAX_ELEMENTS:
        raise ShapeError(f"{show_shape(shape)} has more than {MAX_ELEMENTS:.0e} elements")
    return shape


def input_node(name: str, role: str, shape: Shape, classes: int = 0) -> Input:
    """An input or target; a target of ``classes`` > 0 holds one class index per example (shape ())."""
    return Input((), _check_size(shape) if not classes else (), True, name, role, classes)


def param_node(name: str, shape: Shape, init: Init) -> Param:
    return Param((), _check_size(shape), False, name, init)


def constant(value: np.ndarray) -> Constant:
    value = np.array(value, dtype=np.float64)
    value.setflags(write=False)
    return Constant((), _check_size(value.shape), False, value)


def elementwise(expr: sympy.Expr, inputs: tuple[Node, ...], op: str = "+") -> Elementwise:
    """``expr`` over ``x0, x1, ...`` standing for elements of ``inputs``, broadcast together."""
    shape = _check_size(broadcast(*(i.shape for i in inputs), op=op))
    return Elementwise(tuple(inputs), shape, _batched(*inputs), expr)


def literal(value: sympy.Expr) -> Elementwise:
    """A number, as an elementwise node with no inputs."""
    return Elementwise((), (), False, value)


def matmul(a: Node, b: Node) -> MatMul:
    """Matrix product in math orientation.

    [m,k] @ [k] -> [m];  [k] @ [k,n] -> [n];  [m,k] @ [k,n] -> [m,n];  [k] @ [k] -> [].
    """
    sa, sb = a.shape, b.shape
    what = f"cannot apply @ to {show_shape(sa)} and {show_shape(sb)}"
    if not (1 <= len(sa) <= 2 and 1 <= len(sb) <= 2):
        raise ShapeError(f"{what}: @ takes vectors and matrices (use * to scale)")
    inner_a, inner_b = sa[-1], sb[0]
    if inner_a != inner_b:
        raise ShapeError(f"{what}: inner dimensions {inner_a} and {inner_b} differ")
    shape = _check_size(sa[:-1] + sb[1:])
    return MatMul((a, b), shape, _batched(a, b))


def reduce(kind: ReduceKind, x: Node, axis: int | None) -> Reduce:
    """A reduction over one per-example axis, or over all of them (``axis`` None)."""
    if axis is None:
        return reduce_axes(kind, x, tuple(range(len(x.shape))))
    if not -len(x.shape) <= axis < len(x.shape):
        raise ShapeError(f"axis {axis} is out of range for {show_shape(x.shape)}", "axis")
    return reduce_axes(kind, x, (axis % len(x.shape),))


def reduce_axes(kind: ReduceKind, x: Node, axes: tuple[int, ...], batch: bool = False) -> Reduce:
    """A reduction over the given per-example axes, and over the batch if ``batch``."""
    if not isinstance(kind, ReduceKind):
        raise TypeError(f"a reduction's kind is a ReduceKind, not {kind!r}")
    if kind in (ReduceKind.MAX, ReduceKind.MIN) and (batch or any(x.shape[a] == 0 for a in axes)):
        raise ShapeError(f"{kind} of {show_shape(x.shape)}: no elements to take the {kind} of")
    if batch and not x.batched:
        raise ShapeError("cannot reduce over the batch axis of a value that has none")
    shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    return Reduce((x,), shape, x.batched and not batch, kind, tuple(sorted(axes)), batch)


def batch_mean(x: Node) -> Reduce:
    """The mean over the batch of a per-example scalar: how the loss is formed."""
    if x.shape:
        raise ShapeError(f"the loss must be a scalar per example, not {show_shape(x.shape)}")
    return reduce_axes(ReduceKind.MEAN, x, (), batch=True)


def expand(x: Node, shape: Shape, dims: tuple[int, ...], batched: bool) -> Expand:
    """Broadcast ``x`` to ``shape``: x's axis i lands on output axis dims[i], the rest are new."""
    increasing = all(a < b for a, b in itertools.pairwise(dims))
    if (
        not increasing
        or len(dims) != len(x.shape)
        or any(not 0 <= d < len(shape) or shape[d] != n for d, n in zip(dims, x.shape, strict=True))
    ):
        raise ShapeError(f"cannot expand {show_shape(x.shape)} to {show_shape(shape)} along {dims}")
    if x.batched and not batched:
        raise ShapeError("expand cannot remove the batch axis")
    return Expand((x,), shape, batched, tuple(dims))


def batch_size() -> BatchSize:
    return BatchSize((), (), False)


def tangent(name: str, shape: Shape) -> Tangent:
    return Tangent((), shape, False, name)


def _subscripts(node: Node, letters: str) -> str:
    return ("B" if node.batched else "") + letters


def matmul_spec(a: Node, b: Node) -> str:
    """The einsum that a matrix product of ``a`` and ``b`` computes, batch axis included."""
    sa = _subscripts(a, "mk" if len(a.shape) == 2 else "k")
    sb = _subscripts(b, "kn" if len(b.shape) == 2 else "k")
    out = ("B" if a.batched or b.batched else "") + ("m" if len(a.shape) == 2 else "")
    return f"{sa},{sb}->{out}" + ("n" if len(b.shape) == 2 else "")


def einsum(spec: str, *operands: Node) -> Einsum:
    """An einsum over per-example operands; ``B`` in a subscript is the batch axis."""
    lhs, out = spec.split("->")
    subs = lhs.split(",")
    if len(subs) != len(operands):
        raise ShapeError(f"einsum {spec} takes {len(subs)} operands, not {len(operands)}")
    sizes: dict[str, int] = {}
    for sub, x in zip(subs, operands, strict=True):
        if ("B" in sub) != x.batched or (sub.lstrip("B") == "" and x.shape):
            raise ShapeError(f"einsum {spec}: operand {show_shape(x.shape)} does not fit '{sub}'")
        letters = sub.replace("B", "")
        if len(letters) != len(x.shape):
            raise ShapeError(f"einsum {spec}: operand {show_shape(x.shape)} does not fit '{sub}'")
        for letter, n in zip(letters, x.shape, strict=True):
            if sizes.setdefault(letter, n) != n:
                raise ShapeError(f"einsum {spec}: axis {letter} is {sizes[letter]} and {n}")
    shape = _check_size(tuple(sizes[c] for c in out.replace("B", "")))
    if "B" in out and not any(x.batched for x in operands):
        raise ShapeError(f"einsum {spec}: no operand has a batch axis")
    return Einsum(tuple(operands), shape, "B" in out, spec)


def merged_letters(
    subs: list[str], out: str, joins: Callable[[str, str], bool] = lambda a, b: True
) -> tuple[list[str], str, dict[str, str]]:
    """An einsum's letters merged where two are neighbours, the first right before the second, in
    every subscript that has either, and ``joins`` (of the letters each stands for) allows it.

    Returns the new subscripts and output, and the original letters each remaining letter
    stands for, in order: ``Bhwcij,ocij->Bhwo`` becomes ``Bc,oc->Bo`` with B standing for
    ``Bhw`` and c for ``cij``, a plain matrix product. Nothing merges where a subscript
    repeats a letter (a diagonal).
    """
    every = [*subs, out]
    groups = {c: c for s in (out, *subs) for c in s}  # the output's letters first, as kernels order them
    merged = all(len(set(s)) == len(s) for s in every)
    while merged:
        merged = False
        for a, b in itertools.permutations(list(groups), 2):
            neighbours = all((a + b in s) if a in s else b not in s for s in every)
            if neighbours and joins(groups[a], groups[b]):
                groups[a] += groups.pop(b)
                every = [s.replace(b, "") for s in every]
                merged = True
                break
    *new_subs, new_out = every
    return new_subs, new_out, groups


def slice_axis(x: Node, axis: int, start: int, stop: int, step: int = 1) -> Slice:
    """Elements ``start:stop:step`` of ``axis`` (bounds already resolved: 0 <= start < stop <= n)."""
    shape = list(x.shape)
    if not (0 <= axis < len(shape) and 0 <= start < stop <= shape[axis] and step >= 1):
        raise ShapeError(f"cannot take {start}:{stop}:{step} of axis {axis} of {show_shape(x.shape)}")
    shape[axis] = len(range(start, stop, step))
    if step > 1 and shape[axis] == 1:
        step, stop = 1, start + 1  # one element: the same slice, written one way
    return Slice((x,), tuple(shape), x.batched, axis, start, stop, step)


def index_axis(x: Node, axis: int, index: int) -> Index:
    """Element ``index`` of ``axis`` (already resolved: 0 <= index < n), the axis dropped."""
    if not (0 <= axis < len(x.shape) and 0 <= index < x.shape[axis]):
        raise ShapeError(f"cannot take element {index} of axis {axis} of {show_shape(x.shape)}")
    shape = x.shape[:axis] + x.shape[axis + 1 :]
    return Index((x,), shape, x.batched, axis, index)


def reshape(x: Node, shape: Shape) -> Reshape | Node:
    """``x``'s elements with per-example ``shape`` (the same count); ``x`` itself if it has it."""
    shape = _check_size(tuple(shape))
    if math.prod(shape) != x.size:
        raise ShapeError(
            f"cannot reshape {show_shape(x.shape)} ({x.size} elements) "
            f"to {show_shape(shape)} ({math.prod(shape)} elements)"
        )
    while isinstance(x, Reshape):  # a reshape of a reshape is one reshape of the first's input
        x = x.inputs[0]
    if shape == x.shape:
        return x
    return Reshape((x,), shape, x.batched)


def softmax(x: Node) -> Softmax:
    if not x.shape:
        raise ShapeError("softmax needs a vector, not a scalar")
    return Softmax((x,), x.shape, x.batched)


def logsumexp(x: Node) -> LogSumExp:
    if not x.shape:
        raise ShapeError("logsumexp needs a vector, not a scalar")
    return LogSumExp((x,), x.shape[:-1], x.batched)


def transpose(x: Node) -> Transpose:
    if len(x.shape) != 2:
        raise ShapeError(f"transpose needs a matrix, not {show_shape(x.shape)}")
    return Transpose((x,), x.shape[::-1], x.batched)


def concat(xs: tuple[Node, ...], axis: int) -> Concat:
    first = xs[0].shape
    rank = len(first)
    if rank == 0:
        raise ShapeError("concat needs vectors or matrices, not scalars")
    if not -rank <= axis < rank:
        raise ShapeError(f"axis {axis} is out of range for {show_shape(first)}", "axis")
    axis %= rank
    for x in xs[1:]:
        if len(x.shape) != rank or any(
            d != e for i, (d, e) in enumerate(zip(x.shape, first, strict=True)) if i != axis
        ):
            listed = " and ".join(show_shape(x.shape) for x in xs)
            raise ShapeError(f"cannot concat {listed} along axis {axis}")
    shape = list(first)
    shape[axis] = sum(x.shape[axis] for x in xs)
    return Concat(tuple(xs), _check_size(tuple(shape)), _batched(*xs), axis)


def loss(kind: str, prediction: Node, target: Node) -> Loss:
    """A per-example loss; messages name it as a model file writes it (``softmax_cross_entropy``)."""
    name = LOSS_NAMES.get(kind, kind)
    classes = target.classes if isinstance(target, Input) else 0
    if classes and kind == "softmax_ce":  # a class index: logsumexp(z) - z[label], no one-hot
        if prediction.shape != (classes,):
            raise ShapeError(
                f"softmax_cross_entropy against a class[{classes}] target needs {classes} class scores, "
                f"not {show_shape(prediction.shape)}"
            )
        return Loss((prediction, target), (), True, "softmax_ce_index")
    if prediction.shape != target.shape:
        raise ShapeError(
            f"{name} needs a prediction and a target of one shape, "
            f"not {show_shape(prediction.shape)} and {show_shape(target.shape)}"
        )
    if kind == "softmax_ce" and len(prediction.shape) != 1:
        raise ShapeError(f"{name} needs a vector of class scores, not {show_shape(prediction.shape)}")
    return Loss((prediction, target), (), _batched(prediction, target), kind)


def class_delta(s: Node, label: Node, g: Node) -> ClassDelta:
    """g * (s - onehot(label)) for softmax probabilities ``s`` and a class index ``label``."""
    return ClassDelta((s, label, g), s.shape, True)


def unfold(x: Node, window: Window, fill: float = 0.0) -> Unfold:
    """The windows of ``x`` = [C, *spatial] (see :class:`Window`); checked by :func:`check_window`."""
    check_window(x.shape, window)
    shape = window.windows_shape(x.shape)
    if math.prod(shape) > MAX_ELEMENTS:
        raise ShapeError(
            f"the windows of x would take {math.prod(shape):.2g} elements per example "
            f"({show_shape(window.positions(x.shape[1:]))} positions of {x.shape[0]} "
            f"channel{'s' if x.shape[0] != 1 else ''} by "
            f"{'x'.join(map(str, window.kernel))}), more than {MAX_ELEMENTS:.0e}"
        )
    return Unfold((x,), _check_size(shape), x.batched, window, float(fill))


def fold(g: Node, shape: Shape, window: Window) -> Fold:
    """The windows ``g`` added back into an x of ``shape`` (the adjoint of :func:`unfold`)."""
    check_window(shape, window)
    if g.shape != window.windows_shape(shape):
        raise ShapeError(f"cannot fold {show_shape(g.shape)} into {show_shape(shape)}")
    return Fold((g,), shape, g.batched, window)


def check_window(x: Shape, window: Window) -> None:
    """Raise unless every window fits: each spatial axis gives at least one position."""
    rank = len(window.kernel)
    names = SPATIAL_NAMES.get(rank, tuple(f"N{i + 1}" for i in range(rank)))
    if len(x) != rank + 1:
        raise ShapeError(
            f"{show_shape(x)} is not [C, {', '.join(names)}]: channels, then {rank} spatial "
            f"dimension{'s' if rank > 1 else ''}"
        )
    for name, n, k, s, (lo, hi) in zip(
        names, x[1:], window.kernel, window.stride, window.padding, strict=True
    ):
        if k < 1 or s < 1 or lo < 0 or hi < 0:
            raise ShapeError("kernel sizes and strides must be positive, and paddings not negative")
        if s > MAX_ELEMENTS or lo > MAX_ELEMENTS or hi > MAX_ELEMENTS:
            raise ShapeError(f"a stride or padding above {MAX_ELEMENTS:.0e}: no input is that large")
        if n + lo + hi < k:
            pad = f"2*{lo}" if lo == hi else f"{lo} + {hi}"
            raise ShapeError(
                f"the window ({k}) is larger than the input's {name} ({n}) with its padding: "
                f"({n} + {pad} - {k}) / {s} + 1 = {(n + lo + hi - k) / s + 1:g}, not a whole position"
            )


#: How messages name the spatial dimensions of 1-D and 2-D windows.
SPATIAL_NAMES = {1: ("L",), 2: ("H", "W")}


def permute(x: Node, axes: tuple[int, ...]) -> Permute | Node:
    """``x`` with its per-example axes reordered (x itself for the identity)."""
    if sorted(axes) != list(range(len(x.shape))):
        raise ShapeError(f"cannot permute {show_shape(x.shape)} by {axes}")
    if axes == tuple(range(len(axes))):
        return x
    return Permute((x,), tuple(x.shape[a] for a in axes), x.batched, tuple(axes))


def symbols(n: int) -> tuple[sympy.Symbol, ...]:
    return tuple(element_symbol(i) for i in range(n))
