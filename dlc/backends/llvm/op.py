"""What every op's kernel body works with: the :class:`Op` it is given, and its operands as views.

A kernel of :mod:`dlc.backends.llvm.ops` (and of :mod:`~dlc.backends.llvm.rows`,
:mod:`~dlc.backends.llvm.tensor`) sees each input as a :class:`~dlc.backends.llvm.kernels.View`
through the node's own index space (:func:`over`): a new kernel is a loop nest of
:mod:`~dlc.backends.llvm.kernels` over these views.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from llvmlite import ir

from dlc.backends.llvm.kernels import Extent, Kernel, Operand, View
from dlc.graph.nodes import Node

PTR = ir.PointerType()


@dataclass
class Op:
    """What a kernel body needs: the builder, the output, and each input as a pointer or a value."""

    k: Kernel
    node: Node
    out: ir.Value
    sources: dict[Node, Operand]
    gemm: ir.Value  # BLAS's gemm, or null
    gemm_min: ir.Value  # the multiply-adds from which a product goes to it
    temp: ir.Value  # scratch of temp_size(node) elements: a packed operand, a pass's intermediates
    softmax: ir.Value | None = None  # a softmax cross-entropy's kernel also writes softmax(z) here

    def src(self, x: Node) -> Operand:
        return self.sources[x]


# ---------------------------------------------------------------- shapes


def extents(node: Node) -> list[Extent]:
    """The node's index space: the batch axis (if batched), then its own axes."""
    return space(node.shape, node.batched)


def space(shape: Sequence[int], batched: bool) -> list[Extent]:
    return ([Extent(1, True)] if batched else []) + [Extent(d) for d in shape]


def strides(shape: Sequence[int]) -> list[int]:
    """Row-major strides in elements."""
    out, step = [], 1
    for d in reversed(shape):
        out.append(step)
        step *= d
    return out[::-1]


def home(node: Node, ptr: ir.Value) -> View:
    """A node's own buffer over its own index space."""
    lead = [math.prod(node.shape)] if node.batched else []
    return View(ptr, tuple(lead + strides(node.shape)))


def over(op: Op, x: Node, out: Node, axis_map: Sequence[int | None], offset: int = 0) -> Operand:
    """Input ``x`` seen from ``out``'s index space: out axis j reads x's axis ``axis_map[j]``.

    ``axis_map`` covers per-example axes only; None means x does not vary along it. The
    batch axis of ``out`` (if any) reads x's batch axis, or repeats x when x has none.
    """
    source = op.src(x)
    if not isinstance(source, ir.Value) or isinstance(source, ir.Constant) or source.type != PTR:
        return source
    natural = strides(x.shape)
    lead = ([math.prod(x.shape) if x.batched else 0]) if out.batched else []
    per = [0 if a is None else natural[a] for a in axis_map]
    return View(source, tuple(lead + per), offset)


def broadcast_map(x: Node, out: Node) -> list[int | None]:
    """NumPy broadcasting: x's axes align with ``out``'s from the right; a 1 repeats."""
    gap = len(out.shape) - len(x.shape)
    return [None if j < gap or x.shape[j - gap] != out.shape[j] else j - gap for j in range(len(out.shape))]


def identity(values: list[ir.Value]) -> ir.Value:
    return values[0]
