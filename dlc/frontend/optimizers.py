"""Optimizer definitions and the train block's choice of one -> :class:`~dlc.graph.optimizer.Optimizer`.

The built-in optimizers and schedules are written in dlc's own language, in
``dlc/prelude.dlc``; a model file may define more with the same syntax, and
its definitions come first. An optimizer's lines are read in order, each
``name = formula`` giving ``name`` a new value (as in the lecture's
pseudo-code); a line that reads only settings, ``t``, ``epoch`` and
``step`` is a number per step, the others are elementwise over the
parameter. Formulas are scalar: ``@``, reductions and other tensor
functions are refused with the place they were written.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib import resources

import sympy

from dlc.errors import DlcError, Note, Span
from dlc.frontend import ast
from dlc.frontend.hints import did_you_mean
from dlc.frontend.lower import ARITH
from dlc.graph import optimizer as opt
from dlc.graph.scalar import sigmoid, softplus

#: Scalar functions an optimizer or schedule formula may call, with their argument counts.
FUNCTIONS: dict[str, tuple[int, Callable[..., sympy.Expr]]] = {
    "sqrt": (1, sympy.sqrt),
    "exp": (1, sympy.exp),
    "log": (1, sympy.log),
    "abs": (1, sympy.Abs),
    "sign": (1, sympy.sign),
    "sin": (1, sympy.sin),
    "cos": (1, sympy.cos),
    "tanh": (1, sympy.tanh),
    "sigmoid": (1, sigmoid),
    "softplus": (1, softplus),
    "floor": (1, sympy.floor),
    "min": (2, sympy.Min),
    "max": (2, sympy.Max),
}
#: Names every formula may read: the step count, and the epoch and step a schedule is a formula of.
CLOCK = {"t": opt.T, "epoch": opt.EPOCH, "step": opt.STEP}
NUMBERS = {"true": sympy.Integer(1), "false": sympy.Integer(0), "pi": sympy.pi}
RESERVED = {"w", "g", "gradient", *CLOCK, *NUMBERS}
#: Bounds that settings of these conventional names must keep, where they are numbers.
BOUNDS = {
    "lr": (0.0, None, "greater than 0"),
    "momentum": (0.0, 1.0, "at least 0 and less than 1"),
    "beta1": (0.0, 1.0, "at least 0 and less than 1"),
    "beta2": (0.0, 1.0, "at least 0 and less than 1"),
    "rho": (0.0, 1.0, "at least 0 and less than 1"),
    "eps": (0.0, None, "at least 0"),
    "weight_decay": (0.0, None, "at least 0"),
}


@functools.cache
def prelude() -> tuple[dict[str, ast.OptimizerDef], dict[str, ast.FnDef]]:
    """The built-in optimizers and schedule functions, read from ``dlc/prelude.dlc``."""
    from dlc.frontend.parser import parse

    text = resources.files("dlc").joinpath("prelude.dlc").read_text(encoding="utf-8")
    module = parse(text)
    optimizers = {s.name.text: s for s in module.statements if isinstance(s, ast.OptimizerDef)}
    functions = {s.name.text: s for s in module.statements if isinstance(s, ast.FnDef)}
    return optimizers, functions


class Formulas:
    """AST expressions -> SymPy scalars, with named values and the functions in reach."""

    def __init__(self, functions: dict[str, ast.FnDef], what: str) -> None:
        self.functions = functions
        self.what = what  # "an optimizer's formula", for messages

    def expr(
        self, e: ast.Expr, scope: dict[str, sympy.Expr], later: dict[str, Span] | None = None
    ) -> sympy.Expr:
        if isinstance(e, ast.Number):
            return _number(e.text)
        if isinstance(e, ast.Name):
            return self._name(e.ident, scope, later or {})
        if isinstance(e, ast.Neg):
            return -self.expr(e.operand, scope, later)
        if isinstance(e, (ast.Index, ast.Dims)):
            raise DlcError(f"{self.what} is elementwise: it cannot index or list numbers", e.span)
        if isinstance(e, ast.BinOp):
            left, right = self.expr(e.left, scope, later), self.expr(e.right, scope, later)
            if e.op not in ARITH:
                raise DlcError(
                    f"{self.what} cannot use '{e.op}'", e.op_span, hint="it is arithmetic: + - * / **"
                )
            return ARITH[e.op](left, right)
        return self._call(e, scope, later)

    def _name(self, ident: ast.Ident, scope: dict[str, sympy.Expr], later: dict[str, Span]) -> sympy.Expr:
        name = ident.text
        if name in scope:
            return scope[name]
        if name in NUMBERS:
            return NUMBERS[name]
        if name in later:
            raise DlcError(
                f"state '{name}' is used before it is defined",
                ident.span,
                notes=(Note("it is declared here", later[name]),),
                hint=f"put 'state {name}' above its first use",
            )
        hint = did_you_mean(name, scope) or f"{self.what} may read: {', '.join(scope)}"
        raise DlcError(f"unknown name '{name}' in {self.what}", ident.span, hint=hint)

    def _call(self, e: ast.Call, scope: dict[str, sympy.Expr], later: dict[str, Span] | None) -> sympy.Expr:
        name = e.func.text
        if e.keywords:
            raise DlcError(f"'{name}' takes its arguments in order, without names", e.keywords[0].span)
        args = [self.expr(a, scope, later) for a in e.args]
        if name in self.functions:
            fn = self.functions[name]
            _arity(name, len(fn.params), args, e)
            inner = {p.text: a for p, a in zip(fn.params, args, strict=True)}
            return self.expr(fn.body, inner)
        if name in FUNCTIONS:
            count, build = FUNCTIONS[name]
            _arity(name, count, args, e)
            return build(*args)
        known = [*FUNCTIONS, *self.functions]
        hint = did_you_mean(name, known) or f"the functions here are: {', '.join(known)}"
        raise DlcError(f"'{name}' cannot be used in {self.what}: it is scalar", e.func.span, hint=hint)


def _arity(name: str, count: int, args: list[sympy.Expr], e: ast.Call) -> None:
    if len(args) != count:
        raise DlcError(f"'{name}' takes {count} argument{'s' * (count != 1)}, not {len(args)}", e.span)


def _number(text: str) -> sympy.Expr:
    if text.isdigit() and len(text) < 16:
        return sympy.Integer(int(text))
    return sympy.Float(float(text))


def choose(
    call: ast.Expr,
    defined: dict[str, ast.OptimizerDef],
    functions: dict[str, ast.FnDef],
    clip_norm: float | None = None,
    text: str | None = None,
    origin: Callable[[DlcError], DlcError] | None = None,
) -> opt.Optimizer:
    """The optimizer that ``call`` (``adam`` or ``adam(lr = 3e-4)``) names, with its settings.

    ``defined``/``functions``: the model file's own, which come before the prelude's.
    ``text``: the call as the user wrote it; ``origin`` places an error in the call (when
    it came from elsewhere than the model file, e.g. the command line).
    """
    built_in, library = prelude()
    optimizers = {**built_in, **defined}
    functions = {**library, **functions}
    try:
        definition, settings = _settings(call, optimizers, functions)
    except DlcError as err:
        raise (origin(err) if origin else err) from None
    text = text or f"{definition.name.text}({', '.join(f'{k} = {_shown(v)}' for k, v in settings)})"
    return _lower(definition, settings, functions, clip_norm, text)


def _settings(
    call: ast.Expr, optimizers: dict[str, ast.OptimizerDef], functions: dict[str, ast.FnDef]
) -> tuple[ast.OptimizerDef, tuple[tuple[str, sympy.Expr], ...]]:
    keywords: tuple[ast.Keyword, ...] = ()
    if isinstance(call, ast.Name):
        ident = call.ident
    elif isinstance(call, ast.Call):
        ident, keywords = call.func, call.keywords
        if call.args:
            raise DlcError(
                "give the optimizer's settings by name",
                call.args[0].span,
                hint=f"for example {call.func.text}(lr = 0.1)",
            )
    else:
        raise DlcError("expected an optimizer such as adam(lr = 0.001)", call.span)
    definition = optimizers.get(ident.text)
    if definition is None:
        hint = did_you_mean(ident.text, optimizers) or f"the optimizers are: {', '.join(optimizers)}"
        raise DlcError(f"unknown optimizer '{ident.text}'", ident.span, hint=hint)
    formulas = Formulas(functions, "a setting")
    clock = {"epoch": opt.EPOCH, "step": opt.STEP}
    values = {s.name.text: (s.value.span, formulas.expr(s.value, clock)) for s in definition.settings}
    seen: set[str] = set()
    for kw in keywords:
        key = kw.ident.text
        if key not in values:
            known = ", ".join(values) or "no settings"
            raise DlcError(f"{ident.text} has no setting '{key}'", kw.ident.span, hint=f"it takes {known}")
        if key in seen:
            raise DlcError(f"setting '{key}' is given twice", kw.ident.span)
        seen.add(key)
        values[key] = (kw.value.span, formulas.expr(kw.value, clock))
    return definition, tuple((k, _checked(k, v, span)) for k, (span, v) in values.items())


def _shown(value: sympy.Expr) -> str:
    return repr(float(value)) if value.is_Number else str(value).replace("**", "^")


def _checked(name: str, value: sympy.Expr, span: Span) -> sympy.Expr:
    """A setting's value: finite at the first step, and in its conventional bounds if a number."""
    try:
        first = complex(value.subs({opt.EPOCH: 0, opt.STEP: 0}))
    except (TypeError, ValueError):
        first = complex("nan")
    if first.imag != 0 or first.real != first.real or abs(first.real) == float("inf"):
        raise DlcError(f"setting '{name}' is not a finite number at the first step", span)
    if not value.free_symbols:
        words = out_of_bounds(name, first.real)
        if words is not None:
            raise DlcError(f"{name} must be {words}", span)
    return value


def out_of_bounds(name: str, value: float) -> str | None:
    """The bounds (in words) that a setting of a conventional name breaks, or None if it keeps them."""
    if name not in BOUNDS:
        return None
    low, high, words = BOUNDS[name]
    too_low = value <= low if name == "lr" else value < low
    return words if too_low or (high is not None and value >= high) else None


def _lower(
    definition: ast.OptimizerDef,
    settings: tuple[tuple[str, sympy.Expr], ...],
    functions: dict[str, ast.FnDef],
    clip_norm: float | None,
    text: str,
) -> opt.Optimizer:
    """The definition's lines, read in order, as per-step numbers and elementwise statements."""
    formulas = Formulas(functions, f"optimizer {definition.name.text}")
    names = {k for k, _ in settings}
    scope: dict[str, sympy.Expr] = {"w": opt.W, "g": opt.G, "gradient": opt.G, **CLOCK}
    scope |= {k: opt.setting(k) for k in names}
    declared = {
        line.name.text: line.name.span for line in definition.lines if isinstance(line, ast.StateDecl)
    }
    states: list[str] = []
    element = {opt.W, opt.G}  # symbols whose value differs from element to element
    versions: dict[str, int] = {}
    scalars: list[tuple[sympy.Symbol, sympy.Expr]] = []
    updates: list[tuple[sympy.Symbol, sympy.Expr]] = []
    for line in definition.lines:
        later = {k: v for k, v in declared.items() if k not in states}
        if isinstance(line, ast.StateDecl):
            name = line.name.text
            _assignable(name, names, line.name.span, "a state")
            if name in states:
                raise DlcError(f"state '{name}' is declared twice", line.name.span)
            if name in scope and scope[name] not in (opt.W, opt.G):
                raise DlcError(f"'{name}' already has a value here", line.name.span)
            states.append(name)
            scope[name] = opt.version(name, 0)
            element.add(opt.version(name, 0))
            continue
        name = line.name.text
        if name in later:
            raise DlcError(
                f"state '{name}' is used before it is defined",
                line.name.span,
                notes=(Note("it is declared here", later[name]),),
            )
        _assignable(name, names, line.name.span, "a new value")
        value = formulas.expr(line.value, scope, later)
        versions[name] = versions.get(name, 0) + 1
        symbol = opt.version(name, versions[name])
        if value.free_symbols & element or name == "w" or name in states:
            updates.append((symbol, value))
            element.add(symbol)
        else:
            scalars.append((symbol, value))
        scope[name] = symbol
    results = _results(definition, scope, states)
    return opt.Optimizer(
        definition.name.text,
        text,
        settings,
        tuple(scalars),
        tuple(states),
        tuple(updates),
        results,
        clip_norm,
    )


def _assignable(name: str, settings: set[str], span: Span, what: str) -> None:
    if name in settings:
        raise DlcError(f"'{name}' is a setting of this optimizer: it cannot be given {what}", span)
    if name in RESERVED - {"w", "g"}:
        raise DlcError(f"'{name}' is dlc's own name here: it cannot be given {what}", span)


def _results(
    definition: ast.OptimizerDef, scope: dict[str, sympy.Expr], states: list[str]
) -> tuple[tuple[str, sympy.Symbol], ...]:
    if scope["w"] == opt.W:
        raise DlcError(
            f"optimizer {definition.name.text} never changes w",
            definition.name.span,
            hint="end it with a line such as 'w = w - lr * g'",
        )
    for s in states:
        if scope[s] == opt.version(s, 0):
            raise DlcError(
                f"state '{s}' of {definition.name.text} is never given a new value", definition.span
            )
    return tuple((k, scope[k]) for k in ("w", *states))


def defaults() -> dict[str, tuple[tuple[str, float | None], ...]]:
    """Each built-in optimizer's settings and their defaults (None for a default that is a schedule)."""
    built_in, library = prelude()
    formulas = Formulas(library, "a setting")
    clock = {"epoch": opt.EPOCH, "step": opt.STEP}
    out = {}
    for name, definition in built_in.items():
        values = [(s.name.text, formulas.expr(s.value, clock)) for s in definition.settings]
        out[name] = tuple((k, float(v) if v.is_number else None) for k, v in values)
    return out
