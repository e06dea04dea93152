"""The window kernels of convolution and pooling: Unfold (im2col) and its adjoint Fold (col2im).

Unfold copies every window of x into a matrix whose product with the kernel
is the convolution (one gemm for the whole batch, see :mod:`~dlc.backends.llvm.tensor`);
Fold adds windows back. Without padding, every element a window reads is
inside x, and Unfold is a strided copy: one view of x over the windows'
index space. With padding, each address is clamped to one inside x and the
value chosen after the load, so no load ever leaves x and the loop stays
free of branches.
"""

from __future__ import annotations

import math

from llvmlite import ir

from dlc.backends.llvm.kernels import I64, ZERO, Extent, View, fill, map_elements
from dlc.backends.llvm.op import Op, extents, home, identity, strides
from dlc.graph.nodes import Fold, Unfold, Window


def _roles(window: Window) -> tuple[list[int], int, list[int]]:
    """Which per-example axes of the windows are the positions, the channel and the kernel offsets."""
    rank = len(window.kernel)
    if window.channels_last:
        return list(range(rank)), rank, [rank + 1 + t for t in range(rank)]
    return [rank + 1 + t for t in range(rank)], rank, list(range(rank))


def _x_strides(window: Window, x_shape: tuple[int, ...], batched: bool, rank_out: int) -> list[int]:
    """x's strides over the windows' index space (no padding): a position moves by stride rows."""
    xs = strides(x_shape)
    positions, channel, offsets = _roles(window)
    per = [0] * rank_out
    per[channel] = xs[0]
    for t, (p, o) in enumerate(zip(positions, offsets, strict=True)):
        per[p] = window.stride[t] * xs[1 + t]
        per[o] = xs[1 + t]
    return ([math.prod(x_shape)] if batched else []) + per


def unfold_kernel(op: Op, node: Unfold) -> None:
    (x,) = node.inputs
    source = op.src(x)
    assert isinstance(source, ir.Value)
    window = node.window
    if not window.padded:
        view = View(source, tuple(_x_strides(window, x.shape, x.batched, len(node.shape))))
        map_elements(op.k, extents(node), home(node, op.out), [view], identity)
        return
    k, b = op.k, op.k.b
    out = home(node, op.out)
    with k.nest(extents(node)) as index:
        address, inside = _source(op, window, x.shape, index, node.batched)
        value = b.load(b.gep(source, [address], inbounds=True, source_etype=k.ty), typ=k.ty, align=k.align)
        k.store(b.select(inside, value, k.const(node.fill)), out, index)


def fold_kernel(op: Op, node: Fold) -> None:
    """x = 0, then each window element added where it was read from (the padding's dropped)."""
    (g,) = node.inputs
    k, b = op.k, op.k.b
    window = node.window
    source = op.src(g)
    assert isinstance(source, ir.Value)
    g_view = home(g, source)
    if not window.padded and all(s >= n for s, n in zip(window.stride, window.kernel, strict=True)):
        _fold_disjoint(op, node, g_view)
        return
    fill(k, View(op.out, (1,)), Extent(math.prod(node.shape), node.batched), k.const(0.0))
    with k.nest(extents(g)) as index:
        address, inside = _source(op, window, node.shape, index, g.batched)
        value = k.load(g_view, index)
        if inside is not None:
            value = b.select(inside, value, k.const(0.0))
        slot = b.gep(op.out, [address], inbounds=True, source_etype=k.ty)
        total = b.fadd(b.load(slot, typ=k.ty, align=k.align), value)
        b.store(total, slot, align=k.align)


def _fold_disjoint(op: Op, node: Fold, g: View) -> None:
    """Windows that neither overlap nor hang over the edge: each element of x receives at most
    one element of g, so x is written once, without reading it back (zeros where no window reaches).
    The loops walk x's own order ([B,] C, then each position with its kernel offset inside it)."""
    (windows,) = node.inputs
    window = node.window
    positions, channel, offsets = _roles(window)
    lead = 1 if node.batched else 0
    spatial = node.shape[1:]
    per_axis = zip(window.positions(spatial), window.stride, spatial, window.kernel, strict=True)
    covered = all(p * s == n and s == k for p, s, n, k in per_axis)
    if not covered:
        fill(op.k, View(op.out, (1,)), Extent(math.prod(node.shape), node.batched), op.k.const(0.0))
    axes = [channel, *(a for pair in zip(positions, offsets, strict=True) for a in pair)]
    x_along = _x_strides(window, node.shape, node.batched, len(windows.shape))
    space = extents(windows)
    order = list(range(lead)) + [lead + a for a in axes]
    target = View(op.out, tuple(x_along[a] for a in order))
    source = View(g.ptr, tuple(g.strides[a] for a in order), g.offset)
    map_elements(op.k, [space[a] for a in order], target, [source], identity)


def _source(
    op: Op, window: Window, x_shape: tuple[int, ...], index: list[ir.Value], batched: bool
) -> tuple[ir.Value, ir.Value | None]:
    """The element of x that a window element at ``index`` reads, as an offset into x (clamped
    inside x), and whether it is inside (None: always, there is no padding)."""
    b = op.k.b
    per = index[1:] if batched else index
    positions, channel, offsets = _roles(window)
    xs = strides(x_shape)
    address: ir.Value = b.mul(per[channel], ir.Constant(I64, xs[0]))
    if batched:
        address = b.add(address, b.mul(index[0], ir.Constant(I64, math.prod(x_shape))))
    inside: ir.Value | None = None
    for t, (p, o) in enumerate(zip(positions, offsets, strict=True)):
        lo = window.padding[t][0]
        at = b.add(b.mul(per[p], ir.Constant(I64, window.stride[t])), per[o])
        if window.padded:
            at = b.sub(at, ir.Constant(I64, lo))
            ok = b.icmp_unsigned("<", at, ir.Constant(I64, x_shape[1 + t]))  # also false below 0
            inside = ok if inside is None else b.and_(inside, ok)
            at = b.select(ok, at, ZERO)
        address = b.add(address, b.mul(at, ir.Constant(I64, xs[1 + t])))
    return address, inside
