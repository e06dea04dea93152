"""The reverse sweep: topological order, then each op's rule in reverse.

Cotangents of a node used more than once are summed. The result shares every
forward node it needs, so all gradients cost a small multiple of the forward
pass.
"""

from __future__ import annotations

from collections.abc import Iterable

import sympy

from dlc.grad.rules import VJP, ew
from dlc.graph import ops
from dlc.graph.graph import Builder, topological_order
from dlc.graph.nodes import Node


class NotDifferentiableError(Exception):
    """An op without a vector-Jacobian rule lies between the loss and a parameter."""


def backward(output: Node, wrt: Iterable[Node], builder: Builder) -> dict[Node, Node]:
    """Gradients of the scalar ``output`` with respect to each node of ``wrt``.

    Args:
        output: an unbatched scalar node (the loss).
        wrt: the nodes to differentiate by (parameters).
        builder: makes the new nodes (equal nodes are shared).

    Returns:
        For each node of ``wrt``, its gradient: a node of the same shape (zero
        if the output does not depend on it).
    """
    targets = list(wrt)
    grads = cotangents(output, targets, builder)
    return {t: grads.get(t) or _zeros(t, builder) for t in targets}


def cotangents(output: Node, targets: list[Node], builder: Builder) -> dict[Node, Node]:
    """The reverse sweep: d output / d node for every node between ``targets`` and ``output``."""
    order = topological_order([output])
    needed = _on_a_path(order, set(targets))
    pending: dict[Node, list[Node]] = {output: [builder.add(ops.literal(sympy.Integer(1)))]}
    grads: dict[Node, Node] = {}
    for node in reversed(order):
        if node not in pending:
            continue
        g = _total(pending.pop(node), builder)
        grads[node] = g
        for i, inp in enumerate(node.inputs):
            if inp in needed:
                pending.setdefault(inp, []).append(_vjp(node, g, i, builder))
    return grads


def _vjp(node: Node, g: Node, i: int, builder: Builder) -> Node:
    rule = VJP.get(type(node))
    if rule is None:
        raise NotDifferentiableError(f"no derivative rule for {node.op_name}")
    c = rule(node, g, i, builder)
    x = node.inputs[i]
    assert (c.shape, c.batched) == (x.shape, x.batched), f"{node.op_name} rule gave {c!r} for {x!r}"
    return c


def _on_a_path(order: list[Node], targets: set[Node]) -> set[Node]:
    """Nodes through which the output depends on a target (targets included)."""
    needed: set[Node] = set()
    for node in order:
        if node in targets or any(i in needed for i in node.inputs):
            needed.add(node)
    return needed


#: Cotangents are summed this many at a time: a value used thousands of times would
#: otherwise get one elementwise node of thousands of inputs, which a backend turns
#: into one loop body (LLVM's optimiser is slower than linear in its size).
MAX_SUMMED = 32


def _total(parts: list[Node], builder: Builder) -> Node:
    """The sum of the cotangents ``parts``, as a tree of sums of at most :data:`MAX_SUMMED` each."""
    while len(parts) > 1:
        groups = [parts[k : k + MAX_SUMMED] for k in range(0, len(parts), MAX_SUMMED)]
        parts = [g[0] if len(g) == 1 else ew(builder, lambda *xs: sympy.Add(*xs), *g) for g in groups]
    return parts[0]


def _zeros(like: Node, builder: Builder) -> Node:
    zero = builder.add(ops.literal(sympy.Integer(0)))
    return builder.add(ops.expand(zero, like.shape, (), like.batched))
