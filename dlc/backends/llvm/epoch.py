"""The native epoch: mini-batches drawn through a permutation, each one a training step.

    for s in FIRST_STEP .. LAST_STEP - 1:
        rows = ORDER[s*bs : min((s+1)*bs, N)]
        gather each input's and target's rows (all examples at DATA_ALL) into their batch homes
        loss = step(batch, TABLE[s])         # forward, backward, update
        STEP_LOSSES[s] = loss                # if asked for
        if loss is not finite: FAILED_STEP = s; stop
        total += loss * len(rows)
    return total

The permutation comes from the caller (NumPy's seeded generator), so both
backends visit the examples in the same order.
"""

from __future__ import annotations

import math

from llvmlite import ir

from dlc.backends.llvm.frame import Frame
from dlc.backends.llvm.kernels import I64, View
from dlc.backends.llvm.layout import Slots
from dlc.backends.llvm.native import NativeProgram
from dlc.backends.llvm.scalar import intrinsic

F64 = ir.DoubleType()


def define_epoch(native: NativeProgram, f: Frame, core: ir.Function) -> None:
    """``double train_epoch(ptr ctx)``, written into the entry ``f``."""
    b, k = f.b, f.k
    n, bs = f.slot_int(Slots.N), f.slot_int(Slots.BATCH_SIZE)
    order, losses = f.slot_ptr(Slots.ORDER), f.slot_ptr(Slots.STEP_LOSSES)
    first, last = f.slot_int(Slots.FIRST_STEP), f.slot_int(Slots.LAST_STEP)
    sources = [f.slot_ptr(native.slots.data_all(i)) for i in range(len(native.program.graph.data))]
    table, width = f.slot_ptr(Slots.TABLE), f.slot_int(Slots.WIDTH)
    homes = [f.at(home) for home in native.data_homes]
    total = k.variable("total", ir.Constant(F64, 0.0))
    f.set_slot(Slots.FAILED_STEP, ir.Constant(I64, -1))
    stop = b.append_basic_block("stop")
    with k.loop(b.sub(last, first), "s") as offset:
        step = b.add(first, offset)
        start = b.mul(step, bs)
        rows = _min(b, bs, b.sub(n, start))
        for home, source, node in zip(homes, sources, native.program.graph.data, strict=True):
            _gather(f, home, source, order, start, rows, math.prod(node.shape))
        row = b.gep(table, [b.mul(step, width)], inbounds=True, source_etype=F64)
        loss = b.call(core, [f.ctx, *homes, rows, row])
        with b.if_then(b.icmp_unsigned("!=", losses, ir.Constant(PTR, None))):
            b.store(loss, b.gep(losses, [step], inbounds=True, source_etype=F64))
        finite = b.fcmp_ordered(
            "!=", b.call(intrinsic(k, "fabs", ty=F64), [loss]), ir.Constant(F64, math.inf)
        )
        failed = b.append_basic_block("failed")
        go_on = b.append_basic_block("go_on")
        b.cbranch(finite, go_on, failed)
        b.position_at_end(failed)
        f.set_slot(Slots.FAILED_STEP, step)
        b.branch(stop)
        b.position_at_end(go_on)
        scaled = b.fmul(loss, b.sitofp(rows, F64))
        b.store(b.fadd(b.load(total, typ=F64), scaled), total)
    b.branch(stop)
    b.position_at_end(stop)
    b.ret(b.load(total, typ=F64))


PTR = ir.PointerType()


def _min(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    return b.select(b.icmp_signed("<", x, y), x, y)


def _gather(f: Frame, out: ir.Value, source: ir.Value, order: ir.Value,
            start: ir.Value, rows: ir.Value, width: int) -> None:  # fmt: skip
    """out[r, :] = source[order[start + r], :] for r < rows."""
    b, k = f.b, f.k
    size = ir.Constant(I64, width)
    with k.loop(rows, "r") as r:
        row = b.load(b.gep(order, [b.add(start, r)], inbounds=True, source_etype=I64), typ=I64)
        src = View(b.gep(source, [b.mul(row, size)], inbounds=True, source_etype=k.ty), (1,))
        dst = View(b.gep(out, [b.mul(r, size)], inbounds=True, source_etype=k.ty), (1,))
        with k.loop(size, "c") as c:
            k.store(k.load(src, [c]), dst, [c])
