"""Source text -> AST, through the Lark grammar in ``grammar/dlc.lark``.

The AST is built while parsing (Lark's inline transformer), so deeply nested
input never recurses in Python; nesting deeper than :data:`MAX_DEPTH` is
reported as an error here, before any later pass could recurse on it.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any

from lark import Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from dlc.errors import DlcError, Span
from dlc.frontend import ast

MAX_DEPTH = 256
MAX_SOURCE_BYTES = 1 << 20
MAX_NAME_LENGTH = 64
MAX_ARRAY_RANK = 8
KEYWORDS = ("model", "input", "target", "param", "const", "output", "loss", "train", "optimizer")


def parse(source: str) -> ast.Module:
    """Parse a model file's text into an :class:`ast.Module`.

    Raises:
        DlcError: for any syntax error, with the position of the offending token.
    """
    from dlc.frontend.grammar import lark_parser

    if len(source.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
        raise DlcError(f"model file is larger than {MAX_SOURCE_BYTES >> 20} MiB")
    _reject_control_characters(source)
    try:
        module: ast.Module = lark_parser().parse(source, start="start")  # type: ignore[assignment]
    except UnexpectedInput as exc:
        raise _syntax_error(exc, source) from None
    except RecursionError:  # defensive: the LALR parser itself does not recurse
        raise DlcError(f"model nested more than {MAX_DEPTH} levels deep") from None
    return ast.Module(module.statements, _end_span(source))


def parse_sweep_values(text: str) -> tuple[ast.Ident, tuple[ast.Expr, ...]]:
    """``name = value, value, ...`` (one setting's values in a sweep) -> the name and the values.

    Raises:
        DlcError: for a syntax error, placed in ``text`` (not yet given a file name).
    """
    from dlc.frontend.grammar import lark_parser

    _reject_control_characters(text)
    try:
        found: Any = lark_parser().parse(text, start="sweep_values")
    except UnexpectedInput as exc:
        err = _syntax_error(exc, text)
        hint = err.hint
        if hint is None or hint.startswith("a statement starts"):
            hint = "write the setting's name, '=' and its values with commas between: lr = 0.01, 0.1, 1"
        raise DlcError(err.message.replace("end of file", "end"), err.span, hint=hint) from None
    name, values = found
    return name, values


def _reject_control_characters(source: str) -> None:
    for lineno, line in enumerate(source.split("\n"), 1):
        for col, ch in enumerate(line, 1):
            if (ord(ch) < 32 and ch not in "\t\r\f") or ch == "\x7f":
                span = Span(lineno, col, lineno, col + 1)
                raise DlcError(f"unexpected control character {ch!r}", span)


def _end_span(source: str) -> Span:
    lines = source.split("\n")
    while len(lines) > 1 and not lines[-1].strip():
        lines.pop()
    last = len(lines[-1]) + 1
    return Span(len(lines), last, len(lines), last + 1)


# ---------------------------------------------------------------- syntax errors

_READABLE = {"NAME": "a name", "NUMBER": "a number", "$END": "end of file"}


def _describe_terminal(name: str) -> str:
    from dlc.frontend.grammar import lark_parser

    if name in _READABLE:
        return _READABLE[name]
    for term in lark_parser().terminals:
        if term.name == name and term.pattern.type == "str":
            return f"'{term.pattern.value}'"
    return name.lower()


def _syntax_error(exc: UnexpectedInput, source: str) -> DlcError:
    if isinstance(exc, UnexpectedCharacters):
        span = Span(exc.line, exc.column, exc.line, exc.column + 1)
        char = source[exc.pos_in_stream] if exc.pos_in_stream is not None else "?"
        hint = None
        if char.isalpha() or char == "_":
            hint = "names are ASCII letters, digits and '_', starting with a letter"
        return DlcError(f"unexpected character {char!r}", span, hint=hint)
    if isinstance(exc, UnexpectedToken):
        return _unexpected_token(exc, source)
    return DlcError("unexpected end of file", _end_span(source))


def _unexpected_token(exc: UnexpectedToken, source: str) -> DlcError:
    token: Token = exc.token
    expected = sorted({_describe_terminal(t) for t in exc.expected})
    if token.type == "$END":
        what = "unexpected end of file"
        span = _end_span(source)
    else:
        kind = {"NAME": "name", "NUMBER": "number"}.get(token.type)
        what = f"unexpected {kind} '{token}'" if kind else f"unexpected {_describe_terminal(token.type)}"
        span = _span(token)
    hint = None
    before = re.search(r"([A-Za-z][A-Za-z0-9_]*)\s*$", source[: token.start_pos or 0])
    previous = before.group(1) if before else None
    if str(token) in KEYWORDS and "a name" in expected:
        hint = f"'{token}' is a keyword and cannot be used as a name"
    elif previous in KEYWORDS and str(token) in ("=", "("):
        hint = f"'{previous}' is a keyword and cannot be used as a name"
    elif len(expected) > 8:
        hint = (
            "a statement starts with model, input, target, param, const, output, loss, train, "
            "optimizer, or a definition 'name = ...'"
        )
    message = what
    if expected and len(expected) <= 8:
        message += "; expected " + _one_of(expected)
    return DlcError(message, span, hint=hint)


def _one_of(items: list[str]) -> str:
    return items[0] if len(items) == 1 else "one of " + ", ".join(items)


# ------------------------------------------------------------------ AST builder


def _span(token: Token) -> Span:
    return Span(token.line or 1, token.column or 1, token.end_line or 1, token.end_column or 1)


def _ident(token: Token) -> ast.Ident:
    span = _span(token)
    if len(token) > MAX_NAME_LENGTH:
        raise DlcError(f"name is longer than {MAX_NAME_LENGTH} characters", span)
    return ast.Ident(str(token), span)


def _nested(depth: int, span: Span) -> int:
    if depth > MAX_DEPTH:
        raise DlcError(f"expression is nested more than {MAX_DEPTH} levels deep", span)
    return depth


def _word(token: Token, word: str, hint: str) -> None:
    """Words that the grammar reads as names where only ``word`` fits."""
    if str(token) != word:
        raise DlcError(f"unexpected name '{token}'; expected '{word}'", _span(token), hint=hint)


def _float(token: Token, span: Span) -> float:
    """A number literal's float64 value; beyond float64's range either way it is an error.

    Every number is a float64 at run time, so a literal means the float nearest
    to it; Python's ``float`` finds that in time linear in the digits, where
    exact arithmetic on ``1e-999999`` or a 4,000-digit integer would not end soon.
    """
    value = float(token)
    shown = token if len(token) <= 24 else f"{token[:20]}..."
    if not math.isfinite(value):
        raise DlcError(f"number '{shown}' is too large (beyond float64's 1.8e308)", span)
    mantissa = token.lower().partition("e")[0]
    if value == 0 and mantissa.strip("0.") != "":
        raise DlcError(
            f"number '{shown}' is too small: it is not 0, but float64 would round it to 0",
            span,
            hint="float64 numbers that are not 0 are at least about 5e-324; write 0 if 0 is meant",
        )
    return value


def _present(items: Any) -> list[Any]:
    return [item for item in items if item is not None]


class AstBuilder(Transformer[Token, Any]):
    """Lark callbacks, one per grammar rule, each returning an AST node."""

    # --- expressions

    def number(self, children: list[Token]) -> ast.Number:
        (token,) = children
        span = _span(token)
        _float(token, span)
        return ast.Number(str(token), span)

    def name(self, children: list[Token]) -> ast.Name:
        return ast.Name(_ident(children[0]))

    def keyword(self, children: list[Any]) -> ast.Keyword:
        name, value = children
        return ast.Keyword(_ident(name), value, value.depth)

    def call(self, children: list[Any]) -> ast.Call:
        func, *arguments, rpar = children
        arguments = _present(arguments)
        args = tuple(a for a in arguments if not isinstance(a, ast.Keyword))
        keywords = tuple(a for a in arguments if isinstance(a, ast.Keyword))
        span = _span(func).to(_span(rpar))
        if keywords and args and arguments.index(keywords[0]) < len(args):
            raise DlcError("positional argument after a keyword argument", args[-1].span)
        depth = 1 + max((a.depth for a in arguments), default=0)
        return ast.Call(_ident(func), args, keywords, span, _nested(depth, span))

    def binop(self, children: list[Any]) -> ast.BinOp:
        left, op, right = children
        symbol = "**" if op == "^" else str(op)
        depth = 1 + max(left.depth, right.depth)
        return ast.BinOp(symbol, left, right, _span(op), _nested(depth, _span(op)))

    def index_number(self, children: list[Any]) -> tuple[int, Span]:
        minus, token = children
        span = _span(token) if minus is None else _span(minus).to(_span(token))
        if not token.isdigit():
            raise DlcError(f"an index is a whole number, not '{token}'", span)
        if len(token) > 12:
            raise DlcError(f"index '{token[:12]}...' is too large", span)
        return (-int(token) if minus is not None else int(token)), span

    def at(self, children: list[Any]) -> ast.Subscript:
        ((value, span),) = children
        return ast.Subscript(span, at=value)

    def range(self, children: list[Any]) -> ast.Subscript:
        start, colon, stop, second, step = children
        spans = [_span(colon)] + [x[1] for x in (start, stop, step) if x is not None]
        if second is not None:
            spans.append(_span(second))
        first = min(spans, key=lambda s: (s.line, s.column))
        last = max(spans, key=lambda s: (s.end_line, s.end_column))
        value = [None if x is None else x[0] for x in (start, stop, step)]
        return ast.Subscript(first.to(last), start=value[0], stop=value[1], step=value[2])

    def index(self, children: list[Any]) -> ast.Index:
        base, _, *items, rsqb = children
        span = base.span.to(_span(rsqb))
        return ast.Index(base, tuple(items), span, _nested(base.depth + 1, span))

    def dims(self, children: list[Any]) -> ast.Dims:
        lsqb, *items, rsqb = children
        return ast.Dims(tuple(value for value, _ in _present(items)), _span(lsqb).to(_span(rsqb)))

    def paren(self, children: list[Any]) -> ast.Expr:
        lpar, expr, rpar = children
        outer = _span(lpar).to(_span(rpar))
        if isinstance(expr, (ast.Name, ast.BinOp)):
            return replace(expr, parens=outer)
        return replace(expr, span=outer)

    def neg(self, children: list[Any]) -> ast.Neg:
        minus, operand = children
        span = _span(minus).to(operand.span)
        return ast.Neg(operand, span, _nested(operand.depth + 1, span))

    # --- declarations

    def shape(self, children: list[Any]) -> ast.Shape:
        lsqb, *dims, rsqb = children
        values = []
        for tok in _present(dims):
            if len(tok) > 12 and tok.isdigit():
                raise DlcError(f"shape dimension '{tok[:12]}...' is too large", _span(tok))
            if not tok.isdigit() or int(tok) < 1:
                raise DlcError(f"shape dimension '{tok}' is not a positive whole number", _span(tok))
            values.append(int(tok))
        return ast.Shape(tuple(values), _span(lsqb).to(_span(rsqb)))

    def signed_number(self, children: list[Any]) -> ast.Array:
        minus, token = children
        span = _span(token) if minus is None else _span(minus).to(_span(token))
        value = _float(token, span)
        return ast.Array(-value if minus is not None else value, span)

    def array(self, children: list[Any]) -> ast.Array:
        lsqb, *items, rsqb = children
        items = _present(items)
        span = _span(lsqb).to(_span(rsqb))
        depth = 1 + max((item.depth for item in items), default=0)
        if depth - 1 > MAX_ARRAY_RANK:  # a number is depth 1
            raise DlcError(f"a constant may have at most {MAX_ARRAY_RANK} dimensions", span)
        return ast.Array(tuple(items), span, depth)

    def init(self, children: list[Any]) -> ast.Init:
        name, *rest = children
        ident = _ident(name)
        if not rest:
            return ast.Init(ident, (), ident.span)
        *args, rpar = rest
        values = tuple(float(a.value) for a in _present(args))
        return ast.Init(ident, values, ident.span.to(_span(rpar)))

    # --- statements

    def model_decl(self, children: list[Any]) -> ast.ModelDecl:
        return ast.ModelDecl(_ident(children[1]))

    def input_decl(self, children: list[Any]) -> ast.InputDecl:
        return ast.InputDecl(_ident(children[1]), children[2])

    def target_decl(self, children: list[Any]) -> ast.TargetDecl:
        _, name, kind, shape = children
        if kind is None:
            return ast.TargetDecl(_ident(name), shape)
        if str(kind) != "class":
            raise DlcError(
                f"unexpected '{kind}' before the target's shape", _span(kind), hint="write [dims] or class[k]"
            )
        if len(shape.dims) != 1 or shape.dims[0] < 2:
            raise DlcError("a class target names how many classes there are: class[k], k >= 2", shape.span)
        return ast.TargetDecl(_ident(name), shape, _span(kind))

    def param_decl(self, children: list[Any]) -> ast.ParamDecl:
        return ast.ParamDecl(_ident(children[1]), children[2], children[3])

    def const_decl(self, children: list[Any]) -> ast.ConstDecl:
        return ast.ConstDecl(_ident(children[1]), children[2])

    def fn_def(self, children: list[Any]) -> ast.FnDef:
        name, *params, body = children
        return ast.FnDef(_ident(name), tuple(_ident(p) for p in _present(params)), body)

    def let_def(self, children: list[Any]) -> ast.LetDef:
        return ast.LetDef(_ident(children[0]), children[1])

    def output_stmt(self, children: list[Any]) -> ast.OutputStmt:
        keyword, name, expr = children
        return ast.OutputStmt(expr, _span(keyword), None if name is None else _ident(name))

    def loss_stmt(self, children: list[Any]) -> ast.LossStmt:
        keyword, expr = children
        return ast.LossStmt(expr, _span(keyword))

    def setting(self, children: list[Any]) -> ast.Setting:
        return ast.Setting(_ident(children[0]), children[1])

    def sweep_values(self, children: list[Any]) -> tuple[ast.Ident, tuple[ast.Expr, ...]]:
        name, *values = children
        return _ident(name), tuple(values)

    def train_block(self, children: list[Any]) -> ast.TrainBlock:
        keyword, *settings, rbrace = children
        return ast.TrainBlock(tuple(settings), _span(keyword).to(_span(rbrace)))

    def optimizer_def(self, children: list[Any]) -> ast.OptimizerDef:
        word, name, *rest = children
        rbrace = rest.pop()
        i = rest.index(next(c for c in rest if isinstance(c, Token) and c.type == "RPAR"))
        settings, lines = _present(rest[:i]), rest[i + 1 :]
        return ast.OptimizerDef(_ident(name), tuple(settings), tuple(lines), _span(word).to(_span(rbrace)))

    def hyper(self, children: list[Any]) -> ast.Setting:
        return ast.Setting(_ident(children[0]), children[1])

    def state_decl(self, children: list[Any]) -> ast.StateDecl:
        word, name = children
        _word(word, "state", "optimizer lines are 'state name' or 'name = formula'")
        return ast.StateDecl(_ident(name))

    def start(self, children: list[Any]) -> ast.Module:
        return ast.Module(tuple(children), Span(1, 1, 1, 1))
