"""Vector-Jacobian rules, one per op: the chain rule at tensor level.

``VJP[type(node)](node, g, i, b)`` returns the cotangent of ``node.inputs[i]``
given the cotangent ``g`` of ``node`` (same shape and batch flag as the node).
Every rule builds ordinary graph nodes, so a gradient graph can itself be
differentiated again. Scalar calculus is SymPy's: an elementwise node's
partial derivatives are ``sympy.diff`` of its body.
"""

from __future__ import annotations

import itertools
import math
import weakref
from collections.abc import Callable

import sympy

from dlc.graph import ops
from dlc.graph.graph import Builder
from dlc.graph.nodes import (
    ClassDelta,
    Concat,
    Einsum,
    Elementwise,
    Expand,
    Fold,
    Index,
    LogSumExp,
    Loss,
    MatMul,
    Node,
    Permute,
    Reduce,
    ReduceKind,
    Reshape,
    Slice,
    Softmax,
    Transpose,
    Unfold,
    unknown,
)
from dlc.graph.scalar import as_real, clip01, element_symbol, eq, inside01, sigmoid, substitute_real

Rule = Callable[[Node, Node, int, Builder], Node]
VJP: dict[type[Node], Rule] = {}


def rule(op: type[Node]) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        VJP[op] = fn
        return fn

    return register


def ew(b: Builder, fn: Callable[..., sympy.Expr], *inputs: Node) -> Node:
    """An elementwise node of ``fn`` over ``inputs`` (broadcast together)."""
    expr = fn(*(element_symbol(i) for i in range(len(inputs))))
    return b.add(ops.elementwise(expr, inputs))


def unbroadcast(c: Node, target: Node, b: Builder) -> Node:
    """Sum a cotangent ``c`` down to ``target``'s shape: the reverse of broadcasting."""
    rank, r = len(c.shape), len(target.shape)
    lead = list(range(rank - r))
    stretched = [rank - r + j for j, n in enumerate(target.shape) if n == 1 and c.shape[rank - r + j] != 1]
    over_batch = c.batched and not target.batched
    if not lead and not stretched and not over_batch:
        return c
    reduced = b.add(ops.reduce_axes(ReduceKind.SUM, c, (*lead, *stretched), over_batch))
    if reduced.shape == target.shape:
        return reduced
    kept = tuple(j for j in range(r) if rank - r + j not in stretched)
    return b.add(ops.expand(reduced, target.shape, kept, target.batched))


def _output_form(d: sympy.Expr, expr: sympy.Expr, y: sympy.Symbol) -> sympy.Expr:
    """``d`` written in terms of the node's output ``y`` where that is cheaper (tanh' = 1 - y**2)."""
    if expr.is_Symbol or not d.has(expr):
        return d
    in_y = substitute_real(d, {expr: y})
    return in_y if in_y is not None and sympy.count_ops(in_y) <= sympy.count_ops(d) else d


def _partial(expr: sympy.Expr, x: sympy.Symbol) -> sympy.Expr:
    """d expr / dx, by SymPy, with the derivative of a jump taken as 0, as everywhere but at it.

    (abs' = sign, and sign' = 2 DiracDelta: a Hessian through abs is 0 almost everywhere,
    as step' is; a delta no evaluator could compute.)
    """
    d = sympy.diff(expr, x)
    return d.replace(sympy.DiracDelta, lambda *args: sympy.S.Zero) if d.has(sympy.DiracDelta) else d


@rule(Elementwise)
def _elementwise(node: Node, g: Node, i: int, b: Builder) -> Node:
    assert isinstance(node, Elementwise)
    n = len(node.inputs)
    y, gs = element_symbol(n), element_symbol(n + 1)
    d = _output_form(as_real(_partial(node.expr, element_symbol(i))), node.expr, y)
    contribution = b.add(ops.elementwise(d * gs, (*node.inputs, node, g)))
    return unbroadcast(contribution, node.inputs[i], b)


def _einsum_vjp(spec: str, operands: tuple[Node, ...], g: Node, i: int, b: Builder) -> Node:
    """Cotangent of operand i of an einsum: swap it with the output in the spec."""
    lhs, out = spec.split("->")
    subs = lhs.split(",")
    others = [(s, x) for j, (s, x) in enumerate(zip(subs, operands, strict=True)) if j != i]
    available = set(out).union(*(set(s) for s, _ in others))
    target = subs[i]
    reachable = "".join(c for c in target if c in available)
    new_spec = ",".join([s for s, _ in others] + [out]) + "->" + reachable
    result = b.add(ops.einsum(new_spec, *(x for _, x in others), g))
    if reachable == target:
        return result
    # An axis only operand i had was summed away: its cotangent is the same along it.
    x = operands[i]
    letters = target.replace("B", "")
    dims = tuple(k for k, c in enumerate(letters) if c in reachable)
    return b.add(ops.expand(result, x.shape, dims, x.batched))


@rule(Einsum)
def _einsum(node: Node, g: Node, i: int, b: Builder) -> Node:
    assert isinstance(node, Einsum)
    return _einsum_vjp(node.spec, node.inputs, g, i, b)


@rule(MatMul)
def _matmul(node: Node, g: Node, i: int, b: Builder) -> Node:
    return _einsum_vjp(ops.matmul_spec(*node.inputs), node.inputs, g, i, b)


@rule(Reduce)
def _reduce(node: Node, g: Node, i: int, b: Builder) -> Node:
    assert isinstance(node, Reduce)
    (x,) = node.inputs
    kept = tuple(k for k in range(len(x.shape)) if k not in node.axes)

    def spread(v: Node) -> Node:
        """``v`` (of the reduction's shape) repeated along the reduced axes, to x's shape."""
        if v.shape == x.shape and v.batched == x.batched:
            return v
        return b.add(ops.expand(v, x.shape, kept, x.batched))

    match node.kind:
        case ReduceKind.SUM:
            return spread(g)
        case ReduceKind.MEAN:
            count = math.prod(x.shape[k] for k in node.axes)
            if node.batch:  # scale before spreading: 1/B stays one number, not a batch of them
                return spread(ew(b, lambda s, n: s / (count * n), g, b.add(ops.batch_size())))
            return spread(ew(b, lambda s: s / count, g))
        case ReduceKind.MAX | ReduceKind.MIN:
            # To the winner; tied winners share it evenly (torch's rule for amax and amin).
            winner = ew(b, eq, x, spread(node))
            ties = b.add(ops.reduce_axes(ReduceKind.SUM, winner, node.axes))
            return ew(b, lambda w, s, n: w * s / n, winner, spread(g), spread(ties))
        case other:
            unknown(other)


@rule(Expand)
def _expand(node: Node, g: Node, i: int, b: Builder) -> Node:
    assert isinstance(node, Expand)
    (x,) = node.inputs
    new_axes = tuple(k for k in range(len(node.shape)) if k not in node.dims)
    over_batch = node.batched and not x.batched
    return b.add(ops.reduce_axes(ReduceKind.SUM, g, new_axes, over_batch))


@rule(Softmax)
def _softmax(node: Node, g: Node, i: int, b: Builder) -> Node:
    # dx = s * (g - sum(g * s)) along the last axis.
    last = len(node.shape) - 1
    total = b.add(ops.reduce_axes(ReduceKind.SUM, ew(b, lambda a, s: a * s, g, node), (last,)))
    spread = b.add(ops.expand(total, node.shape, tuple(range(last)), node.batched))
    return ew(b, lambda s, a, t: s * (a - t), node, g, spread)


@rule(LogSumExp)
def _logsumexp(node: Node, g: Node, i: int, b: Builder) -> Node:
    (x,) = node.inputs
    spread = b.add(ops.expand(g, x.shape, tuple(range(len(x.shape) - 1)), x.batched))
    return ew(b, lambda s, a: s * a, b.add(ops.softmax(x)), spread)


@rule(Transpose)
def _transpose(node: Node, g: Node, i: int, b: Builder) -> Node:
    return b.add(ops.transpose(g))


@rule(Concat)
def _concat(node: Node, g: Node, i: int, b: Builder) -> Node:
    assert isinstance(node, Concat)
    start, stop = _concat_offsets(node)[i : i + 2]
    part = b.add(ops.slice_axis(g, node.axis, start, stop))
    return unbroadcast(part, node.inputs[i], b)


_OFFSETS: weakref.WeakKeyDictionary[Node, list[int]] = weakref.WeakKeyDictionary()


def _concat_offsets(node: Concat) -> list[int]:
    """Where each input starts along the axis (and where the last ends): once per node, not per input."""
    if node not in _OFFSETS:
        _OFFSETS[node] = [0, *itertools.accumulate(x.shape[node.axis] for x in node.inputs)]
    return _OFFSETS[node]


@rule(Slice)
def _slice(node: Node, g: Node, i: int, b: Builder) -> Node:
    """The slice's cotangent put back where its elements came from, zeros elsewhere."""
    assert isinstance(node, Slice)
    (x,) = node.inputs
    axis, n = node.axis, x.shape[node.axis]

    def zeros(length: int) -> Node:
        shape = tuple(length if k == axis else d for k, d in enumerate(g.shape))
        return b.add(ops.expand(b.add(ops.literal(sympy.Integer(0))), shape, (), g.batched))

    if node.step > 1:
        # Each element followed by step - 1 zeros: [m] -> [m, 1] beside [m, step - 1] -> [m * step].
        m = g.shape[axis]
        column = (*g.shape[: axis + 1], 1, *g.shape[axis + 1 :])
        gaps = (*g.shape[: axis + 1], node.step - 1, *g.shape[axis + 1 :])
        zero = b.add(ops.literal(sympy.Integer(0)))
        filler = b.add(ops.expand(zero, gaps, (), g.batched))
        spaced = b.add(ops.concat((b.add(ops.reshape(g, column)), filler), axis + 1))
        flat = (*g.shape[:axis], m * node.step, *g.shape[axis + 1 :])
        g = b.add(ops.reshape(spaced, flat))
        covered = (m - 1) * node.step + 1  # up to the last element taken, not its trailing zeros
        g = b.add(ops.slice_axis(g, axis, 0, covered))
    pieces = [g]
    if node.start > 0:
        pieces.insert(0, zeros(node.start))
    end = node.start + g.shape[axis]
    if end < n:
        pieces.append(zeros(n - end))
    joined = b.add(ops.concat(tuple(pieces), axis)) if len(pieces) > 1 else g
    return unbroadcast(joined, x, b)


@rule(Index)
def _index(node: Node, g: Node, i: int, b: Builder) -> Node:
    """As the gradient of the one-element slice: the axis put back, then zeros around it."""
    assert isinstance(node, Index)
    (x,) = node.inputs
    kept = (*node.shape[: node.axis], 1, *node.shape[node.axis :])
    part = ops.slice_axis(x, node.axis, node.index, node.index + 1)  # only read by the rule, never built
    return _slice(part, b.add(ops.reshape(g, kept)), 0, b)


@rule(Reshape)
def _reshape(node: Node, g: Node, i: int, b: Builder) -> Node:
    (x,) = node.inputs
    return b.add(ops.reshape(g, x.shape))


@rule(Unfold)
def _unfold(node: Node, g: Node, i: int, b: Builder) -> Node:
    """Each window's cotangent added back where its elements came from (col2im); none to the padding."""
    assert isinstance(node, Unfold)
    (x,) = node.inputs
    return unbroadcast(b.add(ops.fold(g, x.shape, node.window)), x, b)


@rule(Fold)
def _fold(node: Node, g: Node, i: int, b: Builder) -> Node:
    """Fold is linear and Unfold (with zeros in the padding) its adjoint."""
    assert isinstance(node, Fold)
    return b.add(ops.unfold(g, node.window))


@rule(Permute)
def _permute(node: Node, g: Node, i: int, b: Builder) -> Node:
    assert isinstance(node, Permute)
    inverse = tuple(sorted(range(len(node.axes)), key=node.axes.__getitem__))
    return b.add(ops.permute(g, inverse))


# Per-example losses; g is the per-example scalar cotangent, n the number of
# elements a prediction has (losses average over them).
_LOSS_GRADS: dict[str, tuple[Callable[..., sympy.Expr], Callable[..., sympy.Expr]]] = {
    "mse": (lambda p, y, g, n: 2 * (p - y) * g / n, lambda p, y, g, n: -2 * (p - y) * g / n),
    "bce_logits": (lambda z, y, g, n: (sigmoid(z) - y) * g / n, lambda z, y, g, n: -z * g / n),
    "bce": (
        # inside01: where p was clipped, the loss is flat in p. Inside, clip01(p) is p; written
        # so, a p that overflowed to inf gives 0 there, not inf * 0.
        lambda p, y, g, n: inside01(p) * (clip01(p) - y) * g / (n * clip01(p) * (1 - clip01(p))),
        lambda p, y, g, n: (sympy.log(1 - clip01(p)) - sympy.log(clip01(p))) * g / n,
    ),
}


@rule(Loss)
def _loss(node: Node, g: Node, i: int, b: Builder) -> Node:
    assert isinstance(node, Loss)
    p, y = node.inputs
    n = max(p.size, 1)
    if node.kind == "softmax_ce_index":  # d/dz = softmax(z) - onehot(label), the label is data
        assert i == 0, "a class index is data: nothing is differentiated by it"
        return b.add(ops.class_delta(b.add(ops.softmax(p)), y, g))
    if node.kind == "softmax_ce":
        # The stable, cheap rule: d/dz = softmax(z) - y;  d/dy = -(z - logsumexp(z)).
        if i == 0:
            c = ew(b, lambda s, t, a: (s - t) * a, b.add(ops.softmax(p)), y, g)
        else:
            c = ew(b, lambda z, lse, a: (lse - z) * a, p, b.add(ops.logsumexp(p)), g)
    else:
        fn = _LOSS_GRADS[node.kind][i]
        c = ew(b, lambda pp, yy, gg: fn(pp, yy, gg, n), p, y, g)
    return unbroadcast(c, node.inputs[i], b)


@rule(ClassDelta)
def _class_delta(node: Node, g: Node, i: int, b: Builder) -> Node:
    """Only through s (second derivatives of the loss): g * s less a constant in s."""
    s, _, weight = node.inputs
    if i != 0:
        raise NotImplementedError(
            "no second derivative of softmax_cross_entropy of a class target by its weight"
        )
    return unbroadcast(ew(b, lambda c, w: c * w, g, weight), s, b)
