"""Ops that work along the last axis: softmax, logsumexp and the losses.

Each keeps to the numerically stable form the NumPy backend uses
(:mod:`dlc.backends.scalar_numpy`): the row's maximum is subtracted before
``exp``, probabilities are clipped before ``log``, and a cross-entropy of
logits goes through ``softplus``.

Rows are short (a few classes), so a loop along a row would leave ``exp``
and ``log`` scalar. Each op is written instead as passes over the whole
batch: the row maxima, then ``exp(x - max)`` over every element at once
(one flat loop, vectorized), then the row sums, then one ``log`` per row
(again one flat loop). The passes keep their intermediates in the kernel's
``temp``; :func:`temp_need` says how many elements per row.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from llvmlite import ir

from dlc.backends.llvm.kernels import I64, Extent, Operand, View, contract, map_elements
from dlc.backends.llvm.mathlib import math_function
from dlc.backends.llvm.op import Op
from dlc.backends.llvm.scalar import BodyEmitter, intrinsic
from dlc.graph.nodes import ClassDelta, LogSumExp, Loss, Node, Softmax

Body = Callable[[list[ir.Value]], ir.Value]


def temp_need(node: Node) -> int:
    """Elements of scratch per example (in all, for an unbatched node) that the op's passes use."""
    if isinstance(node, Softmax):
        return _row_count(node.shape)  # the row maxima, then the row sums
    if isinstance(node, LogSumExp):
        (x,) = node.inputs
        return _row_count(x.shape) * (1 + x.shape[-1])  # maxima, and exp(x - max)
    if isinstance(node, Loss):
        n = math.prod(node.inputs[0].shape)
        if node.kind == "softmax_ce_index":
            return 1 + n  # max, exp(z - max)
        return 3 + n if node.kind == "softmax_ce" else n  # max, y.z, 1/sum, exp(z - max); or each term
    return 0


def _row_count(shape: tuple[int, ...]) -> int:
    return math.prod(shape[:-1])


class Rows:
    """One kernel's view of its data as [row, j]: the rows (the batch included) and their length."""

    def __init__(self, op: Op, rows: Extent, n: int) -> None:
        self.op, self.k, self.rows, self.n = op, op.k, rows, n
        self.space = [rows, Extent(n)]
        self.count = op.k.extent(rows)
        self.used = 0

    def operand(self, x: Node) -> Operand:
        """``x`` as [row, j]; an unbatched ``x`` in a batched op repeats for every example.

        A number (a loss against a constant target) stays a value.
        """
        source = self.op.src(x)
        if isinstance(source, View) or not isinstance(source.type, ir.PointerType):
            return source
        step = self.n if (x.batched or not self.rows.batch) else 0
        return View(source, (step, 1))

    def scratch(self, width: int) -> View:
        """The next ``width`` elements per row of the kernel's temp, as [row, j]."""
        start = self.k.b.mul(self.count, ir.Constant(I64, self.used))
        self.used += width
        return View(self.k.b.gep(self.op.temp, [start], inbounds=True, source_etype=self.k.ty), (width, 1))

    @staticmethod
    def per_row(view: View) -> View:
        """A [row, j] view of one value per row, the same all along the row."""
        return View(view.ptr, (view.strides[0], 0), view.offset)

    def call(self, name: str, *args: ir.Value) -> ir.Value:
        return self.k.b.call(math_function(self.k.module, name, self.k.ty), list(args))

    # ------------------------------------------------------------ passes

    def each(self, out: View, ins: list[Operand], body: Body) -> None:
        """out[r, j] = body(ins[r, j] ...) over the whole batch at once."""
        map_elements(self.k, self.space, out, ins, body)

    def each_row(self, out: View, ins: list[View], body: Body) -> None:
        """out[r] = body(ins[r] ...): one value per row, in one flat loop."""
        columns = [View(v.ptr, (v.strides[0],), v.offset) for v in [out, *ins]]
        map_elements(self.k, [self.rows], columns[0], columns[1:], body)

    def row_max(self, x: Operand, out: View) -> None:
        """out[r] = max_j x[r, j], NaN-propagating as ndarray.max."""
        k = self.k
        maximum = intrinsic(k, "maximum", 2)
        with k.loop(self.rows, "r") as r:
            acc = k.variable("max", k.const(-math.inf))
            with k.loop(Extent(self.n), "j") as j:
                k.b.store(k.b.call(maximum, [k.b.load(acc, typ=k.ty), k.load(x, [r, j])]), acc)
            k.store(k.b.load(acc, typ=k.ty), View(out.ptr, (out.strides[0],), out.offset), [r])

    def row_sum(self, out: View, *factors: Operand) -> None:
        """out[r] = sum over j of the product of the factors at [r, j]."""
        contract(self.k, self.space, [0, 1], self.per_row(out), self.rows, list(factors))

    def normalize(self, e: View, sums: View) -> None:
        """e[r, j] /= sums[r], as one division per row and a product per element; sums become 1/sums."""
        b = self.k.b
        self.each_row(sums, [sums], lambda v: b.fdiv(self.k.const(1.0), v[0]))
        self.each(e, [e, self.per_row(sums)], lambda v: b.fmul(v[0], v[1]))

    def exp_shifted(self, x: Operand, m: View, e: View) -> None:
        """e[r, j] = exp(x[r, j] - m[r]), the exps in one flat pass."""
        self.each(e, [self.per_row(m)], lambda v: v[0])
        self.each(e, [x, e], lambda v: self.call("exp", self.k.b.fsub(v[0], v[1])))


# --------------------------------------------------------------- ops


def softmax_rows(op: Op, node: Node) -> None:
    """e = exp(x - max x); out = e / sum(e)."""
    n = node.shape[-1]
    rows = Rows(op, Extent(_row_count(node.shape), node.batched), n)
    x, out, m = rows.operand(node.inputs[0]), View(op.out, (n, 1)), rows.scratch(1)
    rows.row_max(x, m)
    rows.exp_shifted(x, m, out)
    rows.row_sum(m, out)  # the maxima are spent: their place takes the sums
    rows.normalize(out, m)


def logsumexp_rows(op: Op, node: Node) -> None:
    """m + log(sum(exp(x - m))) with m the row's maximum."""
    (x,) = node.inputs
    n = x.shape[-1]
    rows = Rows(op, Extent(_row_count(x.shape), x.batched), n)
    m, e, out = rows.scratch(1), rows.scratch(n), View(op.out, (1, 0))
    rows.row_max(rows.operand(x), m)
    rows.exp_shifted(rows.operand(x), m, e)
    rows.row_sum(out, e)
    rows.each_row(out, [m, out], lambda v: op.k.b.fadd(v[0], rows.call("log", v[1])))


def softmax_ce_rows(op: Op, node: Node, softmax: ir.Value | None = None) -> None:
    """out[b] = logsumexp(z) - sum(y z); with ``softmax``, softmax(z) too, from the same exps."""
    z, y = node.inputs
    n = z.shape[-1]
    rows = Rows(op, Extent(1, node.batched), n)
    zv, yv = rows.operand(z), rows.operand(y)
    m, dot = rows.scratch(1), rows.scratch(1)
    e = View(softmax, (n, 1)) if softmax is not None else rows.scratch(n)
    out, b = View(op.out, (1, 0)), op.k.b
    rows.row_max(zv, m)
    rows.exp_shifted(zv, m, e)
    rows.row_sum(out, e)  # the sums of the exps
    rows.row_sum(dot, yv, zv)
    if softmax is not None:
        inverse = rows.scratch(1)
        rows.each_row(inverse, [out], lambda v: v[0])
        rows.normalize(e, inverse)
    rows.each_row(out, [m, out, dot], lambda v: b.fsub(b.fadd(v[0], rows.call("log", v[1])), v[2]))


def _mean_loss(op: Op, node: Node, term: Callable[[BodyEmitter, ir.Value, ir.Value], ir.Value]) -> None:
    """out[b] = the mean over the prediction's elements of term(p, y): the terms in one flat pass."""
    p, y = node.inputs
    n = max(math.prod(p.shape), 1)
    rows = Rows(op, Extent(1, node.batched), n)
    terms, out = rows.scratch(n), View(op.out, (1, 0))
    rows.each(terms, [rows.operand(p), rows.operand(y)], lambda v: term(BodyEmitter(op.k, []), v[0], v[1]))
    rows.row_sum(out, terms)
    rows.each_row(out, [out], lambda v: op.k.b.fdiv(v[0], op.k.const(float(n))))


def _mse(e: BodyEmitter, p: ir.Value, y: ir.Value) -> ir.Value:
    d = e.b.fsub(p, y)
    return e.b.fmul(d, d)


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


LOSSES: dict[str, Callable[[Op, Node], None]] = {
    "mse": lambda op, node: _mean_loss(op, node, _mse),
    "bce": lambda op, node: _mean_loss(op, node, _bce),
    "bce_logits": lambda op, node: _mean_loss(op, node, _bce_logits),
    "softmax_ce": softmax_ce_rows,
    "softmax_ce_index": lambda op, node: softmax_ce_index_rows(op, node),
}


def _class_index(op: Op, label: Node, r: ir.Value, n: int) -> tuple[ir.Value, ir.Value]:
    """(index, whether it is one): the class index of example ``r``, as an integer in 0..n-1.

    The module's checks let only whole numbers 0..n-1 through; whatever the label
    holds, nothing outside the row is read (an index out of range, or NaN, is not one).
    """
    k, b = op.k, op.k.b
    value = k.load(View(op.src(label), (1,)), [r])
    ok = b.and_(b.fcmp_ordered(">=", value, k.const(0.0)), b.fcmp_ordered("<", value, k.const(float(n))))
    return b.select(ok, b.fptosi(value, I64), ir.Constant(I64, 0)), ok


def softmax_ce_index_rows(op: Op, node: Node) -> None:
    """out[b] = logsumexp(z) - z[label]: the row's exps in one flat pass, then one pick per row.

    A label that is no class index gives NaN.
    """
    z, label = node.inputs
    n = z.shape[-1]
    rows = Rows(op, Extent(1, node.batched), n)
    zv, out, k = rows.operand(z), View(op.out, (1, 0)), op.k
    m, e = rows.scratch(1), rows.scratch(n)
    rows.row_max(zv, m)
    rows.exp_shifted(zv, m, e)
    rows.row_sum(out, e)
    rows.each_row(out, [m, out], lambda v: k.b.fadd(v[0], rows.call("log", v[1])))
    column = View(op.out, (1,))
    with k.loop(rows.rows, "r") as r:
        index, ok = _class_index(op, label, r, n)
        picked = k.b.select(ok, k.load(zv, [r, index]), k.const(math.nan))
        k.store(k.b.fsub(k.load(column, [r]), picked), column, [r])


def class_delta_rows(op: Op, node: ClassDelta) -> None:
    """out[b, j] = g[b] * s[b, j], less g[b] where j is the label of example b."""
    s, label, g = node.inputs
    n = node.shape[-1]
    k, b = op.k, op.k.b
    rows = Rows(op, Extent(1, True), n)
    sv, out = rows.operand(s), View(op.out, (n, 1))
    weight = op.src(g)
    if isinstance(weight, View) or isinstance(weight.type, ir.PointerType):
        weight = View(weight.ptr if isinstance(weight, View) else weight, (1 if g.batched else 0,))
    with k.loop(rows.rows, "r") as r:
        index, ok = _class_index(op, label, r, n)
        index = b.select(ok, index, ir.Constant(I64, -1))
        w = k.load(weight, [r])
        with k.loop(Extent(n), "j") as j:
            value = b.fmul(k.load(sv, [r, j]), w)
            value = b.select(b.icmp_signed("==", j, index), b.fsub(value, w), value)
            k.store(value, out, [r, j])
