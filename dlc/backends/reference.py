"""A direct NumPy evaluator of any graph, op by op: the oracle for the compiled backends.

Clear rather than fast: each node is computed by one function chosen by its
type (``singledispatch``); an op without one is an error naming it.
Elementwise bodies are turned into NumPy functions with ``sympy.lambdify``;
their symbols are dlc's own (``x0, x1 ...``) and their functions come from a
fixed table, so nothing a model file says becomes code.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import sympy

from dlc.backends import scalar_numpy as sn
from dlc.graph.graph import topological_order
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
    Input,
    LogSumExp,
    Loss,
    MatMul,
    Node,
    Param,
    Permute,
    Reduce,
    ReduceKind,
    Reshape,
    Slice,
    Softmax,
    Tangent,
    Transpose,
    Unfold,
    Window,
    unknown,
)
from dlc.graph.ops import matmul_spec
from dlc.graph.scalar import element_symbol

Array = np.ndarray


class Env:
    """What a leaf reads: inputs and targets by name, parameters, tangents, the batch size."""

    def __init__(self, feeds: Mapping[str, Array], batch: int, dtype: np.dtype[Any]) -> None:
        self.feeds, self.batch, self.dtype = feeds, batch, dtype


def evaluate(roots: list[Node], feeds: Mapping[str, Array], dtype: Any = np.float64) -> list[Array]:
    """Values of ``roots`` given arrays for every leaf by name (batch-major inputs).

    Raises:
        NotImplementedError: for an op this evaluator does not know (never a wrong answer).
    """
    dtype = np.dtype(dtype)
    batched = [np.asarray(v) for k, v in feeds.items() if k in _batched_names(roots)]
    env = Env(feeds, batched[0].shape[0] if batched else 1, dtype)
    values: dict[Node, Array] = {}
    for node in topological_order(roots):
        values[node] = np.asarray(compute(node, [values[i] for i in node.inputs], env), dtype=dtype)
    return [values[r] for r in roots]


def _batched_names(roots: list[Node]) -> set[str]:
    return {n.name for n in topological_order(roots) if isinstance(n, Input)}


def _full(node: Node, env: Env) -> tuple[int, ...]:
    return ((env.batch,) if node.batched else ()) + node.shape


def _aligned(x: Array, inp: Node, out: Node) -> Array:
    """Put a batched input's batch axis where NumPy's right-aligned broadcasting expects it."""
    if inp.batched and out.batched and len(inp.shape) < len(out.shape):
        return x.reshape((x.shape[0],) + (1,) * (len(out.shape) - len(inp.shape)) + inp.shape)
    return x


def _per_example_axis(node: Node, axis: int) -> int:
    return axis + 1 if node.batched else axis


@functools.singledispatch
def compute(node: Node, args: list[Array], env: Env) -> Array:
    raise NotImplementedError(f"the reference evaluator has no rule for {node.op_name}")


@compute.register
def _(node: Input, args: list[Array], env: Env) -> Array:
    return np.asarray(env.feeds[node.name], dtype=env.dtype)


@compute.register
def _(node: Param, args: list[Array], env: Env) -> Array:
    return np.asarray(env.feeds[node.name], dtype=env.dtype)


@compute.register
def _(node: Tangent, args: list[Array], env: Env) -> Array:
    return np.asarray(env.feeds[node.name], dtype=env.dtype)


@compute.register
def _(node: Constant, args: list[Array], env: Env) -> Array:
    return node.value.astype(env.dtype)


@compute.register
def _(node: BatchSize, args: list[Array], env: Env) -> Array:
    return np.asarray(env.batch, dtype=env.dtype)


@functools.lru_cache(maxsize=4096)
def _lambdified(expr: sympy.Expr, n: int) -> Any:
    symbols = [element_symbol(i) for i in range(n)]
    return sympy.lambdify(symbols, expr, modules=[sn.FUNCTIONS, "numpy"])


@compute.register
def _(node: Elementwise, args: list[Array], env: Env) -> Array:
    fn = _lambdified(node.expr, len(args))
    aligned = [_aligned(a, i, node) for a, i in zip(args, node.inputs, strict=True)]
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        out = fn(*aligned)
    return np.broadcast_to(np.asarray(out, dtype=env.dtype), _full(node, env))


@compute.register
def _(node: MatMul, args: list[Array], env: Env) -> Array:
    return np.einsum(matmul_spec(*node.inputs), *args)


@compute.register
def _(node: Einsum, args: list[Array], env: Env) -> Array:
    return np.einsum(node.spec, *args)


@compute.register
def _(node: Reduce, args: list[Array], env: Env) -> Array:
    (x,) = node.inputs
    axes = tuple(_per_example_axis(x, a) for a in node.axes) + ((0,) if node.batch else ())
    match node.kind:
        case ReduceKind.SUM:
            return np.sum(args[0], axis=axes)
        case ReduceKind.MEAN:
            return np.mean(args[0], axis=axes)
        case ReduceKind.MAX:
            return np.max(args[0], axis=axes)
        case ReduceKind.MIN:
            return np.min(args[0], axis=axes)
        case other:
            unknown(other)


@compute.register
def _(node: Expand, args: list[Array], env: Env) -> Array:
    (x,) = node.inputs
    value = args[0]
    shape = [1] * len(node.shape)
    for d, n in zip(node.dims, x.shape, strict=True):
        shape[d] = n
    lead = (value.shape[0],) if x.batched else ((1,) if node.batched else ())
    return np.broadcast_to(value.reshape(lead + tuple(shape)), _full(node, env))


@compute.register
def _(node: Softmax, args: list[Array], env: Env) -> Array:
    return sn.softmax(args[0])


@compute.register
def _(node: LogSumExp, args: list[Array], env: Env) -> Array:
    return sn.logsumexp(args[0])


@compute.register
def _(node: Transpose, args: list[Array], env: Env) -> Array:
    return np.swapaxes(args[0], -1, -2)


@compute.register
def _(node: Concat, args: list[Array], env: Env) -> Array:
    parts = [
        np.broadcast_to(a, (env.batch, *a.shape)) if node.batched and not x.batched else a
        for a, x in zip(args, node.inputs, strict=True)
    ]
    return np.concatenate(parts, axis=_per_example_axis(node, node.axis))


@compute.register
def _(node: Slice, args: list[Array], env: Env) -> Array:
    index = [slice(None)] * args[0].ndim
    index[_per_example_axis(node, node.axis)] = slice(node.start, node.stop, node.step)
    return args[0][tuple(index)]


@compute.register
def _(node: Index, args: list[Array], env: Env) -> Array:
    return np.take(args[0], node.index, axis=_per_example_axis(node.inputs[0], node.axis))


@compute.register
def _(node: Reshape, args: list[Array], env: Env) -> Array:
    return np.reshape(args[0], ((args[0].shape[0],) if node.batched else ()) + node.shape)


@compute.register
def _(node: Loss, args: list[Array], env: Env) -> Array:
    # The same stable helpers the generated modules carry; they expect a batch axis.
    batch = env.batch if node.batched else 1
    p, y = (
        a if x.batched else np.broadcast_to(a, (batch, *x.shape))
        for a, x in zip(args, node.inputs, strict=True)
    )
    value = getattr(sn, node.kind)(p, y)
    return value if node.batched else value[0]


@compute.register
def _(node: ClassDelta, args: list[Array], env: Env) -> Array:
    return sn.class_delta(*args)


def _window_pairs(window: Window, spatial: tuple[int, ...]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(position, kernel offset) of every element of every window, by plain enumeration."""
    out = window.positions(spatial)
    return [(p, k) for p in np.ndindex(*out) for k in np.ndindex(*window.kernel)]


def _source(window: Window, p: tuple[int, ...], k: tuple[int, ...]) -> tuple[int, ...]:
    """The (unpadded) coordinates an element of a window reads."""
    return tuple(
        pi * s + ki - lo for pi, ki, s, (lo, _) in zip(p, k, window.stride, window.padding, strict=True)
    )


def _window_index(window: Window, c: Any, p: tuple[int, ...], k: tuple[int, ...]) -> tuple[Any, ...]:
    return (*p, c, *k) if window.channels_last else (*k, c, *p)


def _at(*index: Any) -> tuple[Any, ...]:
    """An index of slices and numbers (typed loosely: NumPy's stubs take one kind at a time)."""
    return index


@compute.register
def _(node: Unfold, args: list[Array], env: Env) -> Array:
    (x,) = node.inputs
    value = args[0] if x.batched else args[0][None]
    spatial = x.shape[1:]
    out = np.full((value.shape[0], *node.shape), node.fill, dtype=env.dtype)
    every = slice(None)
    for p, k in _window_pairs(node.window, spatial):
        at = _source(node.window, p, k)
        if all(0 <= a < n for a, n in zip(at, spatial, strict=True)):
            out[(every, *_window_index(node.window, every, p, k))] = value[_at(every, every, *at)]
    return out if node.batched else out[0]


@compute.register
def _(node: Fold, args: list[Array], env: Env) -> Array:
    value = args[0] if node.batched else args[0][None]
    spatial = node.shape[1:]
    out = np.zeros((value.shape[0], *node.shape), dtype=env.dtype)
    every = slice(None)
    for p, k in _window_pairs(node.window, spatial):
        at = _source(node.window, p, k)
        if all(0 <= a < n for a, n in zip(at, spatial, strict=True)):
            out[_at(every, every, *at)] += value[(every, *_window_index(node.window, every, p, k))]
    return out if node.batched else out[0]


@compute.register
def _(node: Permute, args: list[Array], env: Env) -> Array:
    lead = (0,) if node.batched else ()
    return np.transpose(args[0], lead + tuple(a + len(lead) for a in node.axes))
