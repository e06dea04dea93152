"""Convolution and pooling, written with the graph's window ops.

``conv2d(x, K)`` is the windows of x (``Unfold``, channels last) times the
kernel, one matrix product ``[positions, C*kh*kw] @ [C*kh*kw, O]``, then the
axes put back in PyTorch's order ``[O, H', W']``. Pooling is a max or a mean
over the windows (``Unfold``, kernel offsets first). So neither needs a derivative
rule of its own: the chain rule goes through the product, the reduction and
the windows, whose adjoint (``Fold``, col2im) is the one new rule.
"""

from __future__ import annotations

import math

from dlc.frontend.signature import WORDS, Builtin, Call
from dlc.graph import nodes
from dlc.graph import ops as g

#: Letters of the einsum for the positions and kernel offsets of 1-D and 2-D windows.
_POSITIONS = {1: "l", 2: "hw"}
_OFFSETS = {1: "j", 2: "ij"}
#: How messages write x's and K's shapes.
_X = {1: "[C, L]", 2: "[C, H, W]"}
_K = {1: "[O, C, k]", 2: "[O, C, kh, kw]"}


def _x(c: Call, name: str, rank: int) -> nodes.Node:
    """The input, [C, *spatial]; a hint to reshape one of the right size otherwise."""
    x = c.tensor("x")
    if len(x.shape) != rank + 1:
        side = math.isqrt(x.size) if rank == 2 else x.size
        fits = rank == 1 or side * side == x.size
        hint = None
        if x.shape and fits:
            want = f"[1, {side}, {side}]" if rank == 2 else f"[1, {side}]"
            hint = f"for one channel, write {name}(reshape(x, {want}), ...)"
        c.fail(f"{name} takes x : {_X[rank]} (channels first), not {nodes.show_shape(x.shape)}", "x", hint)
    return x


def _padding(c: Call, kernel: tuple[int, ...], stride: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    rank = len(kernel)
    match c.word("padding", WORDS["padding"]):
        case "valid":
            return ((0, 0),) * rank
        case "same":  # PyTorch's: the output as large as the input; any odd element of padding after
            if any(s != 1 for s in stride):
                c.fail("padding = same needs stride 1 (an output of the input's size)", "padding")
            return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel)
    pads = c.sizes("padding", rank) or (0,) * rank
    if any(p < 0 for p in pads):
        c.fail("padding must not be negative", "padding")
    return tuple((p, p) for p in pads)


def _stride(c: Call, rank: int, default: tuple[int, ...]) -> tuple[int, ...]:
    stride = c.sizes("stride", rank) or default
    if any(s < 1 for s in stride):
        c.fail("stride must be at least 1", "stride")
    return stride


def conv(rank: int) -> Builtin:
    name = f"conv{rank}d"

    def build(c: Call) -> nodes.Node:
        x, K = _x(c, name, rank), c.tensor("K")
        if len(K.shape) != rank + 2:
            c.fail(f"{name} takes K : {_K[rank]}, not {nodes.show_shape(K.shape)}", "K")
        if K.shape[1] != x.shape[0]:
            c.fail(
                f"K : {nodes.show_shape(K.shape)} reads {K.shape[1]} channel{'s' * (K.shape[1] != 1)}, "
                f"but x : {nodes.show_shape(x.shape)} has {x.shape[0]}",
                "K",
                hint=f"{name}'s K is {_K[rank]}: out channels, then in channels",
            )
        kernel = tuple(K.shape[2:])
        stride = _stride(c, rank, (1,) * rank)
        window = nodes.Window(kernel, stride, _padding(c, kernel, stride), channels_last=True)
        windows = c.make(g.unfold, x, window)
        p, k = _POSITIONS[rank], _OFFSETS[rank]
        lead = ["B" if v else "" for v in (windows.batched, K.batched, windows.batched or K.batched)]
        spec = f"{lead[0]}{p}c{k},{lead[1]}oc{k}->{lead[2]}{p}o"
        product = c.make(g.einsum, spec, windows, K)  # [*positions, O]
        return c.make(g.permute, product, (rank, *range(rank)))

    return Builtin(
        ("x", "K", "stride", "padding"),
        build,
        optional=("stride", "padding"),
        doc=f"{rank}-D convolution (cross-correlation) of x : {_X[rank]} with K : {_K[rank]}",
    )


def pool(kind: nodes.ReduceKind, rank: int) -> Builtin:
    label = {nodes.ReduceKind.MAX: "max", nodes.ReduceKind.MEAN: "avg"}[kind]
    name = f"{label}_pool{rank}d"

    def build(c: Call) -> nodes.Node:
        x = _x(c, name, rank)
        kernel = c.sizes("k", rank)
        assert kernel is not None
        if any(k < 1 for k in kernel):
            c.fail("the window must be at least 1", "k")
        stride = _stride(c, rank, kernel)
        padding = _padding(c, kernel, stride)
        if any(lo > k // 2 or hi > k // 2 for (lo, hi), k in zip(padding, kernel, strict=True)):
            c.fail("padding must be at most half the window", "padding")
        window = nodes.Window(kernel, stride, padding, channels_last=False)
        windows = c.make(g.unfold, x, window, -math.inf if kind is nodes.ReduceKind.MAX else 0.0)
        return c.make(g.reduce_axes, kind, windows, tuple(range(rank)))  # the kernel's offsets

    what = "largest" if kind is nodes.ReduceKind.MAX else "mean"
    return Builtin(
        ("x", "k", "stride", "padding"),
        build,
        optional=("stride", "padding"),
        doc=f"the {what} of each window of k elements of x : {_X[rank]} (stride k unless given)",
    )


def library() -> dict[str, Builtin]:
    """The convolution and pooling built-ins, by name."""
    found: dict[str, Builtin] = {}
    for rank in (1, 2):
        found[f"conv{rank}d"] = conv(rank)
        found[f"max_pool{rank}d"] = pool(nodes.ReduceKind.MAX, rank)
        found[f"avg_pool{rank}d"] = pool(nodes.ReduceKind.MEAN, rank)
    return found
