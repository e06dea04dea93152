"""Op counts and a flop estimate for a set of graph nodes, per example.

Flops count a multiply-add as two, an elementwise node as its SymPy body's
operation count per element, reductions and softmax-like ops by the elements
they read; data movement (expand, slice, concat, transpose) counts zero. Ops
summed over the batch are counted per example, like the rest.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import sympy

from dlc.graph.nodes import (
    Einsum,
    Elementwise,
    LogSumExp,
    Loss,
    MatMul,
    Node,
    Reduce,
    Softmax,
)
from dlc.graph.ops import matmul_spec


@dataclass(frozen=True)
class Stats:
    ops: Counter[str]
    flops: int

    @property
    def count(self) -> int:
        return sum(self.ops.values())


def flops(node: Node) -> int:
    """Estimated floating-point operations of one node, for one example."""
    if isinstance(node, Elementwise):
        return node.size * max(1, int(sympy.count_ops(node.expr)))
    if isinstance(node, (MatMul, Einsum)):
        spec = node.spec if isinstance(node, Einsum) else matmul_spec(*node.inputs)
        sizes: dict[str, int] = {}
        for sub, x in zip(spec.split("->")[0].split(","), node.inputs, strict=True):
            sizes.update(zip(sub.replace("B", ""), x.shape, strict=True))
        return 2 * math.prod(sizes.values())
    if isinstance(node, (Reduce, Loss)):
        return 3 * node.inputs[0].size if isinstance(node, Loss) else node.inputs[0].size
    if isinstance(node, (Softmax, LogSumExp)):
        return 4 * node.inputs[0].size
    return 0


def stats(nodes: Iterable[Node]) -> Stats:
    """Counts of computing ops (leaves excluded) and their flops."""
    computing = [n for n in nodes if n.inputs]
    return Stats(Counter(n.op_name for n in computing), sum(flops(n) for n in computing))
