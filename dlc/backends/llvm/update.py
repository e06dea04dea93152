"""The optimizer's update of one parameter, in place: its elementwise statements as one loop.

``void optimizer_update(ptr w, ptr g, ptr s0, ..., i64 n, ptr row, T scale)``:
for each of the n elements, the statements of the optimizer
(:class:`~dlc.graph.optimizer.Optimizer`) in order, over w[i], scale*g[i]
and the states' s<j>[i], with the step's numbers read once from ``row``
(float64, as ``_scalars`` computes them); w and each state get their new
values. The gradient may be the parameter itself (a loss like sum(w*w)/2),
so no argument is noalias: each element is read before it is written.
"""

from __future__ import annotations

import sympy
from llvmlite import ir

from dlc.backends.llvm.kernels import I64, Kernel, View
from dlc.backends.llvm.scalar import BodyEmitter
from dlc.graph.optimizer import G, Optimizer, W, version
from dlc.graph.scalar import element_symbol

PTR = ir.PointerType()
F64 = ir.DoubleType()


def define_update(module: ir.Module, ty: ir.Type, optimizer: Optimizer) -> ir.Function:
    """The update function of ``optimizer`` for elements of type ``ty``."""
    n_states = len(optimizer.states)
    fnty = ir.FunctionType(ir.VoidType(), [PTR, PTR, *[PTR] * n_states, I64, PTR, ty])
    fn = ir.Function(module, fnty, "optimizer_update")
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    fn.attributes.add("noinline")  # one copy for every parameter: the module compiles faster
    w_ptr, g_ptr, *state_ptrs, n, row, scale = fn.args
    k = Kernel(fn, ty)
    b = k.b
    numbers = []
    for j in range(len(optimizer.used_scalars())):  # read once, before the loop
        value = b.load(b.gep(row, [ir.Constant(I64, j)], inbounds=True, source_etype=F64), typ=F64)
        numbers.append(value if ty == F64 else b.fptrunc(value, ty))
    places = {"w": View(w_ptr, (1,))}
    places |= {s: View(p, (1,)) for s, p in zip(optimizer.states, state_ptrs, strict=True)}
    g_view = View(g_ptr, (1,))
    with k.loop(n, "i") as i:
        loaded = {name: k.load(view, [i]) for name, view in places.items()}
        symbols = [W, G, *(version(s, 0) for s in optimizer.states), *optimizer.used_scalars()]
        args = [
            loaded["w"],
            b.fmul(scale, k.load(g_view, [i])),
            *(loaded[s] for s in optimizer.states),
            *numbers,
        ]
        emitter = BodyEmitter(k, args)
        index: dict[sympy.Basic, sympy.Symbol] = {s: element_symbol(m) for m, s in enumerate(symbols)}
        for symbol, formula in optimizer.updates:
            value = emitter.emit(formula.xreplace(index))
            index[symbol] = element_symbol(len(emitter.args))
            emitter.args.append(value)
        for name, result in optimizer.results:
            k.store(emitter.args[int(index[result].name[1:])], places[name], [i])
    b.ret_void()
    return fn
