"""Program -> one LLVM module: a kernel per node, and the entry points that call them.

Entry points (each takes the context block, see :class:`~dlc.backends.llvm.layout.Slots`):

- ``predict``: the output into its home;
- ``loss`` and ``value_and_grad``: return the loss (value_and_grad leaves
  every gradient in its home);
- ``train_step``: forward, backward and the optimizer's update of every
  parameter and its state in place; returns the loss, and changes nothing
  if it is not finite;
- ``train_epoch``: the steps ``FIRST_STEP .. LAST_STEP - 1`` of an epoch,
  each gathering its mini-batch through the permutation ``ORDER``; returns
  the sum of loss times batch length.

The text is deterministic: the same program gives byte-identical IR.
"""

from __future__ import annotations

import math

from llvmlite import ir

from dlc.backends.llvm.epoch import define_epoch
from dlc.backends.llvm.frame import Frame
from dlc.backends.llvm.kernels import I64, View
from dlc.backends.llvm.layout import Slots
from dlc.backends.llvm.native import NativeProgram
from dlc.backends.llvm.ops import PTR
from dlc.backends.llvm.scalar import intrinsic
from dlc.grad import Program
from dlc.graph.graph import topological_order
from dlc.graph.nodes import Node, Param

F64 = ir.DoubleType()
I8 = ir.IntType(8)


def native_program(program: Program, dtype: str) -> NativeProgram:
    """The program's kernels, homes and entry points, in one LLVM module."""
    native = NativeProgram(program, dtype)
    Entries(native).define()
    return native


class Entries:
    """The entry functions of the module."""

    def __init__(self, native: NativeProgram) -> None:
        self.native = native
        self.module = native.module
        self.program = native.program
        self.graph = native.program.graph

    def entry(self, name: str, ret: ir.Type) -> Frame:
        fn = ir.Function(self.module, ir.FunctionType(ret, [PTR]), name)
        fn.attributes.add("nounwind")
        return Frame(self.native, fn, fn.args[0])

    def define(self) -> None:
        self._predict()
        self._loss()
        self._value_and_grad()
        if self.program.extra:
            self._hvp()
        core = self._step_core()
        self._train_step(core)
        self._train_epoch(core)

    def _predict(self) -> None:
        f = self.entry("predict", ir.VoidType())
        outputs = self.graph.outputs
        f.compute(topological_order(outputs.values()), set())
        for name, node in outputs.items():
            f.copy_result(node, self.native.output_homes[name])
        f.b.ret_void()

    def _loss(self) -> None:
        f = self.entry("loss", F64)
        f.compute(topological_order([self.graph.loss]), set())
        f.b.ret(self._as_f64(f, f.scalar(self.graph.loss)))

    def _value_and_grad(self) -> None:
        f = self.entry("value_and_grad", F64)
        grads = list(self.program.grads.values())
        f.compute(topological_order([self.graph.loss, *grads]), set())
        for name, node in self.program.grads.items():
            f.copy_result(node, self.native.grad_homes[name])
        f.b.ret(self._as_f64(f, f.scalar(self.graph.loss)))

    def _hvp(self) -> None:
        """``hvp``: every Hessian-vector product into its home (tangents in their slots)."""
        f = self.entry("hvp", ir.VoidType())
        products = list(self.program.extra.values())
        f.compute(topological_order(products), set())
        for key, node in self.program.extra.items():
            f.copy_result(node, self.native.hvp_homes[key.split(":", 1)[1]])
        f.b.ret_void()

    def _as_f64(self, f: Frame, value: ir.Value) -> ir.Value:
        return value if value.type == F64 else f.b.fpext(value, F64)

    def _step_core(self) -> ir.Function:
        """loss = step(ctx, data..., B, row): forward, and if the loss is finite, backward and update.

        ``data``: the batch of each input and target, ``row``: the optimizer's numbers for
        this step (float64).
        """
        count = len(self.graph.data)
        fnty = ir.FunctionType(F64, [PTR, *[PTR] * count, I64, PTR])
        fn = ir.Function(self.module, fnty, "step")
        fn.linkage = "internal"
        ctx, *data, batch, row = fn.args
        f = Frame(self.native, fn, ctx)
        for i, array in enumerate(data):  # the batch comes as arguments
            f.arrays[self.native.slots.data(i)] = array
        f.batch = batch
        f.k.batch = batch
        done: set[Node] = set()
        grads = list(self.program.grads.values())
        everything = topological_order([self.graph.loss, *grads])
        f.compute(topological_order([self.graph.loss]), done, later=everything)
        value = self._as_f64(f, f.scalar(self.graph.loss))
        finite = f.b.fcmp_ordered(
            "!=", f.b.call(intrinsic(f.k, "fabs", ty=F64), [value]), ir.Constant(F64, math.inf)
        )
        with f.b.if_then(finite):
            f.compute(everything, done)
            self._update(f, row)
        f.b.ret(value)
        return fn

    def _update(self, f: Frame, row: ir.Value) -> None:
        native = self.native
        homes = []
        for p in self.graph.params:
            f.copy_result(self.program.grads[p.name], native.grad_homes[p.name])
            homes.append((p, f.at(native.grad_homes[p.name]), ir.Constant(I64, max(math.prod(p.shape), 1))))
        scale = self._clip_scale(f, homes)
        for i, (p, g, size) in enumerate(homes):
            states = [f.array(native.slots.state(j, i)) for j in range(len(native.optimizer.states))]
            f.b.call(native.update, [f.pointer(p), g, *states, size, row, scale])

    def _clip_scale(self, f: Frame, homes: list[tuple[Param, ir.Value, ir.Value]]) -> ir.Value:
        """What the gradients are scaled by: min(1, clip / (their global norm + 1e-6)), or 1."""
        clip = self.native.optimizer.clip_norm
        ty, b, k = self.native.ty, f.b, f.k
        if clip is None:
            return ir.Constant(ty, 1.0)
        total = k.variable("norm2", ir.Constant(F64, 0.0))
        for _, g, size in homes:  # summed in float64, as torch sums float32 norms in float32 per tensor
            view = View(g, (1,))
            with k.loop(size, "c") as c:
                x = k.load(view, [c])
                x = x if ty == F64 else b.fpext(x, F64)
                b.store(b.fadd(b.load(total, typ=F64), b.fmul(x, x)), total)
        norm = b.call(intrinsic(k, "sqrt", ty=F64), [b.load(total, typ=F64)])
        coef = b.fdiv(ir.Constant(F64, clip), b.fadd(norm, ir.Constant(F64, 1e-6)))
        one = ir.Constant(F64, 1.0)
        scale = b.select(b.fcmp_ordered("<", coef, one), coef, one)
        return scale if ty == F64 else b.fptrunc(scale, ty)

    def _train_step(self, core: ir.Function) -> None:
        f = self.entry("train_step", F64)
        data = [f.array(self.native.slots.data(i)) for i in range(len(self.graph.data))]
        f.b.ret(f.b.call(core, [f.ctx, *data, f.batch, f.array(Slots.ROW)]))

    def _train_epoch(self, core: ir.Function) -> None:
        define_epoch(self.native, self.entry("train_epoch", F64), core)
