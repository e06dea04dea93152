"""A sweep's grid: ``--set 'lr = 0.01, 0.1, 1'`` texts -> checked axes of values.

Each ``--set`` gives one setting and its values in the model language's own
syntax: numbers for an optimizer's settings (``lr``, ``momentum``, ``b1``,
any setting of the model's optimizer or of one defined in its file),
whole numbers for ``batch_size`` and ``epochs``, and optimizer calls for
``optimizer``. Mistakes are placed in the ``--set`` text, with a caret.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from dlc.errors import DlcError, Note, Span
from dlc.frontend import Model, ast, load_source
from dlc.frontend.parser import parse_sweep_values
from dlc.frontend.settings import number, real, whole_number

#: The most runs one sweep may ask for (configurations times seeds).
MAX_RUNS = 100_000
#: Training settings a sweep may vary besides the optimizer's: the smallest value of each.
WHOLE_SETTINGS = {"batch_size": 1, "epochs": 0}
_FIXED = {
    "seed": "seeds are swept with --seeds N (the model's seed, and the N - 1 after it)",
    "data": "a sweep trains every run on the same data, given with --data",
    "patience": "early stopping is the model's own setting; set it in its train block",
    "clip_norm": "clip_norm is the model's own setting; set it in its train block",
}
LABEL = "--set"


@dataclass(frozen=True)
class Value:
    """One value of a swept setting: its text as written, and its number (None for an optimizer)."""

    text: str
    number: float | None


@dataclass(frozen=True)
class Axis:
    name: str
    values: tuple[Value, ...]


@dataclass(frozen=True)
class Grid:
    """The axes in the order given, and the model built with each swept optimizer (None: its own)."""

    axes: tuple[Axis, ...]
    models: dict[str | None, Model]

    def configurations(self) -> list[tuple[tuple[str, Value], ...]]:
        """Every combination, the last axis varying fastest."""
        return [
            tuple(zip((a.name for a in self.axes), values, strict=True))
            for values in itertools.product(*(a.values for a in self.axes))
        ]


def read_grid(model: Model, texts: Sequence[str], seeds: int = 1) -> Grid:
    """The grid that the ``--set`` texts give for ``model``; every value checked against it.

    Raises:
        DlcError: placed in the ``--set`` text at fault.
    """
    parsed: list[tuple[Axis, ast.Ident, str, tuple[ast.Expr, ...]]] = []
    for text in texts:
        axis, name, exprs = _axis(text)
        other = next((t for a, _, t, _ in parsed if a.name == axis.name), None)
        if other is not None:
            err = DlcError(f"'{name.text}' is swept twice; give all its values in one --set", name.span,
                           hint=f"the other: --set '{other}'")  # fmt: skip
            raise err.in_file(LABEL, text)
        parsed.append((axis, name, text, exprs))
    models: dict[str | None, Model] = {}
    for axis, _, text, exprs in parsed:
        if axis.name == "optimizer":
            for value, expr in zip(axis.values, exprs, strict=True):
                models[value.text] = _with_optimizer(model, value.text, expr.span, text)
    if not models:
        models[None] = model
    for axis, name, text, _ in parsed:
        if axis.name != "optimizer" and axis.name not in WHOLE_SETTINGS:
            _check_setting(name, text, models)
    axes = tuple(axis for axis, _, _, _ in parsed)
    runs = math.prod(len(a.values) for a in axes) * seeds
    if runs > MAX_RUNS:
        raise DlcError(f"the sweep has {runs:,} runs; at most {MAX_RUNS:,} are allowed",
                       hint="sweep fewer values, or fewer seeds")  # fmt: skip
    return Grid(axes, models)


def _axis(text: str) -> tuple[Axis, ast.Ident, tuple[ast.Expr, ...]]:
    """One ``--set`` text's axis, with its name and its values' expressions (for placing errors)."""
    if "\n" in text or "\r" in text:
        raise DlcError("a --set is one line: 'name = value, value, ...'").in_file(LABEL, text)
    try:
        name, exprs = parse_sweep_values(text)
        values = tuple(_value(name, e, text) for e in exprs)
        _distinct(values, exprs)
    except DlcError as err:
        raise err.in_file(LABEL, text) from None
    return Axis(name.text, values), name, exprs


def _check_setting(name: ast.Ident, text: str, models: dict[str | None, Model]) -> None:
    """A swept optimizer setting must be one of every swept optimizer's (or of the model's own)."""
    for chosen, built in models.items():
        optimizer = built.graph.train.optimizer
        known = optimizer.setting_names if optimizer is not None else ()
        if name.text in known:
            continue
        own = f"the model's optimizer, {optimizer.call if optimizer else 'none'}"
        which = f"the optimizer {chosen}" if chosen else own
        err = DlcError(
            f"'{name.text}' is not a setting of {which}; its settings are {', '.join(known) or 'none'}",
            name.span,
            hint="a setting of only some of the swept optimizers is swept inside their calls: "
            "--set 'optimizer = adam(lr = 1e-3), sgd(lr = 0.1, momentum = 0.9)'",
        )
        raise err.in_file(LABEL, text)


def _value(name: ast.Ident, expr: ast.Expr, text: str) -> Value:
    key = name.text
    as_written = written(text, expr.span)
    if key in _FIXED:
        raise DlcError(f"'{key}' is not swept with --set", name.span, hint=_FIXED[key])
    if key == "optimizer":
        if not isinstance(expr, (ast.Call, ast.Name)):
            raise DlcError("expected an optimizer call, such as adam(lr = 1e-3)", expr.span)
        return Value(as_written, None)
    if key in WHOLE_SETTINGS:
        return Value(as_written, whole_number(expr, key, WHOLE_SETTINGS[key]))
    if key == "lr":
        return Value(as_written, real(expr, key, 0.0, low_open=True))
    if key == "momentum":
        return Value(as_written, real(expr, key, 0.0, high=1.0))
    if isinstance(expr, ast.Name) and expr.ident.text in ("true", "false"):
        return Value(as_written, float(expr.ident.text == "true"))
    found, _ = number(expr)
    return Value(as_written, found)


def _distinct(values: Sequence[Value], exprs: Sequence[ast.Expr]) -> None:
    seen: dict[object, int] = {}
    for i, value in enumerate(values):
        key = value.number if value.number is not None else "".join(value.text.split())
        if key in seen:
            raise DlcError(f"the value {value.text} is given twice", exprs[i].span,
                           notes=(Note("first given here", exprs[seen[key]].span),))  # fmt: skip
        seen[key] = i


def written(text: str, span: Span) -> str:
    """What one line of ``text`` holds at ``span``, as written."""
    return text[span.column - 1 : span.end_column - 1]


def _with_optimizer(model: Model, call: str, span: Span, text: str) -> Model:
    """``model`` with the optimizer ``call``; a mistake in the call is placed in the ``--set`` text."""
    try:
        return load_source(model.source, model.path, optimizer=call)
    except DlcError as err:
        if err.path != "--optimizer":  # a mistake in the model's own file (its optimizer definitions)
            raise
        where = err.span
        if where is not None:  # the call is line 1 of its own text: move it to its place in ``text``
            shift = span.column - 1
            where = Span(1, where.column + shift, 1, where.end_column + shift)
        placed = DlcError(err.message, where, hint=err.hint)
        raise placed.in_file(LABEL, text) from None
