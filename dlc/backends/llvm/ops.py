"""One kernel per graph op (``singledispatch`` on the node's type).

A kernel is an LLVM function ``void (ptr out, ptr in..., i64 B, ptr gemm,
i64 gemm_min, ptr temp)`` that computes one node into its home from its inputs' buffers;
numbers and the batch size are written in as values. An op unknown here raises
:class:`~dlc.backends.llvm.scalar.UnsupportedError` naming it, never a wrong answer.
"""

from __future__ import annotations

import functools
import math

from llvmlite import ir

from dlc.backends.llvm.kernels import I64, Extent, Kernel, Operand, View, collapse, contract, map_elements
from dlc.backends.llvm.layout import is_number
from dlc.backends.llvm.op import PTR, Op, broadcast_map, extents, home, identity, over, space, strides
from dlc.backends.llvm.rows import (
    LOSSES,
    class_delta_rows,
    logsumexp_rows,
    softmax_ce_rows,
    softmax_rows,
    temp_need,
)
from dlc.backends.llvm.scalar import BodyEmitter, UnsupportedError, intrinsic, number
from dlc.backends.llvm.tensor import einsum_kernel, packed_size
from dlc.backends.llvm.windows import fold_kernel, unfold_kernel
from dlc.graph.nodes import (
    BatchSize,
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
from dlc.graph.ops import matmul_spec


def pointer_inputs(node: Node) -> list[Node]:
    """The inputs passed to the kernel as buffers (numbers and B are written in), each once."""
    return list(dict.fromkeys(x for x in node.inputs if not is_number(x) and not isinstance(x, BatchSize)))


def temp_size(node: Node) -> tuple[int, bool]:
    """Elements of scratch that ``node``'s kernel needs besides its output, and whether per example."""
    if isinstance(node, MatMul):
        return packed_size(matmul_spec(*node.inputs), node.inputs), False
    if isinstance(node, Einsum):
        return packed_size(node.spec, node.inputs), False
    return temp_need(node), node.batched


def define_kernel(
    module: ir.Module, ty: ir.Type, node: Node, name: str, with_softmax: bool = False
) -> ir.Function:
    """The kernel computing ``node``; called as (out, *pointer_inputs(node), B, gemm, gemm_min, temp).

    ``with_softmax``: a softmax cross-entropy that also writes softmax(z) (one more pointer, last).
    """
    inputs = pointer_inputs(node)
    extra = [PTR] if with_softmax else []
    fnty = ir.FunctionType(ir.VoidType(), [PTR] * (1 + len(inputs)) + [I64, PTR, I64, PTR, *extra])
    fn = ir.Function(module, fnty, name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    # One copy of each kernel, called from every entry point: compiling is faster, and a
    # call per op costs nanoseconds.
    fn.attributes.add("noinline")
    for arg in fn.args[: 1 + len(inputs)]:
        arg.add_attribute("noalias")
    out, *ptrs, batch, gemm, gemm_min, temp = fn.args[: len(fn.args) - len(extra)]
    k = Kernel(fn, ty, batch)
    sources: dict[Node, Operand] = dict(zip(inputs, ptrs, strict=True))
    for x in node.inputs:
        if is_number(x):
            sources[x] = k.const(number(x.expr))  # type: ignore[attr-defined]
        elif isinstance(x, BatchSize):
            sources[x] = k.b.uitofp(batch, ty)
    emit(node, Op(k, node, out, sources, gemm, gemm_min, temp, fn.args[-1] if with_softmax else None))
    k.b.ret_void()
    return fn


@functools.singledispatch
def emit(node: Node, op: Op) -> None:
    raise UnsupportedError(f"the LLVM backend has no code for the op {node.op_name}")


# ------------------------------------------------------------ elementwise


@emit.register
def _(node: Elementwise, op: Op) -> None:
    ins = [over(op, x, node, broadcast_map(x, node)) for x in node.inputs]
    expr = node.expr

    def body(values: list[ir.Value]) -> ir.Value:
        return BodyEmitter(op.k, values).emit(expr)

    map_elements(op.k, extents(node), home(node, op.out), ins, body)


@emit.register
def _(node: Expand, op: Op) -> None:
    (x,) = node.inputs
    axis_map: list[int | None] = [None] * len(node.shape)
    for i, d in enumerate(node.dims):
        axis_map[d] = i
    map_elements(op.k, extents(node), home(node, op.out), [over(op, x, node, axis_map)], identity)


@emit.register
def _(node: Transpose, op: Op) -> None:
    (x,) = node.inputs
    map_elements(op.k, extents(node), home(node, op.out), [over(op, x, node, [1, 0])], identity)


@emit.register
def _(node: Slice, op: Op) -> None:
    (x,) = node.inputs
    start = node.start * strides(x.shape)[node.axis]
    view = over(op, x, node, list(range(len(node.shape))), offset=start)
    if node.step > 1 and isinstance(view, View):
        along = node.axis + (1 if node.batched else 0)
        scaled = tuple(s * node.step if a == along else s for a, s in enumerate(view.strides))
        view = View(view.ptr, scaled, view.offset)
    map_elements(op.k, extents(node), home(node, op.out), [view], identity)


@emit.register
def _(node: Index, op: Op) -> None:
    """A view of x that starts at the element and skips the dropped axis."""
    (x,) = node.inputs
    start = node.index * strides(x.shape)[node.axis]
    axis_map = [a if a < node.axis else a + 1 for a in range(len(node.shape))]
    view = over(op, x, node, axis_map, offset=start)
    map_elements(op.k, extents(node), home(node, op.out), [view], identity)


@emit.register
def _(node: Reshape, op: Op) -> None:
    """A copy in row-major order: the elements of each example are contiguous in both homes."""
    (x,) = node.inputs
    count = Extent(math.prod(node.shape), node.batched)
    source = op.src(x)
    flat_in = View(source, (1,)) if isinstance(source, ir.Value) and source.type == PTR else source
    map_elements(op.k, [count], View(op.out, (1,)), [flat_in], identity)


@emit.register
def _(node: Concat, op: Op) -> None:
    """Each part copied into its slice of the result (repeated over the batch if it has none)."""
    out = home(node, op.out)
    axis = node.axis + (1 if node.batched else 0)
    start = 0
    for part in node.inputs:
        target = View(out.ptr, out.strides, start * out.strides[axis])
        source = over(op, part, node, list(range(len(node.shape))))
        map_elements(op.k, space(part.shape, node.batched), target, [source], identity)
        start += part.shape[node.axis]


@emit.register
def _(node: Permute, op: Op) -> None:
    (x,) = node.inputs
    map_elements(op.k, extents(node), home(node, op.out), [over(op, x, node, list(node.axes))], identity)


@emit.register
def _(node: Unfold, op: Op) -> None:
    unfold_kernel(op, node)


@emit.register
def _(node: Fold, op: Op) -> None:
    fold_kernel(op, node)


# ---------------------------------------------------------- reductions


@emit.register
def _(node: Reduce, op: Op) -> None:
    """A sum (then, for a mean, a division by the count), or a max or min, in x's own order:
    its last axis innermost."""
    (x,) = node.inputs
    kept = iter(strides(node.shape))
    per = [0 if a in node.axes else next(kept) for a in range(len(x.shape))]
    batch = ([0 if node.batch else math.prod(node.shape)] if x.batched else []) + per
    source = over(op, x, x, list(range(len(x.shape))))
    count = Extent(math.prod(node.shape), node.batched)
    out = View(op.out, tuple(batch))
    if isinstance(source, View):  # neighbouring axes both walk as one: fewer, longer loops
        space, (out, source) = collapse(extents(x), [out, source])
    else:
        space = extents(x)
    k = op.k
    order = list(range(len(space)))
    match node.kind:
        case ReduceKind.SUM | ReduceKind.MEAN:
            contract(k, space, order, out, count, [source])
        case ReduceKind.MAX | ReduceKind.MIN:
            # llvm.maximum and llvm.minimum: a NaN anywhere gives NaN, as np.max does.
            name, start = ("maximum", -math.inf) if node.kind is ReduceKind.MAX else ("minimum", math.inf)
            fn = intrinsic(k, name, 2)
            contract(k, space, order, out, count, [source], lambda a, v: k.b.call(fn, [a, v]), start)
        case other:
            unknown(other)
    if node.kind is ReduceKind.MEAN:
        b, n = k.b, math.prod(x.shape[a] for a in node.axes)
        divisor = b.uitofp(b.mul(k.batch, ir.Constant(I64, n)), k.ty) if node.batch else k.const(n)
        flat = View(op.out, (1,))
        map_elements(k, [count], flat, [flat, divisor], lambda v: b.fdiv(v[0], v[1]))


# --------------------------------------------------------- contractions


@emit.register
def _(node: MatMul, op: Op) -> None:
    einsum_kernel(op, matmul_spec(*node.inputs))


@emit.register
def _(node: Einsum, op: Op) -> None:
    einsum_kernel(op, node.spec)


# ------------------------------------------------------------------ rows


@emit.register
def _(node: Softmax, op: Op) -> None:
    softmax_rows(op, node)


@emit.register
def _(node: LogSumExp, op: Op) -> None:
    logsumexp_rows(op, node)


@emit.register
def _(node: ClassDelta, op: Op) -> None:
    class_delta_rows(op, node)


@emit.register
def _(node: Loss, op: Op) -> None:
    if op.softmax is not None:
        softmax_ce_rows(op, node, op.softmax)
    elif node.kind in LOSSES:
        LOSSES[node.kind](op, node)
    else:
        raise UnsupportedError(f"the LLVM backend has no code for the loss {node.kind}")
