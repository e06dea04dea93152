"""The built-in function library: signature and graph construction of each.

Each entry says which arguments a function takes and how a call becomes
graph nodes; :mod:`dlc.frontend.lower` checks the call against the signature
and hands the arguments over through a :class:`Call` context.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import sympy

from dlc.frontend import conv
from dlc.frontend.signature import Builtin, Call
from dlc.graph import nodes, scalar
from dlc.graph import ops as g


def _unary(fn: Callable[[sympy.Expr], sympy.Expr], doc: str) -> Builtin:
    return Builtin(("x",), lambda c: c.elementwise(fn, c.tensor("x")), doc=doc)


def _leaky_relu(c: Call) -> nodes.Node:
    slope = c.tensor("alpha") if c.given("alpha") else c.make(g.literal, sympy.Rational(1, 100))
    return c.elementwise(scalar.leaky_relu, c.tensor("x"), slope)


def _reduce(kind: nodes.ReduceKind) -> Callable[[Call], nodes.Node]:
    def build(c: Call) -> nodes.Node:
        x = c.tensor("x")
        return c.make(g.reduce, kind, x, c.integer("axis"))

    return build


def _extreme(kind: nodes.ReduceKind) -> Callable[[Call], nodes.Node]:
    """max(x) and max(x, axis); a tensor where the axis goes is the elementwise maximum's habit."""
    other = {nodes.ReduceKind.MAX: "maximum", nodes.ReduceKind.MIN: "minimum"}[kind]

    def build(c: Call) -> nodes.Node:
        x = c.tensor("x")
        if c.given("axis") and not c.is_integer("axis"):
            c.fail(
                f"the second argument of {kind} is an axis (a whole number)",
                "axis",
                hint=f"for the elementwise {other} of two tensors write {other}(a, b)",
            )
        return c.make(g.reduce, kind, x, c.integer("axis"))

    return build


def _clip(c: Call) -> nodes.Node:
    """lo where x < lo, hi where x > hi, else x: the gradient reaches x between the bounds, ends
    included (torch.clamp's rule), and reaches lo or hi where it is the value."""
    x, lo, hi = c.tensor("x"), c.tensor("lo"), c.tensor("hi")
    numbers = [n.expr for n in (lo, hi) if isinstance(n, nodes.Elementwise) and not n.inputs]
    if len(numbers) == 2 and numbers[0] > numbers[1]:
        c.fail(f"clip's lower bound {numbers[0]} is above its upper bound {numbers[1]}", "lo")
    return c.elementwise(
        lambda v, a, b: scalar.where(scalar.lt(v, a), a, scalar.where(scalar.gt(v, b), b, v)), x, lo, hi
    )


def _reshape(c: Call) -> nodes.Node:
    x, wanted = c.tensor("x"), c.dims("shape")
    if any(d == 0 or d < -1 for d in wanted) or wanted.count(-1) > 1:
        c.fail("a shape's dimensions are positive whole numbers, and at most one may be -1", "shape")
    known = math.prod(d for d in wanted if d != -1)
    if -1 in wanted:
        if x.size % known:
            c.fail(
                f"cannot reshape {nodes.show_shape(x.shape)} ({x.size} elements) to {list(wanted)}", "shape"
            )
        wanted = tuple(x.size // known if d == -1 else d for d in wanted)
    return c.make(g.reshape, x, wanted)


def _flatten(c: Call) -> nodes.Node:
    x = c.tensor("x")
    return c.make(g.reshape, x, (x.size,))


def _stack(c: Call) -> nodes.Node:
    """Tensors of one shape along a new axis: a reshape of each, then a concat."""
    axis = 0 if (given := c.integer("axis")) is None else given
    xs = c.tensors()
    if not xs:
        c.fail("stack needs at least one tensor")
    shape = xs[0].shape
    if any(x.shape != shape for x in xs):
        listed = " and ".join(dict.fromkeys(nodes.show_shape(x.shape) for x in xs))
        c.fail(f"stack needs tensors of one shape, not {listed}")
    rank = len(shape) + 1
    if not -rank <= axis < rank:
        c.fail(f"axis {axis} is out of range for stacking {nodes.show_shape(shape)}", "axis")
    axis %= rank
    grown = (*shape[:axis], 1, *shape[axis:])
    return _concat_tree(c, tuple(c.make(g.reshape, x, grown) for x in xs), axis)


def _loss(kind: str) -> Callable[[Call], nodes.Node]:
    return lambda c: c.make(g.loss, kind, c.tensor("prediction"), c.tensor("target"))


def _bce(c: Call) -> nodes.Node:
    """Binary cross-entropy of probabilities; of sigmoid(z) it becomes the stable logit form.

    Shapes that differ are reported by the form the user wrote, as bce's mistake.
    """
    p, y = c.tensor("prediction"), c.tensor("target")
    if (
        isinstance(p, nodes.Elementwise)
        and p.expr == scalar.sigmoid(scalar.element_symbol(0))
        and p.shape == y.shape
    ):
        return c.make(g.loss, "bce_logits", p.inputs[0], y)
    return c.make(g.loss, "bce", p, y)


#: A concat of more tensors is built as a tree of concats of at most this many each: a
#: backend writes one kernel per concat, and LLVM's optimiser is slower than linear in
#: the size of one (sum(concat(w, ..., w)) of 4,000 copies: 90 s, against 5 s as a tree).
MAX_CONCAT = 32


def _concat(c: Call) -> nodes.Node:
    axis = 0 if (given := c.integer("axis")) is None else given
    return _concat_tree(c, tuple(c.tensors()), axis)


def _concat_tree(c: Call, xs: tuple[nodes.Node, ...], axis: int) -> nodes.Node:
    while len(xs) > MAX_CONCAT:
        groups = [xs[k : k + MAX_CONCAT] for k in range(0, len(xs), MAX_CONCAT)]
        xs = tuple(group[0] if len(group) == 1 else c.make(g.concat, group, axis) for group in groups)
    return c.make(g.concat, xs, axis)


BUILTINS: dict[str, Builtin] = {
    # elementwise activations
    "relu": _unary(scalar.relu, "max(x, 0)"),
    "tanh": _unary(sympy.tanh, "hyperbolic tangent"),
    "sigmoid": _unary(scalar.sigmoid, "1 / (1 + exp(-x))"),
    "softplus": _unary(scalar.softplus, "log(1 + exp(x))"),
    "leaky_relu": Builtin(
        ("x", "alpha"), _leaky_relu, optional=("alpha",), doc="x if x > 0 else alpha*x (alpha 0.01)"
    ),
    # elementwise maths
    "exp": _unary(sympy.exp, "e to the x"),
    "log": _unary(sympy.log, "natural logarithm"),
    "sqrt": _unary(sympy.sqrt, "square root"),
    "abs": _unary(sympy.Abs, "absolute value"),
    "sin": _unary(sympy.sin, "sine"),
    "cos": _unary(sympy.cos, "cosine"),
    "pow": Builtin(
        ("x", "p"), lambda c: c.elementwise(sympy.Pow, c.tensor("x"), c.tensor("p")), doc="x ** p"
    ),
    # choosing elements
    "maximum": Builtin(
        ("a", "b"),
        lambda c: c.elementwise(scalar.maximum, c.tensor("a"), c.tensor("b")),
        doc="elementwise larger of a and b",
    ),
    "minimum": Builtin(
        ("a", "b"),
        lambda c: c.elementwise(scalar.minimum, c.tensor("a"), c.tensor("b")),
        doc="elementwise smaller of a and b",
    ),
    "clip": Builtin(("x", "lo", "hi"), _clip, doc="x limited to [lo, hi]"),
    "where": Builtin(
        ("condition", "a", "b"),
        lambda c: c.elementwise(scalar.where, c.tensor("condition"), c.tensor("a"), c.tensor("b")),
        doc="a where condition is not 0, else b",
    ),
    # tensor ops
    "sum": Builtin(
        ("x", "axis"),
        _reduce(nodes.ReduceKind.SUM),
        optional=("axis",),
        doc="sum of all elements, or along axis",
    ),
    "mean": Builtin(
        ("x", "axis"),
        _reduce(nodes.ReduceKind.MEAN),
        optional=("axis",),
        doc="mean of all elements, or along axis",
    ),
    "max": Builtin(
        ("x", "axis"),
        _extreme(nodes.ReduceKind.MAX),
        optional=("axis",),
        doc="largest element, or largest along axis",
    ),
    "min": Builtin(
        ("x", "axis"),
        _extreme(nodes.ReduceKind.MIN),
        optional=("axis",),
        doc="smallest element, or smallest along axis",
    ),
    "reshape": Builtin(
        ("x", "shape"), _reshape, doc="the same elements in another shape ([2, 8], -1 inferred)"
    ),
    "flatten": Builtin(("x",), _flatten, doc="the elements as a vector"),
    "stack": Builtin(
        ("axis",), _stack, optional=("axis",), variadic=True, doc="tensors of one shape along a new axis"
    ),
    "softmax": Builtin(("x",), lambda c: c.make(g.softmax, c.tensor("x")), doc="softmax over the last axis"),
    "logsumexp": Builtin(
        ("x",), lambda c: c.make(g.logsumexp, c.tensor("x")), doc="log(sum(exp(x))) over the last axis"
    ),
    "transpose": Builtin(("x",), lambda c: c.make(g.transpose, c.tensor("x")), doc="matrix transpose"),
    "concat": Builtin(
        ("axis",), _concat, optional=("axis",), variadic=True, doc="join tensors along axis (0)"
    ),
    # losses: a scalar per example; the loss statement averages over the batch
    "mse": Builtin(("prediction", "target"), _loss("mse"), doc="mean squared error"),
    "bce": Builtin(("prediction", "target"), _bce, doc="binary cross-entropy of probabilities"),
    "bce_with_logits": Builtin(
        ("prediction", "target"), _loss("bce_logits"), doc="binary cross-entropy of logits"
    ),
    "softmax_cross_entropy": Builtin(
        ("prediction", "target"), _loss("softmax_ce"), doc="cross-entropy of softmax(logits)"
    ),
    # convolution and pooling
    **conv.library(),
}
