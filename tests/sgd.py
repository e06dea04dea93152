"""Training steps with the modules' sgd, with its velocity given as a dict by parameter (its one state)."""

from __future__ import annotations

from typing import Any


def sgd_state(velocity: Any, step: int = 0) -> Any:
    """The optimizer state of sgd around a velocity dict (anything else is passed on as it is)."""
    return {"step": step, "velocity": velocity} if isinstance(velocity, dict) else velocity


def sgd_step(m: Any, params: Any, velocity: Any, X: Any, Y: Any, lr: Any = None, momentum: Any = None,
             nesterov: Any = None) -> Any:  # fmt: skip
    """``m.train_step`` of sgd (as torch: velocity <- momentum * velocity + g; w <- w - lr * velocity)."""
    settings = {"lr": lr, "momentum": momentum, "nesterov": nesterov}
    # a model of its own optimizer (examples/momentum.dlc) takes the settings it has
    settings = {k: v for k, v in settings.items() if k in m.SETTINGS}
    return m.train_step(
        params, sgd_state(velocity), X, Y, **{k: v for k, v in settings.items() if v is not None}
    )
