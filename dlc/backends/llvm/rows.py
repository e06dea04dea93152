"""Ops that work along the last axis, row by row: softmax, logsumexp and the losses.

Each keeps to the numerically stable form the NumPy backend uses
(:mod:`dlc.backends.scalar_numpy`): the row's maximum is subtracted before
``exp``, probabilities are clipped before ``log``, and a cross-entropy of
logits goes through ``softplus``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from llvmlite import ir

from dlc.backends.llvm.kernels import ACCUMULATE, ARITH, Extent, Kernel, View
from dlc.backends.llvm.mathlib import math_function
from dlc.backends.llvm.scalar import BodyEmitter, intrinsic
from dlc.graph.nodes import Node

if TYPE_CHECKING:
    from dlc.backends.llvm.ops import Op


def _rows(x: Node, batched: bool) -> Extent:
    """How many rows of the last axis ``x`` has, over the batch if ``batched``."""
    return Extent(math.prod(x.shape[:-1]), batched)


def _row_view(op: Op, x: Node, row_length: int, batched_rows: bool) -> View:
    """``x`` as [row, j]; an unbatched ``x`` in a batched op repeats for every example."""
    step = row_length if (x.batched or not batched_rows) else 0
    return View(op.src(x), (step, 1))


def _fold_row(
    k: Kernel, n: int, init: ir.Value, step: Callable[[ir.Value, ir.Value], ir.Value], name: str
) -> ir.Value:
    """``acc = init; for j in 0..n-1: acc = step(acc, j)``; returns acc."""
    acc = k.variable(name, init)
    with k.loop(Extent(n), f"{name}.j") as j:
        k.b.store(step(k.b.load(acc, typ=k.ty), j), acc)
    return k.b.load(acc, typ=k.ty)


def _max(k: Kernel, a: ir.Value, b: ir.Value) -> ir.Value:
    """NaN-propagating maximum, as ndarray.max."""
    return k.b.call(intrinsic(k, "maximum", 2), [a, b])


def _row_max(k: Kernel, x: View, r: ir.Value, n: int) -> ir.Value:
    return _fold_row(k, n, k.const(-math.inf), lambda m, j: _max(k, m, k.load(x, [r, j])), "max")


def softmax_rows(op: Op, node: Node) -> None:
    """e = exp(x - max x); out = e / sum(e)."""
    k, (x,) = op.k, node.inputs
    n = node.shape[-1]
    src, out = _row_view(op, x, n, node.batched), View(op.out, (n, 1))
    exp = math_function(k.module, "exp", k.ty)
    with k.loop(_rows(node, node.batched), "row") as r:
        m = _row_max(k, src, r, n)

        def add_exp(acc: ir.Value, j: ir.Value) -> ir.Value:
            e = k.b.call(exp, [k.b.fsub(k.load(src, [r, j]), m)])
            k.store(e, out, [r, j])
            return k.b.fadd(acc, e, flags=ACCUMULATE)

        total = _fold_row(k, n, k.const(0.0), add_exp, "sum")
        with k.loop(Extent(n), "j") as j:
            k.store(k.b.fdiv(k.load(out, [r, j]), total), out, [r, j])


def _logsumexp(k: Kernel, src: View, r: ir.Value, n: int) -> ir.Value:
    m = _row_max(k, src, r, n)
    exp = math_function(k.module, "exp", k.ty)
    log = math_function(k.module, "log", k.ty)

    def add_exp(acc: ir.Value, j: ir.Value) -> ir.Value:
        return k.b.fadd(acc, k.b.call(exp, [k.b.fsub(k.load(src, [r, j]), m)]), flags=ACCUMULATE)

    total = _fold_row(k, n, k.const(0.0), add_exp, "sum")
    return k.b.fadd(m, k.b.call(log, [total]))


def logsumexp_rows(op: Op, node: Node) -> None:
    """m + log(sum(exp(x - m))) with m the row's maximum."""
    k, (x,) = op.k, node.inputs
    n = x.shape[-1]
    src, out = _row_view(op, x, n, x.batched), View(op.out, (1,))
    with k.loop(_rows(x, x.batched), "row") as r:
        k.store(_logsumexp(k, src, r, n), out, [r])


# ---------------------------------------------------------------- losses


def _mean_loss(op: Op, node: Node, term: Callable[[BodyEmitter, ir.Value, ir.Value], ir.Value]) -> None:
    """out[b] = mean over the prediction's elements of term(p, y)."""
    k = op.k
    p, y = node.inputs
    n = max(math.prod(p.shape), 1)
    pv, yv = _row_view(op, p, n, node.batched), _row_view(op, y, n, node.batched)
    out = View(op.out, (1,))
    with k.loop(Extent(1, node.batched), "row") as r:

        def add(acc: ir.Value, j: ir.Value) -> ir.Value:
            value = term(BodyEmitter(k, []), k.load(pv, [r, j]), k.load(yv, [r, j]))
            return k.b.fadd(acc, value, flags=ACCUMULATE)

        total = _fold_row(k, n, k.const(0.0), add, "sum")
        k.store(k.b.fdiv(total, k.const(float(n))), out, [r])


def _mse(e: BodyEmitter, p: ir.Value, y: ir.Value) -> ir.Value:
    d = e.b.fsub(p, y)
    return e.b.fmul(d, d, flags=ARITH)


def _bce(e: BodyEmitter, p: ir.Value, y: ir.Value) -> ir.Value:
    """-(y log q + (1 - y) log(1 - q)) with q = p clipped to [EPS, 1 - EPS]."""
    b, one = e.b, e.k.const(1.0)
    log = math_function(e.k.module, "log", e.k.ty)
    q = e.clip01(p)
    first = b.fmul(y, b.call(log, [q]))
    second = b.fmul(b.fsub(one, y), b.call(log, [b.fsub(one, q)]))
    return b.fneg(b.fadd(first, second))


def _bce_logits(e: BodyEmitter, z: ir.Value, y: ir.Value) -> ir.Value:
    """softplus(z) - y z: the cross-entropy of sigmoid(z), without computing sigmoid."""
    softplus = math_function(e.k.module, "softplus", e.k.ty)
    return e.b.fsub(e.b.call(softplus, [z]), e.b.fmul(y, z))


def _softmax_ce(op: Op, node: Node) -> None:
    """out[b] = logsumexp(z) - sum(y z)."""
    k = op.k
    z, y = node.inputs
    n = z.shape[-1]
    zv, yv = _row_view(op, z, n, node.batched), _row_view(op, y, n, node.batched)
    out = View(op.out, (1,))
    with k.loop(Extent(1, node.batched), "row") as r:
        lse = _logsumexp(k, zv, r, n)

        def dot(acc: ir.Value, j: ir.Value) -> ir.Value:
            return k.b.fadd(acc, k.b.fmul(k.load(yv, [r, j]), k.load(zv, [r, j])), flags=ACCUMULATE)

        k.store(k.b.fsub(lse, _fold_row(k, n, k.const(0.0), dot, "dot")), out, [r])


LOSSES: dict[str, Callable[[Op, Node], None]] = {
    "mse": lambda op, node: _mean_loss(op, node, _mse),
    "bce": lambda op, node: _mean_loss(op, node, _bce),
    "bce_logits": lambda op, node: _mean_loss(op, node, _bce_logits),
    "softmax_ce": _softmax_ce,
}
