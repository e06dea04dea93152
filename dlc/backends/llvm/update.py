"""The momentum update, in place, as the NumPy module computes it (same operations, same order).

With mu the momentum and eta the learning rate:

    heavy-ball:  v <- mu*v - eta*g;  w <- w + v
    Nesterov:    v <- mu*v - eta*g;  w <- w + mu*v - eta*g   (as Keras' SGD)

No fused multiply-adds, so both backends round alike. The gradient may be
the parameter itself (a loss like sum(w*w)/2), so no argument is noalias:
each element is read before it is written.
"""

from __future__ import annotations

from llvmlite import ir

from dlc.backends.llvm.kernels import I64, Kernel, View

PTR = ir.PointerType()


def define_update(module: ir.Module, ty: ir.Type) -> ir.Function:
    """``void sgd_update(ptr w, ptr v, ptr g, i64 n, T lr, T mu, i64 nesterov)``."""
    fnty = ir.FunctionType(ir.VoidType(), [PTR, PTR, PTR, I64, ty, ty, I64])
    fn = ir.Function(module, fnty, "sgd_update")
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    fn.attributes.add("noinline")  # one copy for every parameter: the module compiles faster
    w_ptr, v_ptr, g_ptr, n, lr, mu, nesterov = fn.args
    k = Kernel(fn, ty)
    w, v, g = (View(p, (1,)) for p in (w_ptr, v_ptr, g_ptr))
    b = k.b
    with b.if_else(b.icmp_signed("!=", nesterov, ir.Constant(I64, 0))) as (ahead, plain):
        for lookahead, branch in ((True, ahead), (False, plain)):
            with branch, k.loop(n, "i") as i:
                step = b.fmul(lr, k.load(g, [i]))
                velocity = b.fsub(b.fmul(k.load(v, [i]), mu), step)
                k.store(velocity, v, [i])
                change = b.fsub(b.fmul(mu, velocity), step) if lookahead else velocity
                k.store(b.fadd(k.load(w, [i]), change), w, [i])
    b.ret_void()
    return fn
