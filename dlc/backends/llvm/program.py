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
import re

import numpy as np
from llvmlite import ir

from dlc.backends.common import training_optimizer
from dlc.backends.llvm.kernels import I64, Extent, Kernel, View, map_elements
from dlc.backends.llvm.layout import DATA_FIELD, Arena, Home, Slots, is_computed, is_number
from dlc.backends.llvm.ops import PTR, define_kernel, pointer_inputs, temp_size
from dlc.backends.llvm.scalar import UnsupportedError, intrinsic, number
from dlc.backends.llvm.update import define_update
from dlc.grad import Program
from dlc.grad import notation as nt
from dlc.grad.formulas import Notation, forward_names
from dlc.graph.graph import topological_order
from dlc.graph.nodes import Constant, Input, Node, Param, Tangent
from dlc.graph.pairs import softmax_pairs

F64 = ir.DoubleType()
I8 = ir.IntType(8)


class NativeProgram:
    """Builds the module; ``arena`` and ``homes`` tell the runtime where results are.

    Attributes:
        module: the LLVM module.
        arena: the scratch homes (per example and fixed sizes).
        output_homes, grad_homes, data_homes: where predict's outputs (by name), each
            gradient, and an epoch's gathered batch (per input and target) live.
    """

    def __init__(self, program: Program, dtype: str) -> None:
        self.program = program
        graph = program.graph
        self.ty = F64 if dtype == "float64" else ir.FloatType()
        # No model name in the IR: models that differ only in names share compiled code in the cache.
        self.module = ir.Module(name="dlc")
        self.optimizer = training_optimizer(program)
        self.slots = Slots(len(graph.params), len(self.optimizer.states), len(graph.data))
        self.arena = Arena()
        nodes = program.nodes()
        self.arena.place_all(nodes)
        self.temps = {n: self.arena.place(("temp", n), *temp_size(n)) for n in nodes if temp_size(n)[0]}
        self.pairs = softmax_pairs(nodes)
        self.kernels: dict[Node, ir.Function] = {}
        self.paired_kernels: dict[Node, ir.Function] = {}
        self.comments: dict[str, str] = {}  # kernel name -> what it computes
        self._name_kernels(nodes)
        self.output_homes = {k: self._result_home(("output", k), v) for k, v in graph.outputs.items()}
        self.grad_homes = {
            p.name: self._result_home(("grad", p.name), program.grads[p.name]) for p in graph.params
        }
        # Hessian-vector products, by parameter name (programs from hessian_vector_program)
        self.hvp_homes = {
            k.split(":", 1)[1]: self._result_home(("hvp", k), node) for k, node in program.extra.items()
        }
        self.data_homes = [self.arena.place(("data", n.name), math.prod(n.shape), True) for n in graph.data]
        self.constants: dict[Node, ir.GlobalVariable] = {}
        self.update = define_update(self.module, self.ty, self.optimizer)
        Entries(self).define()

    def _name_kernels(self, nodes: list[Node]) -> None:
        display = forward_names(self.program.graph)
        shower = Notation(display)
        grad_of = {node: name for name, node in self.program.grads.items()}
        taken: set[str] = set()
        for i, node in enumerate(n for n in nodes if is_computed(n)):
            wanted = display.get(node) or (f"d_{grad_of[node]}" if node in grad_of else f"t{i}")
            name = _unique(f"k_{_ident(wanted)}", taken)
            self.kernels[node] = define_kernel(self.module, self.ty, node, name)
            if node in display:
                self.comments[name] = f"{display[node]} = {nt.text(shower.forward(node))}"
            elif node in grad_of:
                self.comments[name] = f"the gradient of the loss with respect to {grad_of[node]}"
            if node in self.pairs:
                paired = _unique(f"{name}_and_softmax", taken)
                self.paired_kernels[node] = define_kernel(self.module, self.ty, node, paired, True)

    def text(self) -> str:
        """The module's IR, each kernel headed by a comment saying what it computes (in ASCII)."""
        lines = []
        for line in str(self.module).splitlines():
            if line.startswith("define internal void @"):
                name = line.split("@", 1)[1].split("(", 1)[0].strip('"')
                if name in self.comments:
                    lines.append(f"; {ascii_formula(self.comments[name])}")
            lines.append(line)
        return "\n".join(lines) + "\n"

    def _result_home(self, key: object, node: Node) -> Home:
        """A computed node's own home; other results get a home to be copied into."""
        if is_computed(node):
            return self.arena.homes[node]
        return self.arena.place(key, math.prod(node.shape), node.batched)

    def constant(self, node: Constant) -> ir.GlobalVariable:
        if node not in self.constants:
            values = np.asarray(node.value, dtype=np.float64).ravel()
            arrty = ir.ArrayType(self.ty, len(values))
            var = ir.GlobalVariable(self.module, arrty, f"const.{len(self.constants)}")
            var.global_constant = True
            var.linkage = "internal"
            var.initializer = ir.Constant(arrty, [ir.Constant(self.ty, float(v)) for v in values])
            self.constants[node] = var
        return self.constants[node]


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
        from dlc.backends.llvm.epoch import define_epoch

        define_epoch(self, core)


_ASCII = str.maketrans(
    {**{chr(0x2080 + d): str(d) for d in range(10)}, "ᵀ": "^T", "⊙": "*", "σ": "sigmoid", "²": "^2",
     "δ": "delta_", "ŷ": "yhat", "ℓ": "l", "Σ": "sum", "∂": "d", "·": "*", "ᵢ": "i"}
)  # fmt: skip


def ascii_formula(text: str) -> str:
    """A formula for an IR comment: subscripts and symbols spelt out, anything else left out."""
    plain = text.translate(_ASCII).encode("ascii", "replace").decode("ascii")
    return " ".join(plain.replace("?", "_").split())  # one line


def _ident(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name) or "v"


def _unique(name: str, taken: set[str]) -> str:
    while name in taken:
        name += "_"
    taken.add(name)
    return name
