"""The built-in function library: signature and graph construction of each.

Each entry says which arguments a function takes and how a call becomes
graph nodes; :mod:`dlc.frontend.lower` checks the call against the signature
and hands the arguments over through a :class:`Call` context.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import sympy

from dlc.graph import nodes, scalar
from dlc.graph import ops as g


class Call(Protocol):
    """What a built-in sees of its call (implemented by the lowering pass)."""

    def given(self, name: str) -> bool: ...
    def tensor(self, name: str) -> nodes.Node: ...
    def tensors(self) -> list[nodes.Node]: ...
    def integer(self, name: str) -> int | None: ...
    def make(self, build: Callable[..., nodes.Node], *args: object) -> nodes.Node: ...
    def elementwise(self, fn: Callable[..., sympy.Expr], *args: nodes.Node) -> nodes.Node: ...


@dataclass(frozen=True)
class Builtin:
    """A built-in function: ``params`` in order, those in ``optional`` may be left out."""

    params: tuple[str, ...]
    build: Callable[[Call], nodes.Node]
    optional: tuple[str, ...] = ()
    variadic: bool = False  # takes any number of tensors (``params`` then are keywords only)
    doc: str = ""


def _unary(fn: Callable[[sympy.Expr], sympy.Expr], doc: str) -> Builtin:
    return Builtin(("x",), lambda c: c.elementwise(fn, c.tensor("x")), doc=doc)


def _leaky_relu(c: Call) -> nodes.Node:
    slope = c.tensor("alpha") if c.given("alpha") else c.make(g.literal, sympy.Rational(1, 100))
    return c.elementwise(scalar.leaky_relu, c.tensor("x"), slope)


def _reduce(kind: str) -> Callable[[Call], nodes.Node]:
    return lambda c: c.make(g.reduce, kind, c.tensor("x"), c.integer("axis"))


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
    xs = tuple(c.tensors())
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
    # tensor ops
    "sum": Builtin(
        ("x", "axis"), _reduce("sum"), optional=("axis",), doc="sum of all elements, or along axis"
    ),
    "mean": Builtin(
        ("x", "axis"), _reduce("mean"), optional=("axis",), doc="mean of all elements, or along axis"
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
}
