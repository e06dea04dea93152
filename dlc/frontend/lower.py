"""AST -> tensor graph: resolve names, expand function calls, infer shapes.

Every user function is expanded (inlined) where it is called, with its
arguments' graph nodes bound to its parameters; shapes are therefore checked
per call. Elementwise operators become :class:`~dlc.graph.nodes.Elementwise`
nodes whose bodies are SymPy expressions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

import numpy as np
import sympy

from dlc.errors import DlcError, Note, Span
from dlc.frontend import ast, hints
from dlc.frontend.builtins import BUILTINS, Builtin
from dlc.frontend.declarations import Declarations, bind, used_values
from dlc.graph import nodes, scalar
from dlc.graph import ops as g
from dlc.graph.graph import Builder
from dlc.graph.scalar import element_symbol, not_real

#: Expressions, counted through expanded function bodies, may nest this deep.
MAX_NESTING = 300
#: Function calls may expand to at most this many operations in all. Each call is expanded
#: where it is called, so a few lines can stand for exponentially many operations
#: (g_i(u) = g_{i-1}(sin(u)) + g_{i-1}(cos(u)) doubles them per level); every later
#: phase is linear in the operations, at a few milliseconds each (benchmarks/compile_time.py:
#: 4,094 operations, g10, take 7 s with the NumPy backend, 17 s with both; g12's 16,382 took 73 s).
MAX_EXPANDED = 10_000

_INITS = {"zeros": 0, "ones": 0, "constant": 1, "normal": 1, "uniform": 1, "glorot": 0, "he": 0}

#: The scalar meaning of each binary operator but ``@`` (optimizer formulas use it too).
ARITH: dict[str, Callable[[sympy.Expr, sympy.Expr], sympy.Expr]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "**": lambda a, b: a**b,
}

#: Comparisons: 1 where they hold, else 0; their derivative is 0.
COMPARE: dict[str, Callable[[sympy.Expr, sympy.Expr], sympy.Expr]] = {
    "<": scalar.lt, "<=": scalar.le, ">": scalar.gt, ">=": scalar.ge, "==": scalar.eq, "!=": scalar.ne,
}  # fmt: skip

_NOT_FINITE = (sympy.zoo, sympy.nan, sympy.oo)

Scope = dict[str, nodes.Node]


class Lowering:
    """Turns the declarations of one model file into graph nodes."""

    def __init__(self, decls: Declarations) -> None:
        self.decls = decls
        self.builder = Builder()
        self.values: dict[str, nodes.Node] = {}
        self.names: dict[nodes.Node, str] = {}
        self.pending: list[str] = []
        self.expanded: dict[tuple[str, tuple[nodes.Node, ...]], nodes.Node] = {}
        self.depth = 0
        self.expanding = 0  # calls of user functions being expanded, one inside another
        self.grown = 0  # operations made by earlier (outermost) expansions
        self.grown_from = 0  # the builder's size when the current outermost expansion began

    # ------------------------------------------------------------ expressions

    def lower(self, e: ast.Expr, scope: Scope | None = None) -> nodes.Node:
        """A top-level expression's node, the named values it uses lowered first, in order.

        So each named value's body is lowered on its own, its names already
        done: only the nesting written within one body (and through the
        functions it calls) counts towards :data:`MAX_NESTING`, not a chain of names.
        """
        scope = scope or {}
        for name in used_values(self.decls, e, frozenset(scope)):
            if name not in self.values:
                self.values[name] = self.define(self.decls.names[name])
        return self.expr(e, scope)

    def expr(self, e: ast.Expr, scope: Scope) -> nodes.Node:
        self.depth += 1
        try:
            if self.depth > MAX_NESTING:
                raise DlcError(
                    f"the model nests expressions and function calls more than {MAX_NESTING} levels deep",
                    e.span,
                )
            return _DISPATCH[type(e)](self, e, scope)
        finally:
            self.depth -= 1

    def number(self, e: ast.Number, scope: Scope) -> nodes.Node:
        # The float64 nearest to the literal (the parser checked it is in range), as an exact rational
        # of its shortest decimal form: 0.1 is 1/10, and 40 digits cost no more than 17.
        return self.builder.add(g.literal(sympy.Rational(repr(float(e.text)))))

    def name(self, e: ast.Name, scope: Scope) -> nodes.Node:
        if e.ident.text in scope:
            return scope[e.ident.text]
        return self.global_value(e.ident, scope)

    def binop(self, e: ast.BinOp, scope: Scope) -> nodes.Node:
        left, right = self.expr(e.left, scope), self.expr(e.right, scope)
        hints.check_binop(e, left, right, self.decls.names)  # W : [in, out], or * for @: say so
        if e.op == "@":
            return self.make(e.op_span, g.matmul, left, right)
        return self.elementwise(e.op_span, ARITH.get(e.op) or COMPARE[e.op], (left, right), e.op)

    def index(self, e: ast.Index, scope: Scope) -> nodes.Node:
        """Slices of each axis indexed, then the axes given a single index dropped."""
        x = self.expr(e.base, scope)
        if len(e.items) > len(x.shape):
            what = "a scalar" if not x.shape else f"{nodes.show_shape(x.shape)} ({len(x.shape)} axes)"
            raise DlcError(
                f"{len(e.items)} {'index' if len(e.items) == 1 else 'indices'} for {what}",
                e.span,
                hint="indices select per-example axes; the batch axis is never written" if x.shape else None,
            )
        picked: list[tuple[int, int, Span]] = []
        for axis, item in enumerate(e.items):
            n = x.shape[axis]
            if not item.is_slice:
                assert item.at is not None
                if not -n <= item.at < n:
                    raise DlcError(f"index {item.at} is out of range for axis {axis} of size {n}", item.span)
                picked.append((axis, item.at % n, item.span))
                continue
            else:
                if item.step is not None and item.step <= 0:
                    raise DlcError(
                        f"a step must be positive, not {item.step}", item.span, hint="slices run forwards"
                    )
                start, stop, step = slice(item.start, item.stop, item.step).indices(n)
                if start >= stop:
                    raise DlcError(f"this slice of axis {axis} of size {n} selects no elements", item.span)
            if (start, stop, step) != (0, n, 1):
                x = self.make(item.span, g.slice_axis, x, axis, start, stop, step)
        for axis, at, span in reversed(picked):  # the last first: the earlier axes keep their numbers
            x = self.make(span, g.index_axis, x, axis, at)
        return x

    def dims(self, e: ast.Dims, scope: Scope) -> nodes.Node:
        raise DlcError(
            "a list of whole numbers is an argument of reshape, not a value",
            e.span,
            hint="for a constant vector write 'const c = [1, 2, 3]'",
        )

    def neg(self, e: ast.Neg, scope: Scope) -> nodes.Node:
        operand = self.expr(e.operand, scope)
        return self.elementwise(e.span, lambda x: -x, (operand,), "-")

    def call(self, e: ast.Call, scope: Scope) -> nodes.Node:
        name = e.func.text
        if name in scope:
            raise DlcError(f"'{name}' is a value, not a function", e.func.span)
        fn = self.decls.functions.get(name)
        if fn is not None:
            return self.expand(fn, e, scope)
        builtin = BUILTINS.get(name)
        if builtin is not None:
            return builtin.build(CallSite(self, builtin, e, scope))
        if name in self.decls.names:
            raise DlcError(f"'{name}' is not a function", e.func.span)
        raise DlcError(
            f"unknown function '{name}'",
            e.func.span,
            hint=self.decls.suggest(name, BUILTINS) or "see docs/language.md for the built-in functions",
        )

    # ------------------------------------------------------- building nodes

    def make(self, span: Span, build: Callable[..., nodes.Node], *args: Any) -> nodes.Node:
        """Build a node, turning a shape error into an error at ``span``."""
        try:
            node = build(*args)
        except nodes.ShapeError as exc:
            err = DlcError(str(exc), span)
            err.argument = exc.argument
            raise err from None
        return self.builder.add(node)

    def elementwise(
        self, span: Span, fn: Callable[..., sympy.Expr], args: tuple[nodes.Node, ...], op: str
    ) -> nodes.Node:
        if args and all(isinstance(a, nodes.Elementwise) and not a.inputs for a in args):
            _check_magnitude(fn, args, span)  # before SymPy folds 9 ** 9 ** 9 exactly
        expr = fn(*(element_symbol(i) for i in range(len(args))))
        node = self.make(span, g.elementwise, expr, args, op)
        # Numbers are folded in when the node is built: sqrt(-1), log(0), 1/0, (-8)**(1/3).
        if isinstance(node, nodes.Elementwise) and (node.expr.has(*_NOT_FINITE) or not_real(node.expr)):
            raise DlcError(f"'{op}' gives a value that is not a finite real number here", span)
        return node

    # ------------------------------------------------------------- names

    def global_value(self, ident: ast.Ident, scope: Scope) -> nodes.Node:
        text = ident.text
        if text in self.values:
            return self.values[text]
        decl = self.decls.names.get(text)
        if decl is None:
            if text in BUILTINS:
                raise DlcError(f"'{text}' is a function; call it as {text}(...)", ident.span)
            hint = self.decls.suggest(text, scope)
            raise DlcError(f"undefined name '{text}'", ident.span, hint=hint)
        if isinstance(decl, ast.FnDef):
            params = ", ".join(p.text for p in decl.params)
            raise DlcError(f"'{text}' is a function; call it as {text}({params})", ident.span)
        node = self.define(decl)
        self.values[text] = node
        return node

    def define(self, decl: Any) -> nodes.Node:
        if isinstance(decl, ast.InputDecl):
            return self.make(decl.shape.span, g.input_node, decl.name.text, "input", decl.shape.dims)
        if isinstance(decl, ast.TargetDecl):
            classes = decl.shape.dims[0] if decl.classes is not None else 0
            return self.make(
                decl.shape.span, g.input_node, decl.name.text, "target", decl.shape.dims, classes
            )
        if isinstance(decl, ast.ParamDecl):
            init = check_init(decl.init, decl.shape.dims)
            return self.make(decl.shape.span, g.param_node, decl.name.text, decl.shape.dims, init)
        if isinstance(decl, ast.ConstDecl):
            node = self.constant(decl.value)
            if isinstance(node, nodes.Constant):
                self.names.setdefault(node, decl.name.text)
            return node
        return self.let(decl)

    def let(self, decl: ast.LetDef) -> nodes.Node:
        name = decl.name.text
        if name in self.pending:
            cycle = " -> ".join([*self.pending[self.pending.index(name) :], name])
            raise DlcError(f"'{name}' is defined in terms of itself: {cycle}", decl.name.span)
        self.pending.append(name)
        try:
            node = self.expr(decl.body, {})
        finally:
            self.pending.pop()
        self.names.setdefault(node, name)
        return node

    def constant(self, value: ast.Array) -> nodes.Node:
        array = _array(value)
        if array.ndim == 0:
            return self.builder.add(g.literal(sympy.Rational(repr(float(array)))))
        return self.make(value.span, g.constant, array)

    # --------------------------------------------------- function expansion

    def expand(self, fn: ast.FnDef, call: ast.Call, scope: Scope) -> nodes.Node:
        names = tuple(p.text for p in fn.params)
        bound, _ = bind(call, names, (), False)
        args = tuple(self.expr(bound[n], scope) for n in names)
        key = (fn.name.text, args)
        if key not in self.expanded:
            self.check_growth(call)
            if not self.expanding:
                self.grown_from = len(self.builder)
            self.expanding += 1
            try:
                self.expanded[key] = self.expr(fn.body, dict(zip(names, args, strict=True)))
            except DlcError as err:
                raise err.with_note(Note(f"in this call of {fn.name.text}", call.span)) from None
            finally:
                self.expanding -= 1
            if not self.expanding:
                self.grown += len(self.builder) - self.grown_from
        return self.expanded[key]

    def check_growth(self, call: ast.Call) -> None:
        """Refuse, before it takes minutes, a model whose function calls expand past :data:`MAX_EXPANDED`."""
        grown = self.grown + (len(self.builder) - self.grown_from if self.expanding else 0)
        if grown > MAX_EXPANDED:
            raise DlcError(
                f"function calls expand to more than {MAX_EXPANDED:,} operations",
                call.span,
                hint="each call of a function is expanded where it is called; a function that calls "
                "another twice doubles the operations at each level: give repeated values a name",
            )


_DISPATCH: dict[type, Callable[[Lowering, Any, Scope], nodes.Node]] = {
    ast.Number: Lowering.number,
    ast.Name: Lowering.name,
    ast.BinOp: Lowering.binop,
    ast.Neg: Lowering.neg,
    ast.Call: Lowering.call,
    ast.Index: Lowering.index,
    ast.Dims: Lowering.dims,
}


class CallSite:
    """A call of a built-in, as the built-in sees it (see :class:`dlc.frontend.builtins.Call`)."""

    def __init__(self, lowering: Lowering, builtin: Builtin, call: ast.Call, scope: Scope) -> None:
        self.lowering, self.call, self.scope = lowering, call, scope
        self.bound, self.rest = bind(call, builtin.params, builtin.optional, builtin.variadic)
        self.name = call.func.text

    def given(self, name: str) -> bool:
        return name in self.bound

    def tensor(self, name: str) -> nodes.Node:
        return self.lowering.expr(self.bound[name], self.scope)

    def tensors(self) -> list[nodes.Node]:
        return [self.lowering.expr(e, self.scope) for e in self.rest]

    def integer(self, name: str) -> int | None:
        e = self.bound.get(name)
        if e is None:
            return None
        if not self.is_integer(name):
            raise DlcError(f"'{name}' of {self.name} must be a whole number", e.span)
        sign, inner = (-1, e.operand) if isinstance(e, ast.Neg) else (1, e)
        assert isinstance(inner, ast.Number)
        return sign * int(inner.text)

    def is_integer(self, name: str) -> bool:
        e = self.bound.get(name)
        inner = e.operand if isinstance(e, ast.Neg) else e
        return isinstance(inner, ast.Number) and inner.text.isdigit()

    def dims(self, name: str) -> tuple[int, ...]:
        e = self.bound[name]
        if not isinstance(e, ast.Dims):
            raise DlcError(
                f"'{name}' of {self.name} is a list of whole numbers",
                e.span,
                hint=f"write {self.name}(x, [2, 8])",
            )
        return e.values

    def sizes(self, name: str, rank: int) -> tuple[int, ...] | None:
        """A whole number for each of ``rank`` axes: one for all (``2``), or a list (``[2, 3]``); None if
        not given."""
        e = self.bound.get(name)
        if e is None:
            return None
        if isinstance(e, ast.Dims):
            if len(e.values) != rank:
                count = f"{rank} numbers, one per axis, not {len(e.values)}"
                raise DlcError(f"'{name}' of {self.name} needs {count}", e.span)
            return e.values
        if not self.is_integer(name):
            example = "2" if rank == 1 else f"2 or [{', '.join(['2'] * rank)}]"
            raise DlcError(f"'{name}' of {self.name} must be a whole number ({example})", e.span)
        value = self.integer(name)
        assert value is not None
        return (value,) * rank

    def word(self, name: str, words: tuple[str, ...]) -> str | None:
        """The argument if it is one of ``words`` written as a bare name (``padding = same``), else None."""
        e = self.bound.get(name)
        if isinstance(e, ast.Name) and e.ident.text in words:
            if e.ident.text in self.lowering.decls.names or e.ident.text in self.scope:
                raise DlcError(
                    f"'{e.ident.text}' is both a value of this model and a word {name} takes",
                    e.span,
                    hint=f"rename the value: here {name} = {e.ident.text} means the word",
                )
            return e.ident.text
        return None

    def fail(self, message: str, argument: str | None = None, hint: str | None = None) -> NoReturn:
        culprit = self.bound.get(argument or "")
        raise DlcError(message, culprit.span if culprit is not None else self.call.func.span, hint=hint)

    def make(self, build: Callable[..., nodes.Node], *args: Any) -> nodes.Node:
        try:
            return self.lowering.make(self.call.func.span, build, *args)
        except DlcError as err:
            culprit = self.bound.get(err.argument or "")
            if culprit is None:
                raise
            raise DlcError(err.message, culprit.span) from None

    def elementwise(self, fn: Callable[..., sympy.Expr], *args: nodes.Node) -> nodes.Node:
        return self.lowering.elementwise(self.call.func.span, fn, args, self.name)


def _check_magnitude(fn: Callable[..., sympy.Expr], args: tuple[nodes.Node, ...], span: Span) -> None:
    """Refuse a folded number beyond float range: exact arithmetic on it could take forever."""
    try:
        value = fn(*(sympy.Float(a.expr, 30) for a in args))  # type: ignore[attr-defined]
        exponent = abs(float(sympy.log(abs(value), 10))) if value.is_finite and value != 0 else 0.0
    except (ArithmeticError, TypeError, ValueError):
        return  # 1/0 and the like: reported once the node is built
    if exponent > 300:
        raise DlcError("this number is out of range (beyond 1e300 or 1e-300)", span)


def check_init(init: ast.Init, shape: tuple[int, ...]) -> nodes.Init:
    """Validate an initializer against the parameter's shape."""
    kind = init.name.text
    if kind not in _INITS:
        raise DlcError(
            f"unknown initializer '{kind}'",
            init.name.span,
            hint=hints.did_you_mean(kind, _INITS) or f"use one of: {', '.join(_INITS)}",
        )
    if len(init.args) != _INITS[kind]:
        want = _INITS[kind]
        usage = f"{kind}(scale)" if kind in ("normal", "uniform") else f"{kind}(value)" if want else kind
        raise DlcError(
            f"initializer {kind} takes {want} argument{'s' if want != 1 else ''}",
            init.span,
            hint=f"write {usage}",
        )
    if kind in ("normal", "uniform") and not 0 < init.args[0] <= 1e150:
        raise DlcError(f"the scale of {kind} must be positive and at most 1e150", init.span)
    if kind in ("glorot", "he") and len(shape) < 2:
        raise DlcError(
            f"{kind} initializes matrices [out, in] and kernels [O, C, ...], not shape "
            f"[{', '.join(map(str, shape))}]",
            init.span,
            hint="use zeros or normal(scale) for vectors and scalars",
        )
    return nodes.Init(kind, init.args)


def _array(value: ast.Array) -> np.ndarray:
    """Nested literal lists -> a rectangular array, or an error at the ragged spot."""
    if not isinstance(value.value, tuple):
        return np.array(value.value, dtype=np.float64)
    if not value.value:
        raise DlcError("a constant array cannot be empty", value.span)
    parts = [_array(v) for v in value.value]
    for part, item in zip(parts, value.value, strict=True):
        if part.shape != parts[0].shape:
            raise DlcError(
                f"rows of a constant must have one shape; this one is {list(part.shape)}, "
                f"the first is {list(parts[0].shape)}",
                item.span,
            )
    return np.stack(parts)
