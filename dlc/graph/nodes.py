"""The tensor graph: one class per op, each with its shape rule.

Shapes are per example, as the user writes them. A node whose value depends
on the example (on an input or a target) is *batched*: at run time it has a
leading batch axis that its ``shape`` does not list. Parameters and constants
are not batched. The loss reduces the batch axis by the mean.

Node classes compare by identity; :meth:`Node.key` gives the structural key
that :class:`~dlc.graph.graph.Builder` uses to share equal subgraphs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np
import sympy

from dlc.graph.scalar import element_symbol

Shape = tuple[int, ...]

#: Above this many elements a declared tensor is refused before anything is allocated.
MAX_ELEMENTS = 10**9


class ShapeError(Exception):
    """An op was applied to shapes it does not accept; the front end adds the position."""


def show_shape(shape: Shape) -> str:
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


@dataclass(frozen=True, eq=False)
class Node:
    inputs: tuple[Node, ...]
    shape: Shape
    batched: bool

    op_name: ClassVar[str] = "node"

    def attrs(self) -> tuple[Any, ...]:
        """The op's own settings (everything but inputs, shape and batched)."""
        return tuple(getattr(self, f.name) for f in fields(self)[3:])

    def key(self) -> tuple[Any, ...]:
        return (type(self), self.attrs(), tuple(id(i) for i in self.inputs))

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def __repr__(self) -> str:
        batch = "B, " if self.batched and self.shape else ("B" if self.batched else "")
        args = ", ".join(str(a) for a in self.attrs())
        return f"{self.op_name}({args}) : [{batch}{', '.join(map(str, self.shape))}]"


# ----------------------------------------------------------------------- leaves


@dataclass(frozen=True)
class Init:
    """How a parameter starts: zeros, ones, constant(v), normal(s), uniform(s), glorot, he."""

    kind: str
    args: tuple[float, ...] = ()

    def __str__(self) -> str:
        return self.kind + (f"({', '.join(map(repr, self.args))})" if self.args else "")


@dataclass(frozen=True, eq=False)
class Input(Node):
    """Data fed per example: the model's input (role "input") or its target."""

    name: str
    role: str
    op_name: ClassVar[str] = "input"

    def key(self) -> tuple[Any, ...]:
        return (Input, self.name)


@dataclass(frozen=True, eq=False)
class Param(Node):
    name: str
    init: Init
    op_name: ClassVar[str] = "param"

    def key(self) -> tuple[Any, ...]:
        return (Param, self.name)


@dataclass(frozen=True, eq=False)
class Constant(Node):
    value: np.ndarray
    op_name: ClassVar[str] = "constant"

    def key(self) -> tuple[Any, ...]:
        return (Constant, self.value.shape, self.value.tobytes())


# -------------------------------------------------------------------- compute


@dataclass(frozen=True, eq=False)
class Elementwise(Node):
    """A SymPy expression applied element by element; symbol ``x<i>`` is input i."""

    expr: sympy.Expr
    op_name: ClassVar[str] = "elementwise"

    def __repr__(self) -> str:
        return f"{self.expr} : {_typed(self)}"


@dataclass(frozen=True, eq=False)
class MatMul(Node):
    op_name: ClassVar[str] = "matmul"


@dataclass(frozen=True, eq=False)
class Reduce(Node):
    """Sum or mean over per-example ``axes`` (all of them for a full reduction)."""

    kind: str
    axes: tuple[int, ...]
    op_name: ClassVar[str] = "reduce"


@dataclass(frozen=True, eq=False)
class Softmax(Node):
    """Softmax over the last axis."""

    op_name: ClassVar[str] = "softmax"


@dataclass(frozen=True, eq=False)
class LogSumExp(Node):
    """log(sum(exp(x))) over the last axis, which it removes."""

    op_name: ClassVar[str] = "logsumexp"


@dataclass(frozen=True, eq=False)
class Transpose(Node):
    op_name: ClassVar[str] = "transpose"


@dataclass(frozen=True, eq=False)
class Concat(Node):
    """Joins its inputs along per-example ``axis``."""

    axis: int
    op_name: ClassVar[str] = "concat"


@dataclass(frozen=True, eq=False)
class Loss(Node):
    """A per-example loss of a prediction and a target; its value is a scalar.

    kinds: ``mse`` (mean of squared differences), ``bce`` (binary cross-entropy
    of probabilities), ``bce_logits`` (the same of logits), ``softmax_ce``
    (softmax cross-entropy of logits against a probability vector).
    """

    kind: str
    op_name: ClassVar[str] = "loss"


@dataclass(frozen=True, eq=False)
class BatchMean(Node):
    """The mean over the batch axis: how a per-example loss becomes the loss."""

    op_name: ClassVar[str] = "batch_mean"


def _typed(node: Node) -> str:
    dims = (["B"] if node.batched else []) + [str(d) for d in node.shape]
    return "[" + ", ".join(dims) + "]"


# ------------------------------------------------------------ shape rules


def _batched(*nodes: Node) -> bool:
    return any(n.batched for n in nodes)


def _check_size(shape: Shape) -> Shape:
    if math.prod(shape) > MAX_ELEMENTS:
        raise ShapeError(f"{show_shape(shape)} has more than {MAX_ELEMENTS:.0e} elements")
    return shape


def input_node(name: str, role: str, shape: Shape) -> Input:
    return Input((), _check_size(shape), True, name, role)


def param_node(name: str, shape: Shape, init: Init) -> Param:
    return Param((), _check_size(shape), False, name, init)


def constant(value: np.ndarray) -> Constant:
    value = np.array(value, dtype=np.float64)
    value.setflags(write=False)
    return Constant((), _check_size(value.shape), False, value)


def elementwise(expr: sympy.Expr, inputs: tuple[Node, ...], op: str = "+") -> Elementwise:
    """``expr`` over ``x0, x1, ...`` standing for elements of ``inputs``, broadcast together."""
    shape = broadcast(*(i.shape for i in inputs), op=op)
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
    shape = sa[:-1] + sb[1:]
    return MatMul((a, b), shape, _batched(a, b))


def reduce(kind: str, x: Node, axis: int | None) -> Reduce:
    if axis is None:
        axes = tuple(range(len(x.shape)))
    else:
        if not -len(x.shape) <= axis < len(x.shape):
            raise ShapeError(f"axis {axis} is out of range for {show_shape(x.shape)}")
        axes = (axis % len(x.shape),)
    shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    return Reduce((x,), shape, x.batched, kind, axes)


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
        raise ShapeError(f"axis {axis} is out of range for {show_shape(first)}")
    axis %= rank
    for x in xs[1:]:
        if len(x.shape) != rank or any(
            d != e for i, (d, e) in enumerate(zip(x.shape, first, strict=True)) if i != axis
        ):
            listed = " and ".join(show_shape(x.shape) for x in xs)
            raise ShapeError(f"cannot concat {listed} along axis {axis}")
    shape = list(first)
    shape[axis] = sum(x.shape[axis] for x in xs)
    return Concat(tuple(xs), tuple(shape), _batched(*xs), axis)


def loss(kind: str, prediction: Node, target: Node) -> Loss:
    if prediction.shape != target.shape:
        raise ShapeError(
            f"{kind} needs a prediction and a target of one shape, "
            f"not {show_shape(prediction.shape)} and {show_shape(target.shape)}"
        )
    if kind == "softmax_ce" and not prediction.shape:
        raise ShapeError("softmax_cross_entropy needs vectors of class scores, not scalars")
    return Loss((prediction, target), (), _batched(prediction, target), kind)


def batch_mean(x: Node) -> BatchMean:
    if x.shape:
        raise ShapeError(f"the loss must be a scalar per example, not {show_shape(x.shape)}")
    return BatchMean((x,), (), False)


def symbols(n: int) -> tuple[sympy.Symbol, ...]:
    return tuple(element_symbol(i) for i in range(n))
