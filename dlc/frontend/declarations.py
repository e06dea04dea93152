"""Collect a model file's statements into a table of names, checking for clashes.

This pass also finds recursion between functions (which inlining cannot
express) before any function is expanded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from dlc.errors import DlcError, Note, Span
from dlc.frontend import ast
from dlc.frontend.builtins import BUILTINS
from dlc.frontend.hints import did_you_mean
from dlc.frontend.signature import WORDS

Definition = ast.InputDecl | ast.TargetDecl | ast.ParamDecl | ast.ConstDecl | ast.FnDef | ast.LetDef


@dataclass
class Declarations:
    """Every top-level definition of a model file, by name, in file order."""

    model: ast.ModelDecl | None = None
    inputs: list[ast.InputDecl] = field(default_factory=list)
    targets: list[ast.TargetDecl] = field(default_factory=list)
    outputs: list[ast.OutputStmt] = field(default_factory=list)
    loss: ast.LossStmt | None = None
    train: ast.TrainBlock | None = None
    names: dict[str, Definition] = field(default_factory=dict)

    @property
    def params(self) -> list[ast.ParamDecl]:
        return [d for d in self.names.values() if isinstance(d, ast.ParamDecl)]

    functions: dict[str, ast.FnDef] = field(default_factory=dict)  # the FnDefs among names
    optimizers: dict[str, ast.OptimizerDef] = field(default_factory=dict)  # the file's own, by name

    def suggest(self, name: str, extra: Iterable[str] = ()) -> str | None:
        """A "did you mean ...?" hint for a misspelt name, or None."""
        return did_you_mean(name, [*self.names, *extra])


_SINGLE = {
    ast.ModelDecl: ("model", "a model file describes one model"),
    ast.LossStmt: ("loss", "a model has one loss; add terms to combine several"),
    ast.TrainBlock: ("train", "put all training settings in one train { ... } block"),
}


def _where(stmt: object) -> Span:
    if isinstance(stmt, (ast.OutputStmt, ast.LossStmt, ast.TrainBlock)):
        return stmt.span
    return stmt.name.span  # type: ignore[attr-defined]


def declare(module: ast.Module) -> Declarations:
    """Build the table of definitions, rejecting duplicates and recursion."""
    decls = Declarations()
    for stmt in module.statements:
        single = _SINGLE.get(type(stmt))
        if single is not None:
            attr, why = single
            previous = getattr(decls, attr)
            if previous is not None:
                raise DlcError(
                    f"second {attr} statement",
                    _where(stmt),
                    hint=why,
                    notes=(Note(f"the first {attr} statement is here", _where(previous)),),
                )
            setattr(decls, attr, stmt)
        if isinstance(stmt, ast.OutputStmt):
            _output(decls, stmt)
            continue
        if isinstance(stmt, (ast.ModelDecl, ast.LossStmt, ast.TrainBlock)):
            continue
        if isinstance(stmt, ast.OptimizerDef):
            _define_optimizer(decls, stmt)
            continue
        _define(decls, stmt)
    if decls.loss is None:
        raise DlcError(
            "the model has no loss",
            module.end,
            hint="add a line such as 'loss mse(output_value, y)'",
        )
    _check_recursion(decls.functions)
    for stmt in module.statements:
        _check_references(decls, stmt)
    return decls


def _output(decls: Declarations, stmt: ast.OutputStmt) -> None:
    """An output statement: one unnamed output, or any number of named ones (each a named value)."""
    if decls.outputs and (stmt.name is None or decls.outputs[0].name is None):
        first = decls.outputs[0]
        raise DlcError(
            "second output statement",
            stmt.span,
            hint="a model has one output, or several with names: output probs = softmax(z)",
            notes=(Note("the first output statement is here", first.span),),
        )
    decls.outputs.append(stmt)
    if stmt.name is not None:
        _define(decls, ast.LetDef(stmt.name, stmt.expr))


def _define(decls: Declarations, stmt: Definition) -> None:
    name = stmt.name
    if name.text in BUILTINS:
        raise DlcError(
            f"'{name.text}' is a built-in function and cannot be redefined",
            name.span,
            hint="choose another name",
        )
    previous = decls.names.get(name.text)
    if previous is not None:
        raise DlcError(
            f"'{name.text}' is defined twice",
            name.span,
            notes=(Note("the first definition is here", previous.name.span),),
        )
    if isinstance(stmt, ast.FnDef):
        seen: dict[str, ast.Ident] = {}
        for param in stmt.params:
            if param.text in seen:
                raise DlcError(f"parameter '{param.text}' appears twice in '{name.text}'", param.span)
            seen[param.text] = param
    decls.names[name.text] = stmt
    if isinstance(stmt, ast.InputDecl):
        decls.inputs.append(stmt)
    elif isinstance(stmt, ast.TargetDecl):
        decls.targets.append(stmt)
    elif isinstance(stmt, ast.FnDef):
        decls.functions[name.text] = stmt


def _define_optimizer(decls: Declarations, stmt: ast.OptimizerDef) -> None:
    previous = decls.optimizers.get(stmt.name.text)
    if previous is not None:
        raise DlcError(
            f"optimizer '{stmt.name.text}' is defined twice",
            stmt.name.span,
            notes=(Note("the first definition is here", previous.name.span),),
        )
    seen: dict[str, ast.Ident] = {}
    for setting in stmt.settings:
        if setting.name.text in seen:
            raise DlcError(
                f"setting '{setting.name.text}' appears twice in '{stmt.name.text}'", setting.name.span
            )
        seen[setting.name.text] = setting.name
    decls.optimizers[stmt.name.text] = stmt


def is_word(keyword: ast.Keyword) -> bool:
    """Whether a keyword argument is one of the words it takes (not a name to look up)."""
    value = keyword.value
    return isinstance(value, ast.Name) and value.ident.text in WORDS.get(keyword.ident.text, ())


def subexpressions(expr: ast.Expr) -> Iterator[ast.Expr]:
    """Every expression inside ``expr`` (itself included), left to right, without recursion."""
    stack: list[ast.Expr] = [expr]
    while stack:
        e = stack.pop()
        yield e
        if isinstance(e, ast.Call):
            stack.extend(reversed([*e.args, *(k.value for k in e.keywords if not is_word(k))]))
        elif isinstance(e, ast.BinOp):
            stack.extend((e.right, e.left))
        elif isinstance(e, ast.Neg):
            stack.append(e.operand)
        elif isinstance(e, ast.Index):
            stack.append(e.base)


def calls_in(expr: ast.Expr) -> Iterator[ast.Call]:
    """Every call inside ``expr``."""
    return (e for e in subexpressions(expr) if isinstance(e, ast.Call))


def used_values(decls: Declarations, expr: ast.Expr, local: frozenset[str] = frozenset()) -> list[str]:
    """The named values ``expr`` uses, directly or through functions and other named values.

    Each comes after the named values it uses, so lowering them in this order
    lowers every body with its own names already done: a chain of a thousand
    named layers is a loop, not a recursion a thousand deep. At a cycle the
    order stops, and lowering meets the cycle and names it. Iterative, and linear in
    the size of the bodies visited (each function's body is scanned once).
    """
    order: list[str] = []
    done: dict[str, bool] = {}  # False while the name is on the current path
    scanned: set[str] = set()
    stack = [("", _names_in(decls, expr, local, scanned))]
    while stack:
        name, names = stack[-1]
        used = next(names, None)
        if used is None:
            stack.pop()
            if name:
                done[name] = True
                order.append(name)
            continue
        decl = decls.names.get(used)
        if done.get(used) is False:
            return order  # a cycle: lowering meets it from the start, and names it as written
        if used not in done and isinstance(decl, ast.LetDef):
            done[used] = False
            stack.append((used, _names_in(decls, decl.body, frozenset(), scanned)))
    return order


def _names_in(decls: Declarations, body: ast.Expr, local: frozenset[str], scanned: set[str]) -> Iterator[str]:
    """The global names ``body`` reads, with those of the functions it calls not ``scanned`` before."""
    work = [(body, local)]
    while work:
        expr, bound = work.pop()
        for e in subexpressions(expr):
            if isinstance(e, ast.Name) and e.ident.text not in bound:
                yield e.ident.text
            elif isinstance(e, ast.Call) and e.func.text not in bound and e.func.text not in scanned:
                fn = decls.functions.get(e.func.text)
                if fn is not None:
                    scanned.add(e.func.text)
                    work.append((fn.body, frozenset(p.text for p in fn.params)))


def _check_references(decls: Declarations, stmt: ast.Statement) -> None:
    """Every name and call in a definition must resolve, whether or not it is ever used."""
    if isinstance(stmt, ast.FnDef):
        body, local = stmt.body, {p.text for p in stmt.params}
    elif isinstance(stmt, (ast.LetDef, ast.OutputStmt, ast.LossStmt)):
        body, local = (stmt.body if isinstance(stmt, ast.LetDef) else stmt.expr), set()
    else:
        return
    for e in subexpressions(body):
        if isinstance(e, ast.Name):
            _check_name(decls, e.ident, local)
        elif isinstance(e, ast.Call):
            _check_call(decls, e, local)


def _check_name(decls: Declarations, ident: ast.Ident, local: set[str]) -> None:
    text = ident.text
    if text in local or text in decls.names:
        return
    if text in BUILTINS:
        raise DlcError(f"'{text}' is a function; call it as {text}(...)", ident.span)
    raise DlcError(f"undefined name '{text}'", ident.span, hint=decls.suggest(text, local))


def _check_call(decls: Declarations, call: ast.Call, local: set[str]) -> None:
    name = call.func.text
    if name in local:
        raise DlcError(f"'{name}' is a value, not a function", call.func.span)
    fn = decls.functions.get(name)
    if fn is not None:
        bind(call, tuple(p.text for p in fn.params), (), False)
    elif name in BUILTINS:
        b = BUILTINS[name]
        bind(call, b.params, b.optional, b.variadic)
    elif name in decls.names:
        raise DlcError(f"'{name}' is not a function", call.func.span)
    else:
        raise DlcError(
            f"unknown function '{name}'",
            call.func.span,
            hint=decls.suggest(name, BUILTINS) or "see docs/language.md for the built-in functions",
        )


def bind(
    call: ast.Call, params: tuple[str, ...], optional: tuple[str, ...], variadic: bool
) -> tuple[dict[str, ast.Expr], list[ast.Expr]]:
    """Match a call's arguments to parameter names; extra positionals go to a variadic list."""
    name = call.func.text
    positional = [] if variadic else list(params)
    if len(call.args) > len(positional) and not variadic:
        raise DlcError(
            f"{name} takes {_count(params, optional)}, but {_were(len(call.args))}",
            call.args[len(positional)].span,
        )
    bound: dict[str, ast.Expr] = dict(zip(positional, call.args, strict=False))
    for kw in call.keywords:
        if kw.ident.text not in params:
            raise DlcError(
                f"{name} has no argument named '{kw.ident.text}'",
                kw.ident.span,
                hint=f"its arguments are: {', '.join(params)}" if params else None,
            )
        if kw.ident.text in bound:
            raise DlcError(f"argument '{kw.ident.text}' is given twice", kw.ident.span)
        bound[kw.ident.text] = kw.value
    missing = [p for p in params if p not in bound and p not in optional]
    if missing:
        raise DlcError(
            f"{name} takes {_count(params, optional)}, but {_were(len(bound))} "
            f"(missing: {', '.join(missing)})",
            call.span,
        )
    rest = list(call.args) if variadic else []
    if variadic and not rest:
        raise DlcError(f"{name} needs at least one argument", call.span)
    return bound, rest


def _count(params: tuple[str, ...], optional: tuple[str, ...]) -> str:
    required = len(params) - len(optional)
    if optional:
        return f"{required} to {len(params)} arguments"
    return f"{required} argument" + ("" if required == 1 else "s")


def _were(n: int) -> str:
    return f"{n} was given" if n == 1 else f"{n} were given"


def _check_recursion(functions: dict[str, ast.FnDef]) -> None:
    """Reject a function that calls itself, directly or through others."""
    graph = {
        name: [c for c in calls_in(fn.body) if c.func.text in functions] for name, fn in functions.items()
    }
    done: set[str] = set()
    for start in functions:
        # Iterative depth-first search keeping the current path.
        path: list[str] = []
        stack: list[tuple[str, int]] = [(start, 0)]
        on_path: set[str] = set()
        while stack:
            name, i = stack.pop()
            if i == 0:
                if name in done:
                    continue
                path.append(name)
                on_path.add(name)
            calls = graph[name]
            if i < len(calls):
                stack.append((name, i + 1))
                callee = calls[i].func.text
                if callee in on_path:
                    cycle = [*path[path.index(callee) :], callee]
                    raise DlcError(
                        f"recursive call: {' -> '.join(cycle)}",
                        calls[i].func.span,
                        hint="functions are expanded where they are called, so they cannot call themselves",
                    )
                stack.append((callee, 0))
            else:
                path.pop()
                on_path.discard(name)
                done.add(name)
