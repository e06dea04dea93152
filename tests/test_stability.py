"""Numerical stability of the compiled built-ins at extreme logits, in float32 and float64.

Each case is a small model ``z = W @ x * S`` (W set to the identity, S a
constant scale) followed by one built-in (softmax, logsumexp, sigmoid,
softplus) or loss (softmax_cross_entropy, bce_with_logits, bce, mse). The
inputs put the logits at +-1e4, +-1e2 and 0, either fed directly (S = 1)
or through the scale (x in [-1, 1], S = 1e4). The compiled module's loss and
its gradient with respect to W must be finite, raise no overflow or invalid
operation, and equal the values of the analytic formulas computed
independently here with mpmath at 50 digits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mpmath
import numpy as np
import pytest

from dlc.compiler import compile_model
from tests.sgd import sgd_step

mp = mpmath.mp
mp.dps = 50

Vec = list[Any]  # a list of mpf

DTYPES = ("float64", "float32")
#: Relative tolerance against the exact value, per dtype (scaled by the largest magnitude involved).
RTOL = {"float64": 1e-13, "float32": 2e-6}
C = [1, 2, 3]  # the weights of the softmax case


# ------------------------------------------------------------ exact per-example formulas


def lse(z: Vec) -> Any:
    m = max(z)
    return m + mpmath.log(sum(mpmath.exp(v - m) for v in z))


def softmax(z: Vec) -> Vec:
    total = lse(z)
    return [mpmath.exp(v - total) for v in z]


def sigmoid(v: Any) -> Any:
    return 1 / (1 + mpmath.exp(-v))


def softplus(v: Any) -> Any:
    return mpmath.log1p(mpmath.exp(v)) if v < 0 else v + mpmath.log1p(mpmath.exp(-v))


#: name -> (the loss statement, per-example value, per-example gradient with respect to z)
CASES: dict[str, tuple[str, Callable[[Vec, Vec], Any], Callable[[Vec, Vec], Vec]]] = {
    "softmax_cross_entropy": (
        "loss softmax_cross_entropy(z, y)",
        lambda z, y: lse(z) - sum(a * b for a, b in zip(y, z, strict=True)),
        lambda z, y: [s - t for s, t in zip(softmax(z), y, strict=True)],
    ),
    "logsumexp": ("loss logsumexp(z)", lambda z, y: lse(z), lambda z, y: softmax(z)),
    "softmax": (
        "loss sum(softmax(z) * c)",
        lambda z, y: sum(s * c for s, c in zip(softmax(z), C, strict=True)),
        lambda z, y: [
            s * (c - sum(a * b for a, b in zip(softmax(z), C, strict=True)))
            for s, c in zip(softmax(z), C, strict=True)
        ],
    ),
    "sigmoid": (
        "loss sum(sigmoid(z) * y)",
        lambda z, y: sum(sigmoid(v) * t for v, t in zip(z, y, strict=True)),
        lambda z, y: [sigmoid(v) * (1 - sigmoid(v)) * t for v, t in zip(z, y, strict=True)],
    ),
    "softplus": (
        "loss sum(softplus(z) * y)",
        lambda z, y: sum(softplus(v) * t for v, t in zip(z, y, strict=True)),
        lambda z, y: [sigmoid(v) * t for v, t in zip(z, y, strict=True)],
    ),
    "bce_with_logits": (
        "loss bce_with_logits(z, y)",
        lambda z, y: sum(softplus(v) - t * v for v, t in zip(z, y, strict=True)) / len(z),
        lambda z, y: [(sigmoid(v) - t) / len(z) for v, t in zip(z, y, strict=True)],
    ),
    "bce_of_sigmoid": (  # rewritten by dlc to the logit form: the same values
        "p = sigmoid(z)\nloss bce(p, y)",
        lambda z, y: sum(softplus(v) - t * v for v, t in zip(z, y, strict=True)) / len(z),
        lambda z, y: [(sigmoid(v) - t) / len(z) for v, t in zip(z, y, strict=True)],
    ),
    "mse": (
        "loss mse(z, y)",
        lambda z, y: sum((v - t) ** 2 for v, t in zip(z, y, strict=True)) / len(z),
        lambda z, y: [2 * (v - t) / len(z) for v, t in zip(z, y, strict=True)],
    ),
}

TARGETS = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]]


def logits(scale: float) -> list[list[float]]:
    """Four examples of 3 logits each, at +-scale, +-scale/2 and 0."""
    s = scale
    return [[s, -s, 0.0], [-s, s, s / 2], [0.0, 0.0, 0.0], [-s, -s, s]]


def model_text(case: str, scale: float) -> str:
    head = "input x : [3]\ntarget y : [3]\nparam W : [3, 3] = zeros\nconst c = [1, 2, 3]\n"
    return head + f"z = W @ x * {scale!r}\n{CASES[case][0]}\n"


def exact(case: str, X: np.ndarray, Y: np.ndarray, scale: float) -> tuple[Any, list[list[Any]]]:
    """The batch loss and its gradient with respect to W (at W = I), from the formulas above."""
    _, value, grad = CASES[case]
    B = len(X)
    S = mpmath.mpf(scale)
    total = mpmath.mpf(0)
    dW = [[mpmath.mpf(0)] * 3 for _ in range(3)]
    for x_row, y_row in zip(X, Y, strict=True):
        x = [mpmath.mpf(float(v)) for v in x_row]
        y = [mpmath.mpf(float(v)) for v in y_row]
        z = [S * v for v in x]
        total += value(z, y)
        g = grad(z, y)
        for i in range(3):
            for j in range(3):
                dW[i][j] += S * g[i] * x[j] / B
    return total / B, dW


def run(case: str, dtype: str, values: list[list[float]], scale: float) -> tuple[float, np.ndarray, Any, Any]:
    module = compile_model(model_text(case, scale), dtype=dtype)
    X = np.array(values, dtype=dtype)
    Y = np.array(TARGETS, dtype=dtype)
    params = {"W": np.eye(3, dtype=dtype)}
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value, grads = module.value_and_grad(params, X, Y)
        assert module.loss(params, X, Y) == value
    return value, grads["W"], X, Y


def close(got: Any, want: Any, dtype: str, what: str) -> None:
    got_a = np.asarray(got, dtype=np.float64)
    want_a = np.array([[float(v) for v in row] for row in want]) if isinstance(want, list) else float(want)
    scale = max(1.0, float(np.max(np.abs(want_a))))
    np.testing.assert_allclose(got_a, want_a, rtol=RTOL[dtype], atol=RTOL[dtype] * scale, err_msg=what)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("magnitude", [1e4, 1e2, 0.0])
@pytest.mark.parametrize("case", list(CASES))
def test_extreme_logits_fed_directly(case: str, magnitude: float, dtype: str) -> None:
    value, dW, X, Y = run(case, dtype, logits(magnitude), 1.0)
    assert np.isfinite(value) and np.all(np.isfinite(dW))
    assert dW.dtype == np.dtype(dtype)
    want_value, want_dW = exact(case, X, Y, 1.0)
    close(value, want_value, dtype, f"{case} loss")
    close(dW, want_dW, dtype, f"{case} gradient")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1e4, -1e4, 1e2])
@pytest.mark.parametrize("case", list(CASES))
def test_extreme_logits_through_a_scale_in_the_model(case: str, scale: float, dtype: str) -> None:
    value, dW, X, Y = run(case, dtype, logits(1.0), scale)
    assert np.isfinite(value) and np.all(np.isfinite(dW))
    want_value, want_dW = exact(case, X, Y, scale)
    close(value, want_value, dtype, f"{case} loss")
    close(dW, want_dW, dtype, f"{case} gradient")


def _bce_reference(P: np.ndarray, Y: np.ndarray, dtype: str) -> tuple[float, float]:
    """Batch bce of probabilities a * P at a = 1, and its derivative in a, clipping as the dtype does."""
    lo = mpmath.mpf(float(np.asarray(1e-7, dtype=dtype)))
    hi = mpmath.mpf(float(np.asarray(1, dtype=dtype) - np.asarray(1e-7, dtype=dtype)))
    total, da = mpmath.mpf(0), mpmath.mpf(0)
    for p_row, y_row in zip(P, Y, strict=True):
        for v, t in zip(p_row, y_row, strict=True):
            p, y = mpmath.mpf(float(v)), mpmath.mpf(float(t))
            q = min(max(p, lo), hi)
            total += -(y * mpmath.log(q) + (1 - y) * mpmath.log(1 - q)) / len(p_row)
            if lo < p < hi:
                da += (-y / p + (1 - y) / (1 - p)) * p / len(p_row)
    return float(total / len(P)), float(da / len(P))


def _bce(dtype: str, probabilities: list[list[float]]) -> tuple[float, float, float, float]:
    module = compile_model(
        "input p : [3]\ntarget y : [3]\nparam a : [] = ones\nloss bce(a * p, y)\n", dtype=dtype
    )
    P = np.array(probabilities, dtype=dtype)
    Y = np.array(TARGETS, dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value, grads = module.value_and_grad({"a": np.array(1.0, dtype=dtype)}, P, Y)
    assert np.isfinite(value) and np.isfinite(grads["a"])
    return (value, float(grads["a"]), *_bce_reference(P, Y, dtype))


INSIDE = [[0.5, 2e-7, 1e-3], [0.999, 1 - 2e-7, 0.01], [0.25, 0.75, 3e-7], [0.9, 0.1, 0.999]]
EDGES = [[0.0, 1.0, 0.5], [1e-300, 1 - 1e-16, 1e-8], [0.25, 0.75, 1e-9], [1.0, 0.0, 0.999]]


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_of_probabilities_near_the_edges(dtype: str) -> None:
    """bce(p, y) of probabilities inside [EPS, 1 - EPS], some very near its ends: the exact values."""
    value, da, want_value, want_da = _bce(dtype, INSIDE)
    # log(1 - p) for p near 1 loses digits to cancellation (docs/language.md: bce of probabilities
    # loses precision near 0 and 1), so the tolerance is that of the inputs' last bits.
    rtol = 1e-9 if dtype == "float64" else 1e-3
    np.testing.assert_allclose(value, want_value, rtol=rtol)
    np.testing.assert_allclose(da, want_da, rtol=rtol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_of_probabilities_at_the_edges(dtype: str) -> None:
    """Probabilities 0, 1, 1e-300 and 1 - 1e-16 are clipped to [EPS, 1 - EPS]: a finite, clipped loss."""
    value, da, want_value, _ = _bce(dtype, EDGES)
    np.testing.assert_allclose(value, want_value, rtol=1e-9 if dtype == "float64" else 1e-4)
    assert np.isfinite(da)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_gradient_agrees_with_the_clipped_loss(dtype: str) -> None:
    """Where p is clipped the loss is flat, so its gradient is 0 (it was 1e7 / n at p = 1, y = 0,
    before b327dcb: the rule ignored the clipping)."""
    module = compile_model(
        "target y : [2]\ninput x : [1]\nparam p : [2] = zeros\nloss bce(p, y) + 0 * sum(x)\n", dtype=dtype
    )
    p = np.array([1.0, 1e-9], dtype=dtype)
    Y = np.array([[0.0, 0.0]], dtype=dtype)
    X = np.zeros((1, 1), dtype=dtype)
    _, grads = module.value_and_grad({"p": p}, X, Y)
    h = 1e-10  # small enough that p +- h stays where p is clipped
    fd = [
        (module.loss({"p": p + h * e}, X, Y) - module.loss({"p": p - h * e}, X, Y)) / (2 * h)
        for e in np.eye(2, dtype=dtype)
    ]
    np.testing.assert_allclose(grads["p"], fd, atol=1e-3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["softmax_cross_entropy", "bce_with_logits", "softplus", "logsumexp"])
def test_training_steps_at_extreme_logits_stay_finite(case: str, dtype: str) -> None:
    module = compile_model(model_text(case, 1.0), dtype=dtype)
    X = np.array(logits(1e4), dtype=dtype)
    Y = np.array(TARGETS, dtype=dtype)
    params = {"W": np.eye(3, dtype=dtype)}
    velocity = {"W": np.zeros((3, 3), dtype=dtype)}
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        for _ in range(5):
            value = sgd_step(module, params, velocity, X, Y, 1e-6, 0.9, True)
            assert np.isfinite(value)
    assert np.all(np.isfinite(params["W"]))
