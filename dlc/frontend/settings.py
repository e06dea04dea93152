"""The ``train { ... }`` block -> :class:`~dlc.graph.graph.TrainConfig`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from dlc.errors import DlcError, Note, Span
from dlc.frontend import ast
from dlc.frontend.hints import did_you_mean
from dlc.frontend.optimizers import choose
from dlc.graph.graph import TrainConfig

WHOLE = {"batch_size": 1, "epochs": 0, "seed": 0, "patience": 1}  # setting -> smallest allowed value
_SGD = ("lr", "momentum", "nesterov")
_KNOWN = ["optimizer", *WHOLE, "data", "clip_norm"]


def train_config(
    block: ast.TrainBlock | None,
    optimizers: dict[str, ast.OptimizerDef] | None = None,
    functions: dict[str, ast.FnDef] | None = None,
    chosen: ast.Expr | None = None,
    chosen_text: str | None = None,
    origin: Callable[[DlcError], DlcError] | None = None,
) -> TrainConfig:
    """Read the settings of a train block; defaults fill what it leaves out.

    ``optimizers``/``functions``: the model file's own definitions; ``chosen``: an optimizer
    call that replaces the block's (from the command line, as ``chosen_text``).
    """
    config = TrainConfig()
    seen: dict[str, ast.Setting] = {}
    for setting in block.settings if block is not None else ():
        key = setting.name.text
        if key in seen:
            raise DlcError(
                f"setting '{key}' is given twice",
                setting.name.span,
                notes=(Note("first given here", seen[key].name.span),),
            )
        seen[key] = setting
        if key in WHOLE:
            config = replace(config, **{key: whole_number(setting.value, key, WHOLE[key])})  # type: ignore[arg-type]
        elif key == "data":
            config = replace(config, data=_dataset(setting.value))
        elif key not in ("optimizer", "clip_norm"):
            hint = did_you_mean(key, _KNOWN + list(_SGD)) or f"settings are: {', '.join(_KNOWN)}"
            if key in _SGD:
                hint = f"write it inside the optimizer: optimizer = sgd({key} = ...)"
            raise DlcError(f"unknown training setting '{key}'", setting.name.span, hint=hint)
    clip = real(seen["clip_norm"].value, "clip_norm", low=0.0, low_open=True) if "clip_norm" in seen else None
    call: ast.Expr = ast.Name(ast.Ident("sgd", block.span if block else _NOWHERE))
    text = None
    if chosen is not None:
        call, text = chosen, chosen_text
    elif "optimizer" in seen:
        call = seen["optimizer"].value
    optimizer = choose(call, optimizers or {}, functions or {}, clip, text, origin if chosen else None)
    return replace(config, optimizer=optimizer)


_NOWHERE = Span(1, 1, 1, 2)


def number(value: ast.Expr) -> tuple[float, str]:
    """A number written as one (``0.1``, ``-2``, ``1e-3``): its value and its text."""
    if isinstance(value, ast.Neg) and isinstance(value.operand, ast.Number):
        return -float(value.operand.text), "-" + value.operand.text
    if isinstance(value, ast.Number):
        return float(value.text), value.text
    raise DlcError("expected a number", value.span)


def real(value: ast.Expr, key: str, low: float, low_open: bool = False, high: float | None = None) -> float:
    found, _ = number(value)
    too_low = found <= low if low_open else found < low
    if too_low or (high is not None and found >= high):
        bounds = f"{'greater than' if low_open else 'at least'} {low:g}"
        if high is not None:
            bounds += f" and less than {high:g}"
        raise DlcError(f"{key} must be {bounds}", value.span)
    return found


def whole_number(value: ast.Expr, key: str, low: int) -> int:
    """A whole-number setting of at least ``low`` (and at most 2^31)."""
    found, text = number(value)
    if not text.lstrip("-").isdigit() or found < low:
        raise DlcError(f"{key} must be a whole number of at least {low}", value.span)
    if found > 2**31:
        raise DlcError(f"{key} is too large", value.span)
    return int(found)


def _dataset(value: ast.Expr) -> str:
    """``data = spiral``: one of the built-in datasets, by name (checked when training starts)."""
    if not isinstance(value, ast.Name):
        raise DlcError("expected the name of a built-in dataset", value.span, hint="for example: data = xor")
    return value.ident.text
