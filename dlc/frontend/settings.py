"""The ``train { ... }`` block -> :class:`~dlc.graph.graph.TrainConfig`."""

from __future__ import annotations

import difflib
from dataclasses import replace
from typing import Any

from dlc.errors import DlcError, Note
from dlc.frontend import ast
from dlc.graph.graph import TrainConfig

_WHOLE = {"batch_size": 1, "epochs": 0, "seed": 0}  # setting -> smallest allowed value
_SGD = ("lr", "momentum", "nesterov")


def train_config(block: ast.TrainBlock | None) -> TrainConfig:
    """Read the settings of a train block; defaults fill what it leaves out."""
    config = TrainConfig()
    if block is None:
        return config
    seen: dict[str, ast.Setting] = {}
    for setting in block.settings:
        key = setting.name.text
        if key in seen:
            raise DlcError(
                f"setting '{key}' is given twice",
                setting.name.span,
                notes=(Note("first given here", seen[key].name.span),),
            )
        seen[key] = setting
        if key == "optimizer":
            config = replace(config, **_optimizer(setting.value))
        elif key in _WHOLE:
            config = replace(config, **{key: _whole(setting.value, key, _WHOLE[key])})  # type: ignore[arg-type]
        elif key == "data":
            config = replace(config, data=_dataset(setting.value))
        else:
            known = ["optimizer", *_WHOLE, "data"]
            close = difflib.get_close_matches(key, known + list(_SGD), n=1)
            hint = f"did you mean {close[0]}?" if close else f"settings are: {', '.join(known)}"
            if key in _SGD:
                hint = f"write it inside the optimizer: optimizer = sgd({key} = ...)"
            raise DlcError(f"unknown training setting '{key}'", setting.name.span, hint=hint)
    return config


def _optimizer(value: ast.Expr) -> dict[str, Any]:
    keywords: tuple[ast.Keyword, ...] = ()
    if isinstance(value, ast.Name):
        name = value.ident
    elif isinstance(value, ast.Call):
        name, keywords = value.func, value.keywords
        if value.args:
            raise DlcError(
                "give the optimizer's settings by name",
                value.args[0].span,
                hint="for example sgd(lr = 0.1, momentum = 0.9)",
            )
    else:
        raise DlcError("expected an optimizer such as sgd(lr = 0.1)", value.span)
    if name.text != "sgd":
        raise DlcError(f"unknown optimizer '{name.text}'", name.span, hint="dlc trains with sgd")
    out: dict[str, Any] = {}
    for kw in keywords:
        key = kw.ident.text
        if key in out:
            raise DlcError(f"argument '{key}' is given twice", kw.ident.span)
        if key == "lr":
            out[key] = _real(kw.value, "lr", low=0.0, low_open=True)
        elif key == "momentum":
            out[key] = _real(kw.value, "momentum", low=0.0, high=1.0)
        elif key == "nesterov":
            out[key] = _boolean(kw.value)
        else:
            raise DlcError(
                f"sgd has no setting '{key}'", kw.ident.span, hint="sgd takes lr, momentum, nesterov"
            )
    return out


def _number(value: ast.Expr) -> tuple[float, str]:
    if isinstance(value, ast.Neg) and isinstance(value.operand, ast.Number):
        return -float(value.operand.text), "-" + value.operand.text
    if isinstance(value, ast.Number):
        return float(value.text), value.text
    raise DlcError("expected a number", value.span)


def _real(value: ast.Expr, key: str, low: float, low_open: bool = False, high: float | None = None) -> float:
    number, _ = _number(value)
    too_low = number <= low if low_open else number < low
    if too_low or (high is not None and number >= high):
        bounds = f"{'greater than' if low_open else 'at least'} {low:g}"
        if high is not None:
            bounds += f" and less than {high:g}"
        raise DlcError(f"{key} must be {bounds}", value.span)
    return number


def _whole(value: ast.Expr, key: str, low: int) -> int:
    number, text = _number(value)
    if not text.lstrip("-").isdigit() or number < low:
        raise DlcError(f"{key} must be a whole number of at least {low}", value.span)
    if number > 2**31:
        raise DlcError(f"{key} is too large", value.span)
    return int(number)


def _dataset(value: ast.Expr) -> str:
    """``data = spiral``: one of the built-in datasets, by name (checked when training starts)."""
    if not isinstance(value, ast.Name):
        raise DlcError("expected the name of a built-in dataset", value.span, hint="for example: data = xor")
    return value.ident.text


def _boolean(value: ast.Expr) -> bool:
    if isinstance(value, ast.Name) and value.ident.text in ("true", "false"):
        return value.ident.text == "true"
    raise DlcError("expected true or false", value.span)
