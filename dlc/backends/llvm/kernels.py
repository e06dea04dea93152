"""Loop nests over strided views: the pieces every op's kernel is built from.

An op's kernel is an LLVM function whose arguments are its buffers. Inside
it, each operand is a :class:`View`: element ``(i0, ..., ik)`` of the op's
index space lives at ``ptr[offset + i0*s0 + ... + ik*sk]``. A stride of 0
repeats an element along that axis, so one loop nest serves elementwise
bodies, broadcasts, transposes, slices and concatenation alike. Axis 0 of a
batched op is the batch axis, whose extent is only known at run time: an
:class:`Extent` is a whole number, times the batch size when ``batch``.

Loops are written so that LLVM's loop vectorizer can take them: counted,
with affine addresses, the innermost axis the contiguous one where possible.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TypeAlias

from llvmlite import ir

I64 = ir.IntType(64)
ZERO = ir.Constant(I64, 0)
ONE = ir.Constant(I64, 1)
#: An accumulation may be reordered (so that sums and dot products vectorize) and fused.
ACCUMULATE = ("reassoc", "contract")
#: Arithmetic of a body: a product and a sum may become one fused multiply-add.
ARITH = ("contract",)


@dataclass(frozen=True)
class Extent:
    """``factor`` elements, times the batch size B if ``batch``."""

    factor: int
    batch: bool = False

    def __mul__(self, other: Extent) -> Extent:
        if self.batch and other.batch:
            raise ValueError("two batch axes in one extent")
        return Extent(self.factor * other.factor, self.batch or other.batch)


@dataclass(frozen=True)
class View:
    """An operand seen through the op's index space (strides in elements)."""

    ptr: ir.Value
    strides: tuple[int, ...]
    offset: int = 0


#: An operand: a view, or a scalar (one value for every element).
Operand: TypeAlias = View | ir.Value


class Kernel:
    """An IRBuilder inside one kernel function, with the element type and the batch size.

    Args:
        function: the kernel being written (its entry block is created here).
        ty: the element type (``ir.DoubleType()`` or ``ir.FloatType()``).
        batch: the batch size B as an i64 value, if the kernel has one.
    """

    def __init__(self, function: ir.Function, ty: ir.Type, batch: ir.Value | None = None) -> None:
        self.function = function
        self.ty = ty
        self.entry = function.append_basic_block("entry")
        self.b = ir.IRBuilder(self.entry)
        self.batch = batch

    @property
    def module(self) -> ir.Module:
        return self.function.module

    def const(self, value: float) -> ir.Constant:
        return ir.Constant(self.ty, value)

    def extent(self, n: Extent) -> ir.Value:
        if not n.batch:
            return ir.Constant(I64, n.factor)
        if self.batch is None:
            raise ValueError("a batch extent in a kernel without a batch size")
        if n.factor == 1:
            return self.batch
        return self.b.mul(self.batch, ir.Constant(I64, n.factor), flags=("nsw",))

    def variable(self, name: str, init: ir.Value) -> ir.AllocaInstr:
        """A local (a stack slot that LLVM turns into a register), set to ``init`` here."""
        with self.b.goto_entry_block():
            if self.entry.instructions:
                self.b.position_before(self.entry.instructions[0])
            slot = self.b.alloca(init.type, name=name)
        self.b.store(init, slot)
        return slot

    # ------------------------------------------------------------ memory

    def address(self, view: View, index: Sequence[ir.Value]) -> ir.Value:
        offset: ir.Value = ir.Constant(I64, view.offset)
        for i, stride in zip(index, view.strides, strict=True):
            if stride == 0:
                continue
            term = i if stride == 1 else self.b.mul(i, ir.Constant(I64, stride), flags=("nsw",))
            offset = term if _is_zero(offset) else self.b.add(offset, term, flags=("nsw",))
        return self.b.gep(view.ptr, [offset], inbounds=True, source_etype=self.ty)

    def load(self, operand: Operand, index: Sequence[ir.Value]) -> ir.Value:
        if not isinstance(operand, View):
            return operand
        return self.b.load(self.address(operand, index), typ=self.ty, align=self.align)

    def store(self, value: ir.Value, view: View, index: Sequence[ir.Value]) -> None:
        self.b.store(value, self.address(view, index), align=self.align)

    @property
    def align(self) -> int:
        """Bytes per element: buffers are arrays of the element type, aligned to it."""
        return 8 if isinstance(self.ty, ir.DoubleType) else 4

    # ------------------------------------------------------------- loops

    @contextmanager
    def loop(self, n: Extent | ir.Value, name: str = "i") -> Iterator[ir.Value]:
        """``for (i = 0; i < n; i++)``: the body is what the ``with`` block emits."""
        b = self.b
        count = self.extent(n) if isinstance(n, Extent) else n
        before = b.block
        head = b.append_basic_block(f"{name}.head")
        body = b.append_basic_block(f"{name}.body")
        done = b.append_basic_block(f"{name}.done")
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(I64, name=name)
        i.add_incoming(ZERO, before)
        b.cbranch(b.icmp_signed("<", i, count), body, done)
        b.position_at_end(body)
        yield i
        step = b.add(i, ONE, name=f"{name}.next", flags=("nuw", "nsw"))
        i.add_incoming(step, b.block)
        b.branch(head)
        b.position_at_end(done)

    @contextmanager
    def nest(self, extents: Sequence[Extent], prefix: str = "i") -> Iterator[list[ir.Value]]:
        """Loops over every axis, the first outermost; yields the indices."""
        with ExitStack() as stack:
            yield [stack.enter_context(self.loop(n, f"{prefix}{k}")) for k, n in enumerate(extents)]


def _is_zero(value: ir.Value) -> bool:
    return isinstance(value, ir.Constant) and value.constant == 0


# ---------------------------------------------------------------- map


def collapse(extents: Sequence[Extent], views: Sequence[View]) -> tuple[list[Extent], list[View]]:
    """Merge neighbouring axes that every view walks as one (fewer, longer loops vectorize better)."""
    ext = list(extents)
    strides = [list(v.strides) for v in views]
    k = len(ext) - 2
    while k >= 0:
        if all(s[k] == s[k + 1] * ext[k + 1].factor and not ext[k + 1].batch for s in strides):
            ext[k : k + 2] = [ext[k] * ext[k + 1]]
            for s in strides:
                s[k : k + 2] = [s[k + 1]]
        k -= 1
    return ext, [View(v.ptr, tuple(s), v.offset) for v, s in zip(views, strides, strict=True)]


def map_elements(
    k: Kernel,
    extents: Sequence[Extent],
    out: View,
    ins: Sequence[Operand],
    body: Callable[[list[ir.Value]], ir.Value],
) -> None:
    """``out[i] = body(ins[i]...)`` for every index ``i`` of ``extents``."""
    views = [out, *(x for x in ins if isinstance(x, View))]
    ext, merged = collapse(extents, views)
    it = iter(merged[1:])
    operands = [next(it) if isinstance(x, View) else x for x in ins]
    with k.nest(ext) as index:
        values = [k.load(x, index) for x in operands]
        k.store(body(values), merged[0], index)


# ----------------------------------------------------------- contract


def contract(
    k: Kernel,
    extents: Sequence[Extent],
    order: Sequence[int],
    out: View,
    out_count: Extent,
    ins: Sequence[Operand],
    combine: Callable[[ir.Value, ir.Value], ir.Value] | None = None,
    start: float = 0.0,
) -> None:
    """``out[i] = sum of the product of ins[i]`` over the axes where ``out`` has stride 0.

    ``order`` lists the axes from outermost to innermost loop. Axes summed
    over in the innermost loops accumulate in a register; if every summed
    axis is innermost, ``out`` is written once, else it is set to ``start``
    first and accumulated in memory. ``combine`` (the sum by default) and
    ``start`` (its identity) give other reductions: a maximum from -inf.
    """
    if combine is None:
        combine = functools.partial(k.b.fadd, flags=ACCUMULATE)
    ext = [extents[a] for a in order]
    out_v = View(out.ptr, tuple(out.strides[a] for a in order), out.offset)
    views = [
        View(x.ptr, tuple(x.strides[a] for a in order), x.offset) if isinstance(x, View) else x for x in ins
    ]
    inner = len(ext)
    while inner > 0 and out_v.strides[inner - 1] == 0:
        inner -= 1
    in_memory = any(s == 0 for s in out_v.strides[:inner])
    if in_memory:
        fill(k, out, out_count, k.const(start))
    out_v = View(out_v.ptr, out_v.strides[:inner], out_v.offset)  # the inner axes do not move it
    with k.nest(ext[:inner], "o") as outer:
        acc = k.variable("acc", k.load(out_v, outer) if in_memory else k.const(start))
        with k.nest(ext[inner:], "r") as summed:
            index = [*outer, *summed]
            product = _product(k, [k.load(x, index) for x in views])
            k.b.store(combine(k.b.load(acc, typ=k.ty), product), acc)
        k.store(k.b.load(acc, typ=k.ty), out_v, outer)


def _product(k: Kernel, values: list[ir.Value]) -> ir.Value:
    result = values[0]
    for v in values[1:]:
        result = k.b.fmul(result, v, flags=ARITH)
    return result


def fill(k: Kernel, out: View, count: Extent, value: ir.Value) -> None:
    """The first ``count`` elements of a contiguous buffer set to ``value``."""
    flat = View(out.ptr, (1,), out.offset)
    with k.loop(count, "z") as i:
        k.store(value, flat, [i])
