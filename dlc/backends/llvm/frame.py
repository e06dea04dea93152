"""One entry function of the module and what its context block holds: scratch, batch, data, slots."""

from __future__ import annotations

import math

from llvmlite import ir

from dlc.backends.llvm.kernels import I64, Extent, Kernel, View, map_elements
from dlc.backends.llvm.layout import DATA_FIELD, Home, Slots, is_computed, is_number
from dlc.backends.llvm.native import NativeProgram
from dlc.backends.llvm.ops import PTR, pointer_inputs
from dlc.backends.llvm.scalar import UnsupportedError, number
from dlc.graph.nodes import Constant, Input, Node, Param, Tangent

F64 = ir.DoubleType()
I8 = ir.IntType(8)


class Frame:
    """One entry function: the context block and what it says (scratch, batch, input, target)."""

    def __init__(self, native: NativeProgram, fn: ir.Function, ctx: ir.Value) -> None:
        self.native = native
        self.k = Kernel(fn, native.ty)
        self.b = self.k.b
        self.ctx = ctx
        self.scratch = self.slot_ptr(Slots.SCRATCH)
        self.cap = self.slot_int(Slots.CAP)
        self.gemm = self.slot_ptr(Slots.GEMM)
        self.gemm_min = self.slot_int(Slots.BLAS_MIN)
        self.batch: ir.Value = self.slot_int(Slots.BATCH)
        self.k.batch = self.batch
        self.arrays: dict[int, ir.Value] = {}  # slot -> the data of the array it refers to

    def _slot(self, index: int) -> ir.Value:
        return self.b.gep(self.ctx, [ir.Constant(I64, index)], inbounds=True, source_etype=I64)

    def slot_ptr(self, index: int) -> ir.Value:
        return self.b.load(self._slot(index), typ=PTR)

    def slot_int(self, index: int) -> ir.Value:
        return self.b.load(self._slot(index), typ=I64)

    def array(self, index: int) -> ir.Value:
        """The data of the array that slot ``index`` refers to, loaded once per entry.

        Such a slot holds the address ``DATA_FIELD`` bytes before a pointer to
        the array's data (in CPython, the NumPy array object itself): the data
        pointer is read in the call that uses it, from the array checked in it.
        """
        if index not in self.arrays:
            field = self.b.gep(self.slot_ptr(index), [ir.Constant(I64, DATA_FIELD)], source_etype=I8)
            self.arrays[index] = self.b.load(field, typ=PTR)
        return self.arrays[index]

    def slot_f64(self, index: int) -> ir.Value:
        return self.b.load(self._slot(index), typ=F64)

    def set_slot(self, index: int, value: ir.Value) -> None:
        self.b.store(value, self._slot(index))

    def at(self, home: Home) -> ir.Value:
        """The address of a home in the scratch arena."""
        b = self.b
        offset = b.add(b.mul(self.cap, ir.Constant(I64, home.per_example)), ir.Constant(I64, home.fixed))
        return b.gep(self.scratch, [offset], inbounds=True, source_etype=self.native.ty)

    def pointer(self, node: Node) -> ir.Value:
        native = self.native
        if is_computed(node):
            return self.at(native.arena.homes[node])
        if isinstance(node, Param):
            return self.array(native.slots.param(native.program.graph.params.index(node)))
        if isinstance(node, Input):
            return self.array(native.slots.data(native.program.graph.data.index(node)))
        if isinstance(node, Tangent):  # v:<parameter>
            names = [p.name for p in native.program.graph.params]
            return self.array(native.slots.tangent(names.index(node.name.split(":", 1)[1])))
        if isinstance(node, Constant):
            return native.constant(node)
        raise UnsupportedError(f"the LLVM backend cannot address the op {node.op_name}")

    def compute(self, nodes: list[Node], done: set[Node], later: list[Node] | None = None) -> None:
        """Call the kernel of every computed node in ``nodes`` not in ``done`` (in order).

        ``later``: nodes the entry computes after these; a softmax among them that a loss
        here can give from its own exps is computed with that loss.
        """
        needed = set(nodes) | set(later or ())
        for node in nodes:
            if node in done or not is_computed(node):
                continue
            done.add(node)
            args = [self.pointer(node), *(self.pointer(x) for x in pointer_inputs(node))]
            temp = self.native.temps.get(node)
            scratch = ir.Constant(PTR, None) if temp is None else self.at(temp)
            args += [self.batch, self.gemm, self.gemm_min, scratch]
            softmax = self.native.pairs.get(node)
            if softmax is not None and softmax in needed and softmax not in done:
                done.add(softmax)  # one pass of exp gives the loss and the softmax its gradient needs
                self.b.call(self.native.paired_kernels[node], [*args, self.pointer(softmax)])
            else:
                self.b.call(self.native.kernels[node], args)

    def copy_result(self, node: Node, home: Home) -> None:
        """A result that is not computed into a home (a parameter, a number ...) copied into ``home``."""
        if is_computed(node):
            return
        space = ([Extent(1, True)] if node.batched else []) + [Extent(math.prod(node.shape))]
        out = View(self.at(home), tuple([math.prod(node.shape)] * node.batched + [1]))
        source = self.scalar(node) if is_number(node) else View(self.pointer(node), out.strides)
        map_elements(self.k, space, out, [source], lambda v: v[0])

    def scalar(self, node: Node) -> ir.Value:
        """A scalar node's value (the loss)."""
        if is_number(node):
            return self.k.const(number(node.expr))  # type: ignore[attr-defined]
        return self.b.load(self.pointer(node), typ=self.native.ty)
