"""Program -> the parts of one LLVM module: a kernel per node, the homes, the constants.

:class:`NativeProgram` writes every kernel and places every value in the
arena; :mod:`dlc.backends.llvm.program` then writes the entry points that
call the kernels (each in a :class:`~dlc.backends.llvm.frame.Frame`).
"""

from __future__ import annotations

import math
import re

import numpy as np
from llvmlite import ir

from dlc.backends.common import training_optimizer
from dlc.backends.llvm.layout import Arena, Home, Slots, is_computed
from dlc.backends.llvm.ops import define_kernel, temp_size
from dlc.backends.llvm.update import define_update
from dlc.grad import Program
from dlc.grad import notation as nt
from dlc.grad.formulas import Notation, forward_names
from dlc.graph.nodes import Constant, Node
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
