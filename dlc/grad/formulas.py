"""The derived formulas, for people: forward values, backward deltas, parameter gradients.

Built from the same reverse sweep that the compiled code runs (the cotangent
nodes of :func:`dlc.grad.backprop.cotangents`), printed in matrix-calculus
notation with named intermediate terms: z (matrix products), h (what an
elementwise function makes of them), δ (the loss's derivative with respect to
a named value, for one example; it carries the 1/B of the batch mean).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import permutations, product
from typing import Any

import sympy

from dlc.grad import notation as nt
from dlc.grad.backprop import cotangents
from dlc.grad.rules import _output_form
from dlc.graph.graph import Builder, Graph
from dlc.graph.nodes import (
    BatchSize,
    ClassDelta,
    Constant,
    Einsum,
    Elementwise,
    Expand,
    Fold,
    Index,
    Input,
    Loss,
    MatMul,
    Node,
    Param,
    Permute,
    Reduce,
    ReduceKind,
    Reshape,
    Slice,
    Tangent,
    Transpose,
    Unfold,
    Window,
    typed_shape,
    unknown,
)
from dlc.graph.ops import matmul_spec
from dlc.graph.printer import LOSS_NAMES
from dlc.graph.scalar import element_symbol
from dlc.recursion import deep_recursion


def _sym(name: str) -> sympy.Symbol:
    """A display name; real, so that SymPy need not reason about complex values."""
    return sympy.Symbol(name, real=True)


def _substitute(expr: sympy.Expr, args: list[sympy.Expr]) -> sympy.Expr:
    """An elementwise body with its inputs' notation put in."""
    return expr.xreplace({element_symbol(k): x for k, x in enumerate(args)})


CONVENTION = (
    "Values are per example; B is the number of examples in a batch and the loss L is the "
    "mean of ℓ over the batch. ⊙ is the elementwise product, ᵀ the transpose, Σ_b a sum over "
    "the batch; δ names the derivative of L with respect to a value, for one example."
)


@dataclass(frozen=True)
class Equation:
    """``lhs = rhs``, SymPy expressions in :mod:`dlc.grad.notation`, with the value's shape."""

    lhs: sympy.Expr
    rhs: sympy.Expr
    shape: str = ""

    def text(self) -> str:
        return self._text

    @functools.cached_property
    def _text(self) -> str:
        # Printed once: a model's module shows each formula in its docstring and in FORMULAS.
        return f"{nt.text(self.lhs)} = {nt.text(self.rhs)}"

    def latex(self) -> str:
        return f"{nt.latex(self.lhs)} = {nt.latex(self.rhs)}"

    def _repr_latex_(self) -> str:
        return f"$${self.latex()}$$"


@dataclass(frozen=True)
class Derivation:
    """All formulas of one model; ``text()``, ``latex()``, ``markdown()`` render them."""

    model: str
    forward: tuple[Equation, ...]
    backward: tuple[Equation, ...]
    gradients: dict[str, Equation]
    derivatives: tuple[Equation, ...]
    #: what the symbols stand for: the node of each value and δ by its symbol's name, and the node of
    #: each parameter's gradient by the parameter's name (to put values into the formulas)
    symbols: dict[str, Node] = field(default_factory=dict, compare=False, repr=False)
    gradient_nodes: dict[str, Node] = field(default_factory=dict, compare=False, repr=False)

    def sections(self, wrt: str | None = None) -> list[tuple[str, list[Equation]]]:
        grads = [e for k, e in self.gradients.items() if wrt in (None, k)]
        return [
            ("Forward pass", list(self.forward)),
            ("Backward pass", list(self.backward)),
            ("Gradients", grads),
            ("Derivatives of the elementwise functions", list(self.derivatives)),
        ]

    def text(self, wrt: str | None = None) -> str:
        lines = [f"model {self.model}", CONVENTION]
        for title, eqs in self.sections(wrt):
            if eqs:
                lines.append(f"\n{title}:")
                texts = [e.text() for e in eqs]
                width = max(len(t) for t in texts)
                lines += [f"  {t:<{width}}  {e.shape}".rstrip() for t, e in zip(texts, eqs, strict=True)]
        return "\n".join(lines)

    def latex(self, wrt: str | None = None) -> str:
        parts = []
        for title, eqs in self.sections(wrt):
            if eqs:
                rows = " \\\\\n".join(f"  {nt.latex(e.lhs)} &= {nt.latex(e.rhs)}" for e in eqs)
                parts.append(f"% {title}\n\\begin{{aligned}}\n{rows}\n\\end{{aligned}}")
        return "\n\n".join(parts)

    def markdown(self, wrt: str | None = None) -> str:
        out = [f"# Gradients of `{self.model}`", "", CONVENTION]
        for title, eqs in self.sections(wrt):
            if eqs:
                out += ["", f"## {title}", "", "| formula | shape |", "| --- | --- |"]
                out += [f"| ${e.latex()}$ | `{e.shape}` |" for e in eqs]
        return "\n".join(out)

    def _repr_latex_(self) -> str:
        return "$$" + self.latex().replace("\n\n", r"\\ ") + "$$"


def derive(graph: Graph) -> Derivation:
    """The formulas of ``graph``'s forward pass and of dL/dθ for every parameter θ."""
    with deep_recursion():
        cots = cotangents(graph.loss, list(graph.params), Builder())
        names = forward_names(graph)
        show = Notation(names)
        forward = tuple(
            Equation(_sym(names[n]), show.forward(n), typed_shape(n))
            for n in graph.nodes()
            if n.inputs and n in names
        )
        pools = [r for r in map(pool_of, graph.nodes()) if r is not None]
        show.pool_backs = {cots[r.inputs[0]]: r for r in pools if r.inputs[0] in cots}
        show.cots = cots
        deltas = _deltas(graph, cots, names)
        show.deltas = {cots[n]: _sym(d) for n, d in deltas.items()}
        backward = tuple(
            Equation(show.deltas[cots[n]], show.backward(cots[n], defining=cots[n]), typed_shape(n))
            for n in reversed(graph.nodes())
            if n in deltas and show.deltas[cots[n]] == _sym(deltas[n])
        )
        gradients = {
            p.name: Equation(nt.Grad(_sym(p.name)), show.backward(cots[p]), typed_shape(p))
            for p in graph.params
            if p in cots
        }
        symbols = {name: node for node, name in names.items()}
        symbols.update({d: cots[n] for n, d in deltas.items()})
        nodes = {p.name: cots[p] for p in graph.params if p in cots}
        return Derivation(graph.name, forward, backward, gradients, _derivatives(graph), symbols, nodes)


def forward_names(graph: Graph) -> dict[Node, str]:
    """z1, h1, ... for computed values (user names win); leaves keep their own names."""
    names: dict[Node, str] = {}
    counters: dict[str, int] = {}

    given = set(graph.names.values())  # the user's names, which no made-up name may take

    def fresh(prefix: str) -> str:
        counters[prefix] = counters.get(prefix, 0) + 1
        while f"{prefix}{counters[prefix]}" in given:
            counters[prefix] += 1
        return f"{prefix}{counters[prefix]}"

    # the names of roles (a loss term, the output, the loss) that more than one node would take
    roles = [_given_name(graph, n) for n in graph.nodes() if n not in graph.names and n.inputs]
    shared = {r for r in ROLES if roles.count(r) > 1}
    layer: dict[Node, int] = {}  # z_k -> k, so that what a layer's activation makes is h_k
    hidden = {part for node in graph.nodes() for part in window_parts(node)}
    for node in graph.nodes():
        if isinstance(node, Elementwise) and not node.inputs:
            continue  # a number, shown as itself
        if node in hidden and node not in graph.names:
            continue  # part of a convolution or a pooling, shown as the call
        name = _given_name(graph, node)
        taken = name in given or name in names.values() or name in shared
        if node not in graph.names and name in ROLES and taken:
            name = fresh(name)  # several loss terms (ell1, ell2), or a role whose name the user took
        if name is None and (isinstance(node, (MatMul, Einsum)) or conv_of(node)):
            name = fresh("z")
            layer[node] = counters["z"]
        elif name is None and isinstance(node, Elementwise):
            k = next((layer[i] for i in node.inputs if i in layer), None)
            name = f"h{k}" if k is not None and f"h{k}" not in {*names.values(), *given} else None
        names[node] = name or fresh("u" if node.shape or node.batched else "c")
    return names


#: The names of special roles: a loss term, the one unnamed output, the loss.
ROLES = ("ell", "yhat", "L")


def _given_name(graph: Graph, node: Node) -> str | None:
    """A leaf's or a user-named value's own name, or the name of a special role."""
    if isinstance(node, (Input, Param, Tangent)):
        return node.name
    if node in graph.names:
        return graph.names[node]
    if isinstance(node, Loss):
        return "ell"
    if node in graph.outputs.values():
        return "yhat" if not graph.named_outputs else None
    return "L" if node is graph.loss else None


def _deltas(graph: Graph, cots: dict[Node, Node], names: dict[Node, str]) -> dict[Node, str]:
    """The values whose δ gets a name: matrix products' outputs and the user's named values."""
    deltas = {}
    for node in graph.nodes():
        named = node in graph.names or isinstance(node, (MatMul, Einsum)) or conv_of(node) or pool_of(node)
        if node in cots and node.inputs and named and node in names:
            n = names[node]
            deltas[node] = "delta" + (n[1:] if n[0] == "z" and n[1:].isdigit() else "_" + n)
    return deltas


class Notation:
    """Turns graph nodes into notation, naming known values instead of expanding them."""

    def __init__(self, names: dict[Node, str]) -> None:
        self.names = names
        self.deltas: dict[Node, sympy.Symbol] = {}
        self.cots: dict[
            Node, Node
        ] = {}  # each value's cotangent, where formulas of the backward pass are shown
        self.pool_backs: dict[Node, Reduce] = {}  # a pooling's windows' cotangent -> the pooling

    def forward(self, node: Node) -> sympy.Expr:
        return self._op(node, self.ref)

    def backward(self, node: Node, defining: Node | None = None) -> sympy.Expr:
        return self._op(node, lambda n: self.backward_ref(n, defining))

    def ref(self, node: Node) -> sympy.Expr:
        if node in self.names:
            return _sym(self.names[node])
        return self._op(node, self.ref)

    def backward_ref(self, node: Node, defining: Node | None) -> sympy.Expr:
        if node in self.names:
            return _sym(self.names[node])
        if node in self.deltas and node is not defining:
            return self.deltas[node]
        return self._op(node, lambda n: self.backward_ref(n, defining))

    def _op(self, node: Node, arg: Callable[[Node], sympy.Expr]) -> sympy.Expr:
        call = self._window_call(node, arg)
        if call is not None:
            return call
        args = [arg(i) for i in node.inputs]
        notation = _NOTATION.get(type(node))
        if notation is None:
            return sympy.Function(node.op_name)(*args)
        return notation(node, args)

    def _window_call(self, node: Node, arg: Callable[[Node], sympy.Expr]) -> sympy.Expr | None:
        """A convolution, a pooling or their gradients as the call a person writes, or None.

        conv2d(x, K) is built as the windows of x times K, permuted; its gradients are
        conv_transpose2d(δ, K) for x and conv2d_weight(x, δ) for K (PyTorch's names for them).
        """
        if conv := conv_of(node):
            einsum, unfold = conv
            rank = len(unfold.window.kernel)
            return _call(f"conv{rank}d", [arg(unfold.inputs[0]), arg(einsum.inputs[1])], unfold.window)
        if pool := pool_of(node):
            (windows,) = pool.inputs
            return _call(
                _pool_name(pool, node_window(windows)), [arg(windows.inputs[0])], node_window(windows)
            )
        if isinstance(node, Fold) and node.inputs[0] in self.pool_backs:
            pool = self.pool_backs[node.inputs[0]]
            (windows,) = pool.inputs
            delta = arg(self.cots[pool]) if pool in self.cots else sympy.Symbol("delta")
            name = _pool_name(pool, node.window) + "_backward"
            return _call(name, [delta, arg(windows.inputs[0])], node.window)
        if isinstance(node, Fold) and node.window.channels_last:
            product = node.inputs[0]  # the windows' cotangent: the kernel times the output's
            if isinstance(product, Einsum) and isinstance(product.inputs[1], Permute):
                delta, kernel = product.inputs[1].inputs[0], product.inputs[0]
                rank = len(node.window.kernel)
                return _call(f"conv_transpose{rank}d", [arg(delta), arg(kernel)], node.window)
        if (
            isinstance(node, Einsum)
            and isinstance(node.inputs[0], Unfold)
            and node.inputs[0].window.channels_last
            and isinstance(node.inputs[1], Permute)
        ):
            unfold, delta = node.inputs[0], node.inputs[1].inputs[0]
            rank = len(unfold.window.kernel)
            weight = _call(f"conv{rank}d_weight", [arg(unfold.inputs[0]), arg(delta)], unfold.window)
            lhs, out = node.spec.split("->")
            return nt.BatchSum(weight) if "B" in lhs and "B" not in out else weight
        return None


def conv_of(node: Node) -> tuple[Einsum, Unfold] | None:
    """(product, windows) if ``node`` is a convolution's result: its windows times a kernel, permuted."""
    if isinstance(node, Permute) and isinstance(product := node.inputs[0], Einsum):
        windows = product.inputs[0]
        if isinstance(windows, Unfold) and windows.window.channels_last and len(product.inputs) == 2:
            return product, windows
    return None


def pool_of(node: Node) -> Reduce | None:
    """``node`` if it is a pooling: a max or a mean over windows (laid out offsets first)."""
    if not isinstance(node, Reduce) or node.kind not in (ReduceKind.MAX, ReduceKind.MEAN):
        return None
    windows = node.inputs[0]
    return node if isinstance(windows, Unfold) and not windows.window.channels_last else None


def window_parts(node: Node) -> list[Node]:
    """The nodes a convolution or pooling is made of besides its result (shown as part of the call)."""
    if conv := conv_of(node):
        return list(conv)
    if pool := pool_of(node):
        return [pool.inputs[0]]
    return []


def node_window(node: Node) -> Window:
    assert isinstance(node, Unfold | Fold)
    return node.window


def _pool_name(pool: Reduce, window: Window) -> str:
    kind = "max" if pool.kind is ReduceKind.MAX else "avg"
    return f"{kind}_pool{len(window.kernel)}d"


def _call(name: str, args: list[sympy.Expr], window: Window) -> sympy.Expr:
    """``name(args..., settings)``, the settings that differ from the defaults written as options."""
    shown = list(args)
    pooling = "pool" in name
    if pooling:
        shown.append(sympy.Symbol(_sizes(window.kernel)))
    if window.stride != (window.kernel if pooling else (1,) * len(window.stride)):
        shown.append(nt.Option(sympy.Symbol(f"stride = {_sizes(window.stride)}")))
    if window.padded:
        symmetric = all(lo == hi for lo, hi in window.padding)
        pads = _sizes(tuple(lo for lo, _ in window.padding)) if symmetric else str(list(window.padding))
        shown.append(nt.Option(sympy.Symbol(f"padding = {pads}")))
    return sympy.Function(name)(*shown)


def _sizes(values: tuple[int, ...]) -> str:
    """One number if all are equal (2), else the list ([2, 1])."""
    return str(values[0]) if len(set(values)) == 1 else str(list(values))


_NOTATION: dict[type, Callable[[Any, list[sympy.Expr]], sympy.Expr]] = {
    Elementwise: lambda n, a: _substitute(n.expr, a),
    MatMul: lambda n, a: _einsum_notation(matmul_spec(*n.inputs), a),
    Einsum: lambda n, a: _einsum_notation(n.spec, a),
    Reduce: lambda n, a: _reduce_notation(n, a[0]),
    Expand: lambda n, a: a[0],  # broadcasting is implicit in the notation
    BatchSize: lambda n, a: _sym("B"),
    Transpose: lambda n, a: nt.T(a[0]),
    Loss: lambda n, a: sympy.Function(LOSS_NAMES[n.kind])(*a),
    Slice: lambda n, a: nt.Part(a[0], sympy.Symbol(_slice_text(n))),
    Index: lambda n, a: nt.Part(a[0], sympy.Symbol(":, " * n.axis + str(n.index))),
    Reshape: lambda n, a: sympy.Function("reshape")(a[0], *n.shape),
    ClassDelta: lambda n, a: a[2] * (a[0] - sympy.Function("onehot")(a[1])),  # never built as written
    Constant: lambda n, a: _sym("C"),
}


def _slice_text(node: Slice) -> str:
    """The index as a person writes it: ``0:2``, ``:, 1:5:2``."""
    step = f":{node.step}" if node.step > 1 else ""
    return ":, " * node.axis + f"{node.start}:{node.stop}{step}"


def _reduce_notation(node: Reduce, x: sympy.Expr) -> sympy.Expr:
    match node.kind:
        case ReduceKind.SUM:
            within, over_batch = nt.Total, nt.BatchSum
        case ReduceKind.MEAN:
            within, over_batch = nt.Average, nt.BatchMean
        case ReduceKind.MAX | ReduceKind.MIN:
            # Over per-example axes only (ops.reduce_axes refuses the batch axis).
            return sympy.Function(node.kind.value)(x) if node.axes else x
        case other:
            unknown(other)
    inner = within(x) if node.axes else x
    return over_batch(inner) if node.batch else inner


def _einsum_notation(spec: str, args: list[sympy.Expr]) -> sympy.Expr:
    """A two-operand einsum as a matrix product with transposes: "Bm,Bk->mk" is Σ_b δ xᵀ."""
    lhs, out = spec.split("->")
    subs = [s.replace("B", "") for s in lhs.split(",")]
    batch_summed = "B" in lhs and "B" not in out
    expr = _as_product(subs, out.replace("B", ""), args)
    return nt.BatchSum(expr) if batch_summed else expr


def _orient(sub: str, transposed: bool) -> tuple[str | None, str | None]:
    """(row axis, column axis) of an operand; a vector is a column."""
    rows, cols = (sub[0], sub[1]) if len(sub) == 2 else ((sub, None) if sub else (None, None))
    return (cols, rows) if transposed else (rows, cols)


def _as_product(subs: list[str], out: str, args: list[sympy.Expr]) -> sympy.Expr:
    if len(subs) != 2:
        return sympy.Function("einsum")(*args)
    want = _orient(out, False)
    # Prefer a product that lands in the output's orientation, with as few transposes as possible.
    for targets in ((want,), (want[::-1],)):
        for flips in sorted(product((False, True), repeat=2), key=sum):
            for i, j in permutations(range(2)):
                fi, fj = flips
                (r1, c1), (r2, c2) = _orient(subs[i], fi), _orient(subs[j], fj)
                if c1 == r2 and (r1, c2) in targets:
                    a = nt.T(args[i]) if fi else args[i]
                    b = nt.T(args[j]) if fj else args[j]
                    prod = nt.MatProd(a, b)
                    return prod if (r1, c2) == want else nt.T(prod)
    return sympy.Function("einsum")(*args)


def _derivatives(graph: Graph) -> tuple[Equation, ...]:
    """f'(u) for each built-in function in the model and each user activation."""
    u = _sym("u")
    heads: dict[str, type] = {}
    for node in graph.nodes():
        if isinstance(node, Elementwise):
            for f in node.expr.atoms(sympy.Function):
                heads.setdefault(type(f).__name__, type(f))
    eqs = []
    for name in sorted(heads):
        cls = heads[name]
        if parameters := getattr(cls, "shown_parameters", ()):
            f = cls(u, *(sympy.Symbol(p, positive=True) for p in parameters))
        elif getattr(cls, "nargs", None) and 1 not in cls.nargs:  # type: ignore[attr-defined]
            continue
        else:
            f = cls(u)
        if not isinstance(f, sympy.Function):
            continue
        d = _output_form(sympy.diff(f, u), f, _sym("_y"))
        d = d.xreplace({_sym("_y"): f})
        eqs.append(Equation(nt.Deriv(_sym(name), *f.args), d))
    for name, (params, body) in sorted(graph.activations.items()):
        if len(params) == 1:
            eqs.append(Equation(nt.Deriv(_sym(name), *params), sympy.diff(body, params[0])))
    return tuple(eqs)
