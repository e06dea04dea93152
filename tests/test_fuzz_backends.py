"""The two backends agree on generated models (``python -m fuzz.backends`` runs many more)."""

from __future__ import annotations

import random

import numpy as np
import pytest

import fuzz
from dlc.compiler import compile_model
from fuzz.backends import Disagreement, _close, compare

COUNT = 30


@pytest.mark.parametrize("index", range(COUNT))
def test_generated_models_compute_alike_in_both_backends(index: int) -> None:
    text = fuzz.generate_model(random.Random(f"dlc-backends:test:{index}"))
    try:
        compare(text)
    except Disagreement as bad:
        raise AssertionError(f"{bad}\n\n{text}") from None


@pytest.mark.parametrize(
    "text",
    [
        "param w : [] = constant(2)\nloss mse(w, 3)",  # found by fuzz.backends: a number as the target
        "param w : [] = constant(0.3)\nloss bce(0.5, w)",
        "param w : [] = zeros\nloss bce_with_logits(w, 1)",
    ],
)
def test_a_loss_against_a_number(text: str) -> None:
    assert compare(text) == "compiled"
    native = compile_model(text, backend="llvm")
    value, grads = native.value_and_grad(native.init_params(0), None, None)
    assert np.isfinite(value) and all(np.isfinite(g) for g in grads.values())


def test_the_comparison_can_fail() -> None:
    with pytest.raises(Disagreement, match="differs"):
        _close("x", np.array([1.0, 2.0]), np.array([1.0, 2.1]))
