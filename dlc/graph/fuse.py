"""Elementwise fusion: merge each run of elementwise ops into one node.

A producer is merged into its consumer when both are elementwise, the
consumer is its only user, and both have the same shape (so no value is
computed more often than before), unless the merged body would nest deeper
than :data:`MAX_BODY_DEPTH`, be larger than :data:`MAX_BODY_SIZE` or read more than
:data:`MAX_BODY_INPUTS` inputs. The fused node's body is one SymPy
expression, which later passes differentiate with ``sympy.diff`` and the
backends print as one loop.
"""

from __future__ import annotations

from dataclasses import replace

import sympy

from dlc.graph.graph import Builder, Graph, consumers, topological_order
from dlc.graph.nodes import Elementwise, Expand, Node
from dlc.graph.scalar import element_symbol, substitute_real

#: A fused body stays at most this deep, so that printed code stays readable and
#: within what compilers (Python's parser among them) accept.
MAX_BODY_DEPTH = 24
#: ... and at most this large, counted as a tree (a subexpression used twice counts
#: twice, as printing and differentiating it cost twice): fusing a chain of n
#: elementwise values then costs O(n) bodies of bounded size, not one body of O(n)
#: (or, with shared terms, O(2^n)) that every later pass walks again per merge.
MAX_BODY_SIZE = 400
#: ... and reads at most this many inputs: differentiating a body of k inputs takes k
#: partial derivatives of a body of size O(k), so k is what makes the reverse sweep
#: (and the printers after it) quadratic in a long sum or product of distinct values.
MAX_BODY_INPUTS = 32
#: ... and its exact numbers stay this small (numerator and denominator bits):
#: ``a = 1.5 * a + w`` a thousand times folds to thousands of digits otherwise.
#: A float64 written as a decimal rational takes up to ~1,100 (1e-310 is 1/10**310).
MAX_NUMBER_BITS = 2_400


def expression_depth(expr: sympy.Expr) -> int:
    """How deeply a SymPy expression nests (a symbol or number is 1)."""
    deepest = 0
    stack = [(expr, 1)]
    while stack:
        e, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((a, d + 1) for a in e.args)
    return deepest


def fuse(graph: Graph) -> Graph:
    """Return ``graph`` with maximal elementwise runs merged into single nodes."""
    new = fuse_nodes(graph.roots)
    names = {new[n]: name for n, name in graph.names.items() if n in new}
    return replace(
        graph,
        outputs={k: new[v] for k, v in graph.outputs.items()},
        loss=new[graph.loss],
        names=names,
    )


def fuse_nodes(roots: tuple[Node, ...]) -> dict[Node, Node]:
    """Fuse the graph below ``roots``; returns the new node for every old one."""
    users = consumers(roots)
    for root in roots:
        users[root] = [*users[root], root]  # a root is also used by the caller
    builder = Builder()
    new: dict[Node, Node] = {}
    for node in topological_order(roots):
        if isinstance(node, Elementwise):
            new[node] = builder.add(_absorb(node, users, new))
        elif node.inputs:
            new[node] = builder.add(replace(node, inputs=tuple(new[i] for i in node.inputs)))
        else:
            new[node] = node
    return new


def _unexpanded(node: Node) -> Node:
    """What an expand broadcasts, when an elementwise consumer can broadcast it just as well.

    That is when the expand only adds leading axes (NumPy aligns from the
    right) or a batch axis: the consumer's other inputs, or its own shape,
    carry the rest.
    """
    if not isinstance(node, Expand):
        return node
    (x,) = node.inputs
    trailing = node.dims == tuple(range(len(node.shape) - len(x.shape), len(node.shape)))
    return x if trailing and (x.batched or not node.batched or not x.shape) else node


def _absorb(node: Elementwise, users: dict[Node, list[Node]], new: dict[Node, Node]) -> Elementwise:
    """``node`` with every single-use, same-shape elementwise input substituted in."""
    fusable = {i for i, old in enumerate(node.inputs) if _fusable(node, old, users, new)}
    fused = _merge(node, new, fusable)
    if fused is None:
        # Some producer would make the body complex (see substitute_real): take
        # producers one by one and leave out those that do.
        taken: set[int] = set()
        for i in sorted(fusable):
            if _merge(node, new, taken | {i}) is not None:
                taken.add(i)
        fused = _merge(node, new, taken)
    assert fused is not None  # with no producer taken, only symbols are renamed
    return fused


def _fusable(node: Elementwise, old: Node, users: dict[Node, list[Node]], new: dict[Node, Node]) -> bool:
    producer = _unexpanded(new[old])
    return (
        isinstance(old, Elementwise)
        and len(users[old]) == 1
        and isinstance(producer, Elementwise)
        and producer.shape == node.shape
        and producer.batched == node.batched
        and expression_depth(producer.expr) + expression_depth(node.expr) <= MAX_BODY_DEPTH
    )


def _merge(node: Elementwise, new: dict[Node, Node], take: set[int]) -> Elementwise | None:
    """``node`` with the producers of the inputs numbered in ``take`` substituted in, or None."""
    inputs: list[Node] = []
    mapping: dict[sympy.Symbol, sympy.Expr] = {}
    for i, old in enumerate(node.inputs):
        producer = _unexpanded(new[old])
        if i in take:
            assert isinstance(producer, Elementwise)
            shift = {element_symbol(j): element_symbol(len(inputs) + j) for j in range(len(producer.inputs))}
            mapping[element_symbol(i)] = producer.expr.xreplace(shift)
            inputs.extend(producer.inputs)
        else:
            mapping[element_symbol(i)] = element_symbol(len(inputs))
            inputs.append(producer)
    expr = substitute_real(node.expr, mapping)
    if expr is None or (take and (len(inputs) > MAX_BODY_INPUTS or _too_large(expr))):
        return None
    return Elementwise(tuple(inputs), node.shape, node.batched, expr)


def _too_large(expr: sympy.Expr) -> bool:
    """Whether a merged body is past :data:`MAX_BODY_SIZE` or holds a number past :data:`MAX_NUMBER_BITS`.

    Stops counting at the limit, so a check costs O(MAX_BODY_SIZE) however large the body.
    """
    for count, e in enumerate(sympy.preorder_traversal(expr), 1):
        if count > MAX_BODY_SIZE:
            return True
        if isinstance(e, sympy.Rational) and e.p.bit_length() + e.q.bit_length() > MAX_NUMBER_BITS:
            return True
    return False
