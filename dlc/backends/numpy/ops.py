"""One NumPy expression per graph op (``singledispatch`` on the node's type).

Batched values are arrays with a leading batch axis of length ``B``; an op
unknown here raises an error that names it, never a wrong answer.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import sympy

from dlc.backends.numpy.inplace import BATCH
from dlc.backends.numpy.printer import print_body
from dlc.graph.nodes import (
    BatchSize,
    ClassDelta,
    Concat,
    Constant,
    Einsum,
    Elementwise,
    Expand,
    Fold,
    Index,
    LogSumExp,
    Loss,
    MatMul,
    Node,
    Permute,
    Reduce,
    ReduceKind,
    Reshape,
    Slice,
    Softmax,
    Transpose,
    Unfold,
    Window,
    broadcast,
    unknown,
)
from dlc.graph.ops import matmul_spec, merged_letters
from dlc.graph.scalar import element_symbol


@dataclass
class Context:
    """What an op's emitter needs: its inputs' variables, and where to record helpers."""

    var: Callable[[Node], str]
    helpers: set[str] = field(default_factory=set)


@dataclass
class Code:
    """Lines to run first (shared subexpressions), then the value's expression."""

    expr: str
    before: list[str] = field(default_factory=list)


def full_shape(node: Node) -> str:
    dims = (["B"] if node.batched else []) + [str(d) for d in node.shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


@functools.singledispatch
def emit(node: Node, ctx: Context, name: str) -> Code:
    raise NotImplementedError(f"the NumPy backend has no code for the op {node.op_name}")


def _aligned(x: Node, out: Node, text: str) -> str:
    """A batched input of lower rank gets axes after its batch axis, so that it broadcasts."""
    gap = len(out.shape) - len(x.shape)
    if x.batched and out.batched and gap > 0:
        return f"{text}[:, {', '.join(['None'] * gap)}]"
    return text


def dims(node: Node) -> tuple[int, ...]:
    """The node's shape at run time, with BATCH for its batch axis."""
    return ((BATCH,) if node.batched else ()) + tuple(node.shape)


def leaves(node: Elementwise, ctx: Context) -> list[tuple[Node, str, tuple[int, ...]]]:
    """Each array input of an elementwise body: its text in the body, and its shape as aligned there."""
    found = []
    for x in node.inputs:
        if is_number(x):
            continue
        gap = len(node.shape) - len(x.shape)
        shape = dims(x) if not (x.batched and gap > 0) else (BATCH,) + (1,) * gap + tuple(x.shape)
        found.append((x, ast.unparse(ast.parse(_aligned(x, node, ctx.var(x)), mode="eval")), shape))
    return found


def used_inputs(node: Node) -> list[Node]:
    """The inputs a node's value depends on (an elementwise body may ignore some)."""
    if isinstance(node, Elementwise):
        free = node.expr.free_symbols  # once: SymPy computes it anew at each call, in O(size)
        return [x for i, x in enumerate(node.inputs) if element_symbol(i) in free]
    return list(node.inputs)


@emit.register
def _(node: Elementwise, ctx: Context, name: str) -> Code:
    if not node.inputs:
        value = BodyNumber.print(node.expr)
        return Code(
            value
            if not node.shape and not node.batched
            else f"np.full({full_shape(node)}, {value}, dtype=DTYPE)"
        )
    args = [_aligned(x, node, ctx.var(x)) for x in node.inputs]
    before, expr, helpers = print_body(node.expr, args, f"_{name}")
    ctx.helpers |= helpers
    used = used_inputs(node)
    if all(isinstance(x, BatchSize) for x in used):
        expr = f"DTYPE({expr})"  # a Python number (of B) would otherwise be float64
    covered = bool(used) and broadcast(*(x.shape for x in used)) == node.shape
    if not covered or any(x.batched for x in used) != node.batched:
        expr = f"np.broadcast_to({expr}, {full_shape(node)})"
    return Code(expr, before)


class BodyNumber:
    @staticmethod
    def print(value: sympy.Expr) -> str:
        """A folded number as a Python float literal (an int, if it is a small whole number)."""
        if value.is_Integer and abs(int(value)) < 2**53:
            return str(int(value))
        if value.has(sympy.nan, sympy.zoo):
            return "np.nan"
        number = complex(value.evalf(20))
        if number.imag:
            raise NotImplementedError(f"the NumPy backend cannot compute with the complex number {value}")
        return (
            f"({number.real!r})"
            if abs(number.real) != float("inf")
            else ("np.inf" if number.real > 0 else "(-np.inf)")
        )


def is_number(node: Node) -> bool:
    """A scalar literal or the batch size: written into expressions as a Python number."""
    if isinstance(node, BatchSize):
        return True
    return isinstance(node, Elementwise) and not node.inputs and not node.shape and not node.batched


def _arr(ctx: Context, x: Node) -> str:
    """An input as an array expression: a number (or B) is made a scalar of the module's dtype."""
    text = ctx.var(x)
    return f"DTYPE({text})" if is_number(x) else text


def gemm(spec: str, a: str, b: str) -> str | None:
    """An einsum of two vectors/matrices as ``@`` with transposes, or None if it is not one."""
    lhs, out = spec.split("->")
    sa, sb = lhs.split(",")
    contracted = (set(sa) & set(sb)) - set(out)
    if max(len(sa), len(sb), len(out)) > 2 or len(contracted) != 1 or set(sa) & set(sb) - contracted:
        return None
    (c,) = contracted

    def orient(sub: str, first: bool) -> tuple[str, str]:
        if len(sub) == 1:
            return "", ""
        keep = sub[0] if first else sub[1]
        ok = sub[1] == c if first else sub[0] == c
        return ("", keep) if ok else (".T", sub[1] if first else sub[0])

    pairs = (((a, sa), (b, sb)), ((b, sb), (a, sa)))
    for flip_out in (False, True):
        for (x, sx), (y, sy) in pairs:
            (tx, rx), (ty, ry) = orient(sx, True), orient(sy, False)
            if (rx + ry)[:: -1 if flip_out else 1] == out:
                product = f"{x}{tx} @ {y}{ty}"
                return f"({product}).T" if flip_out else product
    return None


def _contract(spec: str, args: list[str], node: Node | None = None) -> str:
    found = gemm(spec, *args) if len(args) == 2 else None
    if found is None and node is not None and len(args) == 2:
        found = _merged_gemm(spec, args, node)
    return found or f"np.einsum({spec!r}, {', '.join(args)}, optimize=True)"


def _merged_gemm(spec: str, args: list[str], node: Node) -> str | None:
    """The einsum as one ``@`` of reshaped operands, where neighbouring letters that are
    neighbours in every subscript (or in none) merge: a convolution's windows times its kernel,
    ``Bhwcij,ocij->Bhwo``, is ``[B*h*w, c*i*j] @ [o, c*i*j].T``. None if that is no plain product."""
    lhs, out = spec.split("->")
    subs = lhs.split(",")
    new_subs, new_out, groups = merged_letters(subs, out)
    if new_subs == subs:
        return None
    size: dict[str, str] = {"B": "B"}
    for sub, x in zip(subs, node.inputs, strict=True):
        size.update(zip(sub.replace("B", ""), map(str, x.shape), strict=True))

    def dims(sub: str) -> str:
        parts = ["-1" if "B" in groups[c] else "*".join(size[d] for d in groups[c]) for c in sub]
        return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"

    shaped = [f"np.reshape({a}, {dims(sub)})" for a, sub in zip(args, new_subs, strict=True)]
    product = gemm(",".join(new_subs) + "->" + new_out, *shaped)
    return None if product is None else f"np.reshape({product}, {full_shape(node)})"


@emit.register
def _(node: MatMul, ctx: Context, name: str) -> Code:
    return Code(_contract(matmul_spec(*node.inputs), [_arr(ctx, x) for x in node.inputs]))


@emit.register
def _(node: Einsum, ctx: Context, name: str) -> Code:
    return Code(_contract(node.spec, [_arr(ctx, x) for x in node.inputs], node))


#: A reduction over the leading per-example axes of at most this many elements, of a value
#: at least :data:`FIRST_AXES_REST` times larger, is done one slice at a time (pooling).
FIRST_AXES_MOST = 16
FIRST_AXES_REST = 256


@emit.register
def _(node: Reduce, ctx: Context, name: str) -> Code:
    (x,) = node.inputs
    count = int(np.prod([x.shape[a] for a in node.axes]))
    if (
        node.axes == tuple(range(len(node.axes)))
        and node.axes
        and not node.batch
        and count <= FIRST_AXES_MOST
        and node.size >= FIRST_AXES_REST
    ):
        ctx.helpers.add("reduce_first")
        call = "reduce_first({}, " + f"{len(node.axes)}, {node.kind.value!r})"
        return Code(_per_batch(node, x, call, ctx))
    shift = 1 if x.batched else 0
    axes = ([0] if node.batch else []) + [a + shift for a in node.axes]
    axis = str(axes[0]) if len(axes) == 1 else repr(tuple(axes))
    # The method form: for small arrays np.sum's Python wrapper costs as much as the sum.
    match node.kind:
        case ReduceKind.SUM | ReduceKind.MEAN | ReduceKind.MAX | ReduceKind.MIN:
            method = node.kind.value  # the array method of that name
        case other:
            unknown(other)
    return Code(f"{_arr(ctx, x)}.{method}(axis={axis})")


@emit.register
def _(node: Expand, ctx: Context, name: str) -> Code:
    (x,) = node.inputs
    if isinstance(x, Elementwise) and not x.inputs:
        return Code(f"np.full({full_shape(node)}, {BodyNumber.print(x.expr)}, dtype=DTYPE)")
    dims = ["1"] * len(node.shape)
    for d, n in zip(node.dims, x.shape, strict=True):
        dims[d] = str(n)
    lead = ["B"] if x.batched else (["1"] if node.batched else [])
    shape = ", ".join(lead + dims)
    return Code(f"np.broadcast_to(np.reshape({_arr(ctx, x)}, ({shape},)), {full_shape(node)})")


@emit.register
def _(node: BatchSize, ctx: Context, name: str) -> Code:
    return Code("B")


@emit.register
def _(node: Transpose, ctx: Context, name: str) -> Code:
    return Code(f"np.swapaxes({_arr(ctx, node.inputs[0])}, -1, -2)")


@emit.register
def _(node: Softmax, ctx: Context, name: str) -> Code:
    ctx.helpers.add("softmax")
    return Code(f"softmax({_arr(ctx, node.inputs[0])})")


@emit.register
def _(node: LogSumExp, ctx: Context, name: str) -> Code:
    ctx.helpers.add("logsumexp")
    return Code(f"logsumexp({_arr(ctx, node.inputs[0])})")


def _batch_all(node: Node, parts: tuple[Node, ...], ctx: Context) -> list[str]:
    """Each part's variable; unbatched parts of a batched result are repeated over the batch."""
    return [
        f"np.broadcast_to({_arr(ctx, p)}, (B,) + np.shape({_arr(ctx, p)}))"
        if node.batched and not p.batched
        else _arr(ctx, p)
        for p in parts
    ]


@emit.register
def _(node: Concat, ctx: Context, name: str) -> Code:
    axis = node.axis + (1 if node.batched else 0)
    return Code(f"np.concatenate([{', '.join(_batch_all(node, node.inputs, ctx))}], axis={axis})")


@emit.register
def _(node: Slice, ctx: Context, name: str) -> Code:
    step = f":{node.step}" if node.step > 1 else ""
    index = [":"] * (node.axis + (1 if node.batched else 0)) + [f"{node.start}:{node.stop}{step}"]
    return Code(f"{_arr(ctx, node.inputs[0])}[{', '.join(index)}]")


@emit.register
def _(node: Index, ctx: Context, name: str) -> Code:
    index = [":"] * (node.axis + (1 if node.batched else 0)) + [str(node.index)]
    return Code(f"{_arr(ctx, node.inputs[0])}[{', '.join(index)}]")


@emit.register
def _(node: Reshape, ctx: Context, name: str) -> Code:
    return Code(f"np.reshape({_arr(ctx, node.inputs[0])}, {full_shape(node)})")


@emit.register
def _(node: Loss, ctx: Context, name: str) -> Code:
    if node.kind in ("softmax_ce", "softmax_ce_index"):
        ctx.helpers.add("logsumexp")
    ctx.helpers.add(node.kind)
    p, y = _batch_all(node, node.inputs, ctx)
    if not node.batched:  # a loss of parameters alone: give it a batch of one
        return Code(f"{node.kind}({p}[None], {y}[None])[0]")
    return Code(f"{node.kind}({p}, {y})")


@emit.register
def _(node: ClassDelta, ctx: Context, name: str) -> Code:
    ctx.helpers.add("class_delta")
    s, label, g = (_arr(ctx, x) for x in node.inputs)
    return Code(f"class_delta({s}, {label}, {g})")


def _window_args(window: Window) -> str:
    return f"{window.kernel!r}, {window.stride!r}, {window.padding!r}"


def _per_batch(node: Node, x: Node, call: str, ctx: Context) -> str:
    """``call``, a helper of batch-major arrays with ``{}`` for its argument; an unbatched x goes in
    as a batch of one."""
    if node.batched:
        return call.format(_arr(ctx, x))
    return call.format(f"{_arr(ctx, x)}[None]") + "[0]"


@emit.register
def _(node: Unfold, ctx: Context, name: str) -> Code:
    ctx.helpers.add("unfold")
    (x,) = node.inputs
    fill = BodyNumber.print(sympy.Float(node.fill)) if node.fill != 0 else "0"
    args = f"{_window_args(node.window)}, {fill}, {node.window.channels_last}"
    return Code(_per_batch(node, x, "unfold({}, " + args + ")", ctx))


@emit.register
def _(node: Fold, ctx: Context, name: str) -> Code:
    ctx.helpers.add("fold")
    (g,) = node.inputs
    args = f"{node.shape!r}, {_window_args(node.window)}, {node.window.channels_last}"
    return Code(_per_batch(node, g, "fold({}, " + args + ")", ctx))


@emit.register
def _(node: Permute, ctx: Context, name: str) -> Code:
    lead = (0,) if node.batched else ()
    axes = lead + tuple(a + len(lead) for a in node.axes)
    return Code(f"np.transpose({_arr(ctx, node.inputs[0])}, {axes!r})")


@emit.register
def _(node: Constant, ctx: Context, name: str) -> Code:
    return Code(f"np.array({node.value.tolist()!r}, dtype=DTYPE)")


def constant_value(value: np.ndarray) -> str:
    return f"np.array({value.tolist()!r}, dtype=DTYPE)"
