"""Einsums (matrix products, and the gradients' products summed over the batch).

Small products are generated loops, nested in the order a cost model picks:
the innermost loop walks memory contiguously where it can (an axpy), or is
a dot product whose sum LLVM may reorder and vectorize. A product that is a
plain matrix product (each operand a matrix, one summed axis) calls an
optimized BLAS gemm instead when the module was given one and the product
has at least :data:`GEMM_MIN_FLOPS` multiply-adds (the batch size is only
known at run time, so the choice is made there, and the threshold is a
setting of the context block that the benchmark varies).
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

from llvmlite import ir

from dlc.backends.llvm.gemm import gemm_function
from dlc.backends.llvm.kernels import I64, Extent, View, contract, map_elements
from dlc.backends.llvm.op import Op
from dlc.graph.nodes import Node
from dlc.graph.ops import merged_letters

PTR = ir.PointerType()
I32 = ir.IntType(32)
#: Below this many multiply-adds the generated loops beat the call into OpenBLAS
#: (python -m benchmarks.gemm_threshold on a 2-core x86-64 machine).
GEMM_MIN_FLOPS = 32 * 32 * 32
#: Products with at most this many multiply-adds per example (the batch axis aside) are
#: loops of known length, which LLVM unrolls; larger ones use the tiled gemm or BLAS.
TINY_PRODUCT = 256
#: Loop orders are searched exhaustively up to this many axes; beyond, the spec's order.
SEARCH_AXES = 6


def einsum_kernel(op: Op, spec: str) -> None:
    """``node = einsum(spec, inputs)`` into the node's home."""
    lhs, out_sub = spec.split("->")
    subs = lhs.split(",")
    letters = list(dict.fromkeys(out_sub + "".join(subs)))
    size = _letter_sizes(subs, op.node.inputs)
    space = [Extent(1, True) if c == "B" else Extent(size[c]) for c in letters]
    operands = [_operand(op, x, sub, letters) for x, sub in zip(op.node.inputs, subs, strict=True)]
    out = View(op.out, tuple(_strides_of(out_sub, op.node.shape, op.node.batched, letters)))
    subs, out_sub, letters, space, (out, *operands) = merge_letters(
        subs, out_sub, letters, space, [out, *operands]
    )
    assert isinstance(out, View)
    views = [out, *(x for x in operands if isinstance(x, View))]
    order = loop_order(space, [v.strides for v in views])
    count = Extent(math.prod(op.node.shape), op.node.batched)
    plan = gemm_plan(subs, out_sub, operands, letters, space)
    if plan is None or _tiny(plan):
        contract(op.k, space, order, out, count, operands)
        return
    b = op.k.b
    flops = b.mul(b.mul(op.k.extent(plan.m), op.k.extent(plan.n)), op.k.extent(plan.k))
    big = b.icmp_signed(">=", flops, op.gemm_min)
    have = b.icmp_unsigned("!=", op.gemm, ir.Constant(PTR, None))
    with b.if_else(b.and_(big, have)) as (blas, loops):
        with blas:
            call_gemm(op, plan, out)
        with loops:
            tiled_product(op, plan, out)


def merge_letters(
    subs: list[str], out: str, letters: list[str], space: list[Extent], operands: list[View | ir.Value]
) -> tuple[list[str], str, list[str], list[Extent], list[View | ir.Value]]:
    """The einsum with neighbouring letters that every operand walks as one merged into one letter
    (see :func:`dlc.graph.ops.merged_letters`): ``hw`` of ``Bhwc,oc->Bhwo`` (a convolution's
    positions) and then ``B`` with them make the product ``Xc,oc->Xo``, one gemm for the whole
    batch. Two groups of letters join where each operand's strides step over the second's
    extent as one; the batch axis is never the inner one.
    """
    index = {c: i for i, c in enumerate(letters)}
    views = [list(x.strides) if isinstance(x, View) else None for x in operands]

    def joins(a: str, b: str) -> bool:
        if any(space[index[c]].batch for c in b):
            return False
        inner = math.prod(space[index[c]].factor for c in b)
        return all(v is None or v[index[a[-1]]] == v[index[b[-1]]] * inner for v in views)

    subs, out, groups = merged_letters(subs, out, joins)
    new_space = [functools.reduce(operator.mul, (space[index[c]] for c in g)) for g in groups.values()]
    merged = [
        View(x.ptr, tuple(v[index[g[-1]]] for g in groups.values()), x.offset)
        if isinstance(x, View) and v is not None
        else x
        for x, v in zip(operands, views, strict=True)
    ]
    return subs, out, list(groups), new_space, merged


def _tiny(plan: GemmPlan) -> bool:
    """A product whose work per example is a few vectors: loops of known length beat the tiles."""
    return plan.m.factor * plan.n.factor * plan.k.factor <= TINY_PRODUCT


def _letter_sizes(subs: Sequence[str], inputs: Sequence[Node]) -> dict[str, int]:
    size: dict[str, int] = {}
    for sub, x in zip(subs, inputs, strict=True):
        for c, n in zip(sub.replace("B", ""), x.shape, strict=True):
            size[c] = n
    return size


def _strides_of(sub: str, shape: Sequence[int], batched: bool, letters: Sequence[str]) -> list[int]:
    """Strides along each letter of the index space for a buffer with subscript ``sub``."""
    natural: list[int] = []
    step = 1
    for d in reversed(shape):
        natural.append(step)
        step *= d
    natural.reverse()
    per_letter = dict.fromkeys(letters, 0)
    if batched:
        per_letter["B"] += math.prod(shape)
    for c, s in zip(sub.replace("B", ""), natural, strict=True):
        per_letter[c] += s  # a repeated letter walks the diagonal
    return [per_letter[c] for c in letters]


def _operand(op: Op, x: Node, sub: str, letters: Sequence[str]) -> View | ir.Value:
    source = op.src(x)
    if isinstance(source, View) or not isinstance(source.type, ir.PointerType):
        return source
    return View(source, tuple(_strides_of(sub, x.shape, x.batched, letters)))


def loop_order(space: Sequence[Extent], stride_lists: Sequence[Sequence[int]]) -> list[int]:
    """Axes from outermost to innermost loop, cheapest memory walk first.

    The cost of an order weighs, from the innermost loop outwards (each level
    counting a quarter of the one inside it), how each buffer is walked along
    that loop's axis: not at all (0), contiguously (1) or with a jump (4).
    Ties keep the spec's order (output axes outermost).
    """
    axes = list(range(len(space)))
    if len(axes) > SEARCH_AXES:
        return axes

    def cost(order: Sequence[int]) -> float:
        total, weight = 0.0, 1.0
        for axis in reversed(order):
            total += weight * sum(0 if s[axis] == 0 else 1 if s[axis] == 1 else 4 for s in stride_lists)
            weight /= 4
        return total

    orders = [list(o) for o in itertools.permutations(axes)]
    return min(orders, key=lambda o: (cost(o), o))


# ------------------------------------------------------------------ gemm


@dataclass(frozen=True)
class GemmPlan:
    """C[M, N] = op(A) op(B) in row-major terms; ``a_t``: A is stored [K, M]; ``b_t``: B is [N, K]."""

    a: View
    b: View
    m: Extent
    n: Extent
    k: Extent
    a_t: bool
    b_t: bool


def gemm_plan(
    subs: Sequence[str], out: str, operands: Sequence[object], letters: Sequence[str], space: Sequence[Extent]
) -> GemmPlan | None:
    """How to write the einsum as one gemm, or None if it is not a plain matrix product."""
    if len(subs) != 2 or len(out) != 2 or any(len(s) != 2 for s in subs):
        return None
    if not all(isinstance(x, View) for x in operands):
        return None
    summed = (set(subs[0]) & set(subs[1])) - set(out)
    if len(summed) != 1 or len(set(subs[0])) != 2 or len(set(subs[1])) != 2:
        return None
    (c,) = summed
    row, col = out[0], out[1]
    first = 0 if row in subs[0] else 1
    a_sub, b_sub = subs[first], subs[1 - first]
    if row not in a_sub or col not in b_sub or col in a_sub or row in b_sub:
        return None
    a, b = operands[first], operands[1 - first]
    extent = {x: space[letters.index(x)] for x in (row, col, c)}
    assert isinstance(a, View) and isinstance(b, View)
    return GemmPlan(a, b, extent[row], extent[col], extent[c], a_sub != row + c, b_sub != c + col)


def packed_size(spec: str, inputs: Sequence[Node]) -> int:
    """Elements of scratch the einsum's kernel needs to pack an operand (0: none)."""
    lhs, out = spec.split("->")
    subs = lhs.split(",")
    if len(inputs) != 2 or any(not x.shape and not x.batched for x in inputs):
        return 0
    letters = list(dict.fromkeys(out + "".join(subs)))
    size = _letter_sizes(subs, inputs)
    space = [Extent(1, True) if c == "B" else Extent(size[c]) for c in letters]
    fake: list[View | ir.Value] = [
        View(ir.Constant(PTR, None), tuple(_strides_of(s, x.shape, x.batched, letters)))
        for s, x in zip(subs, inputs, strict=True)
    ]
    subs, out, letters, space, fake = merge_letters(subs, out, letters, space, fake)
    plan = gemm_plan(subs, out, fake, letters, space)
    return plan.n.factor * plan.k.factor if plan is not None and plan.b_t and not _tiny(plan) else 0


def tiled_product(op: Op, plan: GemmPlan, out: View) -> None:
    """C = A B by the module's register-tiled gemm; a B stored [N, K] is first packed as [K, N]."""
    k, n = op.k, plan.n.factor
    if plan.b_t:
        packed, source = View(op.temp, (n, 1)), View(plan.b.ptr, (1, plan.k.factor))
        map_elements(k, [plan.k, plan.n], packed, [source], lambda v: v[0])
    b_ptr = op.temp if plan.b_t else plan.b.ptr
    a_row, a_col = (1, plan.m.factor) if plan.a_t else (plan.k.factor, 1)
    sizes = [k.extent(plan.m), k.extent(plan.n), k.extent(plan.k)]
    strides = [ir.Constant(I64, s) for s in (a_row, a_col, n, n)]
    args = [*sizes, plan.a.ptr, strides[0], strides[1], b_ptr, strides[2], out.ptr, strides[3]]
    k.b.call(gemm_function(k.module, k.ty), args)


class _Callee:
    """A function pointer seen as a callee of a known type (llvmlite's call wants one)."""

    def __init__(self, pointer: ir.Value, function_type: ir.FunctionType) -> None:
        self.pointer = pointer
        self.function_type = function_type
        self.type = PTR

    def get_reference(self) -> str:
        return str(self.pointer.get_reference())


def call_gemm(op: Op, plan: GemmPlan, out: View) -> None:
    """The Fortran gemm on row-major data: C^T = op(B)^T op(A)^T, all arguments by reference."""
    k, b = op.k, op.k.b
    m, n, kk = (b.trunc(k.extent(e), I32) for e in (plan.m, plan.n, plan.k))
    lda = m if plan.a_t else kk  # the row length of A as stored
    ldb = kk if plan.b_t else n
    args = [
        _char(k, "T" if plan.b_t else "N"),
        _char(k, "T" if plan.a_t else "N"),
        *(_ref(k, v, I32) for v in (n, m, kk)),
        _ref(k, k.const(1.0), k.ty),
        plan.b.ptr,
        _ref(k, ldb, I32),
        plan.a.ptr,
        _ref(k, lda, I32),
        _ref(k, k.const(0.0), k.ty),
        out.ptr,
        _ref(k, n, I32),
    ]
    fnty = ir.FunctionType(ir.VoidType(), [PTR] * len(args))
    b.call(_Callee(op.gemm, fnty), args)


def _char(k: object, c: str) -> ir.Value:
    return _ref(k, ir.Constant(ir.IntType(8), ord(c)), ir.IntType(8))


def _ref(k: object, value: ir.Value, ty: ir.Type) -> ir.Value:
    """``value`` in a stack slot, passed by reference as Fortran wants."""
    slot = k.variable("blas.arg", value)  # type: ignore[attr-defined]
    return slot
