"""The abstract syntax tree: frozen dataclasses named after the grammar's rules.

Every node carries the :class:`~dlc.errors.Span` it was read from, so that any
later stage can point at the user's source.
"""

from __future__ import annotations

from dataclasses import dataclass

from dlc.errors import Span


@dataclass(frozen=True)
class Ident:
    """A name as written, with where it was written."""

    text: str
    span: Span


# ----------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Number:
    text: str
    span: Span
    depth: int = 1


@dataclass(frozen=True)
class Name:
    ident: Ident
    depth: int = 1
    parens: Span | None = None  # the brackets around it, if it was written in some

    @property
    def span(self) -> Span:
        return self.parens or self.ident.span


@dataclass(frozen=True)
class Keyword:
    """``name = value`` inside a call's argument list."""

    ident: Ident
    value: Expr
    depth: int

    @property
    def span(self) -> Span:
        return self.ident.span.to(self.value.span)


@dataclass(frozen=True)
class Call:
    func: Ident
    args: tuple[Expr, ...]
    keywords: tuple[Keyword, ...]
    span: Span
    depth: int


@dataclass(frozen=True)
class BinOp:
    """``left op right``: ``+ - * / @ **`` (``^`` reads as ``**``) or a comparison ``< <= > >= == !=``."""

    op: str
    left: Expr
    right: Expr
    op_span: Span
    depth: int
    parens: Span | None = None  # the brackets around it, if it was written in some

    @property
    def span(self) -> Span:
        return self.parens or self.left.span.to(self.right.span)


@dataclass(frozen=True)
class Neg:
    operand: Expr
    span: Span
    depth: int


@dataclass(frozen=True)
class Subscript:
    """One axis of an index: ``at`` alone (``x[2]``), or a slice ``start:stop:step``, any left out."""

    span: Span
    at: int | None = None
    start: int | None = None
    stop: int | None = None
    step: int | None = None

    @property
    def is_slice(self) -> bool:
        return self.at is None


@dataclass(frozen=True)
class Index:
    """``base[s0, s1, ...]``: constant indices and slices of the per-example axes."""

    base: Expr
    items: tuple[Subscript, ...]
    span: Span
    depth: int


@dataclass(frozen=True)
class Dims:
    """A list of whole numbers written as an argument: ``reshape(x, [2, 8])``."""

    values: tuple[int, ...]
    span: Span
    depth: int = 1


Expr = Number | Name | Call | BinOp | Neg | Index | Dims


# ------------------------------------------------------------------ statements


@dataclass(frozen=True)
class Shape:
    dims: tuple[int, ...]
    span: Span


@dataclass(frozen=True)
class Init:
    """A parameter initializer: ``zeros``, ``normal(0.1)``, ``glorot`` ..."""

    name: Ident
    args: tuple[float, ...]
    span: Span


@dataclass(frozen=True)
class Array:
    """A constant's value: a number or nested lists of numbers."""

    value: float | tuple[Array, ...]
    span: Span
    depth: int = 1


@dataclass(frozen=True)
class ModelDecl:
    name: Ident


@dataclass(frozen=True)
class InputDecl:
    name: Ident
    shape: Shape


@dataclass(frozen=True)
class TargetDecl:
    """``target y : [dims]``, or ``target label : class[k]``: one class index 0..k-1 per example."""

    name: Ident
    shape: Shape
    classes: Span | None = None  # where the word ``class`` is, for a class-index target


@dataclass(frozen=True)
class ParamDecl:
    name: Ident
    shape: Shape
    init: Init


@dataclass(frozen=True)
class ConstDecl:
    name: Ident
    value: Array


@dataclass(frozen=True)
class FnDef:
    """``name(p1, p2, ...) = body``: a function, inlined at every call."""

    name: Ident
    params: tuple[Ident, ...]
    body: Expr


@dataclass(frozen=True)
class LetDef:
    """``name = expr``: a named value of the model."""

    name: Ident
    body: Expr


@dataclass(frozen=True)
class OutputStmt:
    """``output EXPR``, or one of several named outputs ``output NAME = EXPR``."""

    expr: Expr
    span: Span
    name: Ident | None = None


@dataclass(frozen=True)
class LossStmt:
    expr: Expr
    span: Span


@dataclass(frozen=True)
class Setting:
    name: Ident
    value: Expr


@dataclass(frozen=True)
class TrainBlock:
    settings: tuple[Setting, ...]
    span: Span


@dataclass(frozen=True)
class StateDecl:
    """``state m``: per-parameter state of an optimizer, zeros at the start."""

    name: Ident


@dataclass(frozen=True)
class OptimizerDef:
    """``optimizer name(setting = default, ...) { state ...; name = formula ... }``."""

    name: Ident
    settings: tuple[Setting, ...]
    lines: tuple[StateDecl | Setting, ...]
    span: Span


Statement = (
    ModelDecl
    | InputDecl
    | TargetDecl
    | ParamDecl
    | ConstDecl
    | FnDef
    | LetDef
    | OutputStmt
    | LossStmt
    | TrainBlock
    | OptimizerDef
)


@dataclass(frozen=True)
class Module:
    """A whole model file."""

    statements: tuple[Statement, ...]
    end: Span  # the end of the file, for "missing ..." errors
