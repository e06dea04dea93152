"""The tensor graph: one class per op, each with its shape rule.

Shapes are per example, as the user writes them. A node whose value depends
on the example (on an input or a target) is *batched*: at run time it has a
leading batch axis that its ``shape`` does not list. Parameters and constants
are not batched. The loss reduces the batch axis by the mean.

Node classes compare by identity; :meth:`Node.key` gives the structural key
that :class:`~dlc.graph.graph.Builder` uses to share equal subgraphs. The
functions that build nodes and check their shapes are in :mod:`dlc.graph.ops`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar, NoReturn

import numpy as np
import sympy

Shape = tuple[int, ...]


class ShapeError(Exception):
    """An op was applied to shapes it does not accept; the front end adds the position.

    ``argument`` names the argument at fault when it is not the operands (``axis``).
    """

    def __init__(self, message: str, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument


def show_shape(shape: Shape) -> str:
    if len(shape) > 8:  # keep messages short: the first and last dimensions
        return f"[{', '.join(map(str, shape[:3]))}, ..., {', '.join(map(str, shape[-2:]))}]"
    return "[" + ", ".join(map(str, shape)) + "]"


def broadcast(*shapes: Shape, op: str = "+") -> Shape:
    """NumPy's rule: align dimensions from the right; a 1 or a missing one stretches."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(rank):
        dims = {s[len(s) - rank + axis] for s in shapes if len(s) - rank + axis >= 0}
        dims.discard(1)
        if len(dims) > 1:
            listed = " and ".join(show_shape(s) for s in shapes)
            raise ShapeError(f"cannot apply {op} to {listed}: shapes do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


@dataclass(frozen=True, eq=False, repr=False)
class Node:
    inputs: tuple[Node, ...]
    shape: Shape
    batched: bool

    op_name: ClassVar[str] = "node"

    def attrs(self) -> tuple[Any, ...]:
        """The op's own settings (everything but inputs, shape and batched)."""
        return tuple(getattr(self, f.name) for f in fields(self)[3:])

    def key(self) -> tuple[Any, ...]:
        # Shape and batch flag are part of the key: expand(0) to [3] is not expand(0) to [4].
        return (type(self), self.shape, self.batched, self.attrs(), tuple(id(i) for i in self.inputs))

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def __repr__(self) -> str:
        args = ", ".join(str(a) for a in self.attrs())
        return f"{self.op_name}({args}) : {typed_shape(self)}"


# ----------------------------------------------------------------------- leaves


@dataclass(frozen=True)
class Init:
    """How a parameter starts: zeros, ones, constant(v), normal(s), uniform(s), glorot, he."""

    kind: str
    args: tuple[float, ...] = ()

    def __str__(self) -> str:
        return self.kind + (f"({', '.join(map(repr, self.args))})" if self.args else "")


@dataclass(frozen=True, eq=False, repr=False)
class Input(Node):
    """Data fed per example: one of the model's inputs (role "input") or targets.

    ``classes``: for a target declared ``class[k]``, k; its value is then one class
    index 0..k-1 per example (shape ``()``). 0 for any other input or target.
    """

    name: str
    role: str
    classes: int = 0
    op_name: ClassVar[str] = "input"

    def key(self) -> tuple[Any, ...]:
        return (Input, self.name)


@dataclass(frozen=True, eq=False, repr=False)
class Param(Node):
    name: str
    init: Init
    op_name: ClassVar[str] = "param"

    def key(self) -> tuple[Any, ...]:
        return (Param, self.name)


@dataclass(frozen=True, eq=False, repr=False)
class Constant(Node):
    value: np.ndarray
    op_name: ClassVar[str] = "constant"

    def key(self) -> tuple[Any, ...]:
        return (Constant, self.value.shape, self.value.tobytes())


@dataclass(frozen=True, eq=False, repr=False)
class BatchSize(Node):
    """The number of examples in the current batch, as a scalar."""

    op_name: ClassVar[str] = "batch_size"


@dataclass(frozen=True, eq=False, repr=False)
class Tangent(Node):
    """A direction in parameter space, fed from outside (Hessian-vector products)."""

    name: str
    op_name: ClassVar[str] = "tangent"

    def key(self) -> tuple[Any, ...]:
        return (Tangent, self.name)


# -------------------------------------------------------------------- compute


@dataclass(frozen=True, eq=False, repr=False)
class Elementwise(Node):
    """A SymPy expression applied element by element; symbol ``x<i>`` is input i."""

    expr: sympy.Expr
    op_name: ClassVar[str] = "elementwise"

    def __repr__(self) -> str:
        return f"{self.expr} : {typed_shape(self)}"


@dataclass(frozen=True, eq=False, repr=False)
class MatMul(Node):
    op_name: ClassVar[str] = "matmul"


class ReduceKind(enum.Enum):
    """What a :class:`Reduce` computes. Code that handles reductions matches every kind and
    fails on one it does not know (:func:`unknown`), so a new kind cannot be taken for a sum."""

    SUM = "sum"
    MEAN = "mean"
    MAX = "max"
    MIN = "min"

    def __str__(self) -> str:
        return self.value


def unknown(value: object) -> NoReturn:
    """The end of an exhaustive match: a value no case handles is a bug, never a default."""
    raise AssertionError(f"no case for {value!r}")


@dataclass(frozen=True, eq=False, repr=False)
class Reduce(Node):
    """Sum, mean, max or min over per-example ``axes``, and over the batch axis if ``batch``.

    The loss of a model is ``Reduce(MEAN, (), batch=True)`` of the
    per-example loss: the mean over the batch.
    """

    kind: ReduceKind
    axes: tuple[int, ...]
    batch: bool = False
    op_name: ClassVar[str] = "reduce"


@dataclass(frozen=True, eq=False, repr=False)
class Expand(Node):
    """Broadcast: input axis i becomes output axis ``dims[i]``; other output axes are new.

    The output is batched if the input is, or if ``shape``'s batch flag asks
    for a batch axis the input lacks (then every example gets the same value).
    """

    dims: tuple[int, ...]
    op_name: ClassVar[str] = "expand"


@dataclass(frozen=True, eq=False, repr=False)
class Einsum(Node):
    """A sum of products over named axes, NumPy's einsum; ``B`` names the batch axis.

    The backward pass writes matrix products as einsums ("Bm,Bk->mk" is the
    gradient of a weight matrix: a product summed over the batch).
    """

    spec: str
    op_name: ClassVar[str] = "einsum"


@dataclass(frozen=True, eq=False, repr=False)
class Slice(Node):
    """Elements ``start:stop:step`` of per-example ``axis`` (``0 <= start < stop``, ``step >= 1``)."""

    axis: int
    start: int
    stop: int
    step: int = 1
    op_name: ClassVar[str] = "slice"


@dataclass(frozen=True, eq=False, repr=False)
class Index(Node):
    """Element ``index`` of per-example ``axis``, which the result does not have: ``x[:, 2]``."""

    axis: int
    index: int
    op_name: ClassVar[str] = "index"


@dataclass(frozen=True, eq=False, repr=False)
class Reshape(Node):
    """The same elements, in row-major order, with per-example ``shape``; the batch axis stays."""

    op_name: ClassVar[str] = "reshape"


@dataclass(frozen=True, eq=False, repr=False)
class Softmax(Node):
    """Softmax over the last axis."""

    op_name: ClassVar[str] = "softmax"


@dataclass(frozen=True, eq=False, repr=False)
class LogSumExp(Node):
    """log(sum(exp(x))) over the last axis, which it removes."""

    op_name: ClassVar[str] = "logsumexp"


@dataclass(frozen=True, eq=False, repr=False)
class Transpose(Node):
    op_name: ClassVar[str] = "transpose"


@dataclass(frozen=True, eq=False, repr=False)
class Concat(Node):
    """Joins its inputs along per-example ``axis``."""

    axis: int
    op_name: ClassVar[str] = "concat"


@dataclass(frozen=True, eq=False, repr=False)
class Loss(Node):
    """A per-example loss of a prediction and a target; its value is a scalar.

    kinds: ``mse`` (mean of squared differences), ``bce`` (binary cross-entropy
    of probabilities), ``bce_logits`` (the same of logits), ``softmax_ce``
    (softmax cross-entropy of logits against a probability vector),
    ``softmax_ce_index`` (the same against a class index: logsumexp(z) - z[label]).
    """

    kind: str
    op_name: ClassVar[str] = "loss"


def typed_shape(node: Node) -> str:
    """The shape with the batch axis shown as ``B``: ``[B, 8]``."""
    dims = (["B"] if node.batched else []) + [str(d) for d in node.shape]
    return "[" + ", ".join(dims) + "]"


@dataclass(frozen=True, eq=False, repr=False)
class ClassDelta(Node):
    """g * (s - onehot(label)), without the one-hot: inputs (s, label, g).

    ``s`` is softmax(z) ``[k]``, ``label`` a class index 0..k-1 (shape ``()``), ``g``
    one number per example: the gradient of softmax cross-entropy against a class
    target. out_j = g * s_j, less g where j is the label (nothing for an index out of range).
    """

    op_name: ClassVar[str] = "class_delta"


# ------------------------------------------------------------ windows


@dataclass(frozen=True)
class Window:
    """Sliding windows over the spatial axes of a per-example ``[C, *spatial]``: convolution and pooling.

    ``kernel``, ``stride``: one number per spatial axis; ``padding``: (before, after) per axis.
    ``channels_last`` lays the windows out as ``[*positions, C, *kernel]``, so that a
    convolution is one matrix product ([positions, C * kernel] by the kernel's [C * kernel, O]);
    else as ``[*kernel, C, *positions]``, offsets first, so that pooling reduces the leading
    axes and each step of it is a whole image of positions (long, contiguous rows).
    """

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    channels_last: bool

    @property
    def padded(self) -> bool:
        """Whether any window hangs over an edge of x."""
        return any(lo or hi for lo, hi in self.padding)

    def __str__(self) -> str:
        """``5x5 stride 2 padding 1 channels last``: how the graph printer shows it."""
        parts = ["x".join(map(str, self.kernel))]
        if any(s != 1 for s in self.stride):
            parts.append("stride " + "x".join(map(str, self.stride)))
        if self.padded:
            parts.append("padding " + " ".join(f"{lo}+{hi}" for lo, hi in self.padding))
        return " ".join([*parts, "channels last" if self.channels_last else "offsets first"])

    def positions(self, spatial: Shape) -> Shape:
        """How many windows fit along each spatial axis: (n + before + after - k) // stride + 1."""
        return tuple(
            (n + lo + hi - k) // s + 1
            for n, k, s, (lo, hi) in zip(spatial, self.kernel, self.stride, self.padding, strict=True)
        )

    def windows_shape(self, x: Shape) -> Shape:
        """The shape of the windows of a per-example ``x`` = [C, *spatial]."""
        channels, out = x[0], self.positions(x[1:])
        if self.channels_last:
            return (*out, channels, *self.kernel)
        return (*self.kernel, channels, *out)


@dataclass(frozen=True, eq=False, repr=False)
class Unfold(Node):
    """Every window of x (im2col); elements of the padding are ``fill`` (0, or -inf for a max).

    Element ``[*p, c, *k]`` (channels last) is x[c, *(p * stride + k - before)].
    """

    window: Window
    fill: float = 0.0
    op_name: ClassVar[str] = "unfold"


@dataclass(frozen=True, eq=False, repr=False)
class Fold(Node):
    """The adjoint of :class:`Unfold` (col2im): each window's elements added back where they
    came from, the padding's dropped; ``shape`` is x's."""

    window: Window
    op_name: ClassVar[str] = "fold"


@dataclass(frozen=True, eq=False, repr=False)
class Permute(Node):
    """The axes reordered: output axis j is input axis ``axes[j]`` (per-example axes; the batch
    axis stays first)."""

    axes: tuple[int, ...]
    op_name: ClassVar[str] = "permute"
