"""Formulas compute in reals, as NumPy does, whatever SymPy makes of them.

Element symbols are real, so SymPy rewrites sqrt(-h*h) as I*|h| and (-2)**w's
derivative with log(-2) = log(2) + I*pi. A generated module must not compute
with those complex numbers: it computes the formula as written (the square
root of a negative number is nan), and agrees with the reference evaluator.
Also here: bodies whose terms cancel only once shared parts are pulled out
(a cotangent that is identically 0) keep their shape.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from dlc.backends.initializers import initial_params
from dlc.backends.numpy.printer import print_body
from dlc.backends.reference import evaluate
from dlc.compiler import compile_model
from dlc.errors import DlcError
from dlc.frontend import load_source
from dlc.grad import differentiate, hessian_vector_program
from dlc.gradcheck import check_gradients, sample_data
from dlc.graph.nodes import Elementwise
from dlc.graph.scalar import element_symbol, not_real

DATA = "input h : [2]\nparam w : [2] = normal(0.5)\n"

#: Losses where SymPy's evaluation, or its derivative, is complex for real symbols.
COMPLEX_IN_SYMPY = {
    "sqrt_of_minus_square": "loss sum(sqrt(-h * h) * w)",
    "sqrt_inside": "loss sum(sqrt(-h * h * w * w))",
    "fractional_power": "loss sum((-w * w) ** (1/3) + h)",
    "negative_base": "loss sum((-2) ** w + h)",
    "minus_one_to_the_w": "loss sum(pow(-1, w) + h)",
    "through_a_function": "f(z) = sqrt(-z * z)\nloss sum(f(w) * h)",
    "sqrt_of_minus_exp": "loss sum(sqrt(-exp(w)) * h)",
    "log_of_minus_one": "loss log(-sum(w) / sum(w))",  # fusion leaves the number -1, then log(-1)
}


def _bodies(source: str) -> list[object]:
    program = differentiate(load_source(source).graph)
    return [n.expr for n in program.nodes() if isinstance(n, Elementwise)]


def _module_and_reference(source: str, dtype: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    graph = load_source(source).graph
    program = differentiate(graph)
    rng = np.random.default_rng(0)
    params = {k: v + rng.normal(0, 0.3, v.shape) for k, v in initial_params(graph.params, 0).items()}
    data = sample_data(graph, 4, rng)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("error", np.exceptions.ComplexWarning)
        want = evaluate([program.graph.loss, *program.grads.values()], {**params, **data})
        value, grads = compile_model(source, dtype=dtype).value_and_grad(
            {k: v.astype(dtype) for k, v in params.items()}, data["h"].astype(dtype), None
        )
    got = [np.asarray(value, dtype=dtype), *(np.asarray(g) for g in grads.values())]
    return got, want


@pytest.mark.parametrize("name", sorted(COMPLEX_IN_SYMPY))
def test_no_body_holds_a_complex_number(name: str) -> None:
    bodies = _bodies(DATA + COMPLEX_IN_SYMPY[name])
    assert bodies and not any(not_real(b) for b in bodies), bodies


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(COMPLEX_IN_SYMPY))
def test_the_module_agrees_with_the_reference_in_reals(name: str, dtype: str) -> None:
    got, want = _module_and_reference(DATA + COMPLEX_IN_SYMPY[name], dtype)
    tol = 1e-12 if dtype == "float64" else 2e-5
    for g, w in zip(got, want, strict=True):
        assert g.dtype == np.dtype(dtype)
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)  # nan where the reference has nan


def test_sqrt_of_a_negative_value_is_nan_as_in_numpy() -> None:
    source = DATA + "output sqrt(-h * h) * w\nloss sum(sqrt(-h * h) * w)"
    m = compile_model(source)
    w = np.array([0.5, -2.0])
    h = np.array([[0.0, 1.0], [-0.0, 0.0], [3.0, -0.5]])
    with np.errstate(invalid="ignore"):
        want = np.sqrt(-h * h) * w
        got = m.predict({"w": w}, h)
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got).sum() == 3 and not np.isnan(got[1]).any()


@pytest.mark.parametrize("power", ["(-8) ** (1/3)", "(-5) ** exp(1)", "pow(-2, 0.5)"])
def test_a_negative_number_to_a_fractional_power_is_refused_where_written(power: str) -> None:
    source = f"param w : [] = zeros\nloss w * {power}\n"
    with pytest.raises(DlcError, match="not a finite real number") as info:
        load_source(source)
    assert info.value.span is not None and info.value.span.line == 2


def test_hessian_vector_bodies_stay_real() -> None:
    program = hessian_vector_program(load_source(DATA + COMPLEX_IN_SYMPY["fractional_power"]).graph)
    assert not any(not_real(n.expr) for n in program.nodes() if isinstance(n, Elementwise))


# --------------------------------------------------------------- terms that cancel


def test_a_cotangent_that_cancels_to_zero_keeps_its_shape() -> None:
    # mse(z, z + 1) is 1 whatever s is: its gradient is 0, not an einsum of the number 0.
    source = "param s : [3] = normal(1)\ninput y : [5, 3]\nloss mse(y @ s, y @ s + 1)\n"
    result = check_gradients(load_source(source).graph)
    assert result.passed, result
    graph = load_source(source).graph
    rng = np.random.default_rng(1)
    data = sample_data(graph, 4, rng)
    value, grads = compile_model(source).value_and_grad({"s": rng.normal(size=3)}, data["y"], None)
    assert value == pytest.approx(1.0)
    np.testing.assert_array_equal(grads["s"], np.zeros(3))


def test_a_forward_body_that_cancels_keeps_its_batch_axis() -> None:
    source = "input x : [3]\nparam w : [3] = normal(1)\nloss sum(w * (x - 1) + w * (1 - x)) + sum(w ** 2)\n"
    m = compile_model(source)
    w, x = np.array([1.0, 2.0, -1.0]), np.arange(12.0).reshape(4, 3)
    value, grads = m.value_and_grad({"w": w}, x, None)
    assert value == pytest.approx(6.0)
    np.testing.assert_allclose(grads["w"], 2 * w)


def test_printed_bodies_read_the_inputs_that_give_their_shape() -> None:
    x0, x1, x2, x3 = (element_symbol(i) for i in range(4))
    cancels = x0 * (x1 - x2) + x0 * (x2 - x1) + x3
    lines, expr, _ = print_body(cancels, ["a", "b", "c", "d"], "_t")
    # Printed as it stands: the sum is 0 + d, but shaped (and batched) like a, b and c.
    assert all(name in " ".join([*lines, expr]) for name in "abcd"), (lines, expr)
    lines, expr, _ = print_body(x0 * (x1 - x2) + (x1 - x2) ** 2, ["a", "b", "c"], "_t")
    assert lines and "_t_0" in expr  # shared parts are still pulled out where nothing cancels


#: Piecewise functions of numbers that SymPy's assumptions cannot place (is sigmoid(1) > 0?),
#: found by fuzzing: the backends printed them with evalf, which failed. (source, value)
PIECEWISE_OF_NUMBERS = {
    "relu_of_sigmoid": ("relu(sigmoid(1))", 1 / (1 + np.exp(-1.0))),
    "relu_of_minus_sigmoid": ("relu(-sigmoid(2))", 0.0),
    "leaky_relu_of_softplus": ("leaky_relu(softplus(1.5), 1)", np.logaddexp(0.0, 1.5)),
    "leaky_relu_of_minus_sigmoid": ("leaky_relu(-sigmoid(2))", -0.01 / (1 + np.exp(-2.0))),
}


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("name", list(PIECEWISE_OF_NUMBERS))
def test_a_piecewise_function_of_a_number_is_folded(name: str, backend: str) -> None:
    expr, value = PIECEWISE_OF_NUMBERS[name]
    module = compile_model(f"{DATA}output {expr}\nloss {expr} * sum(w * h)\n", backend=backend)
    params = module.init_params(0)
    X = np.ones((3, *module.INPUT_SHAPE))
    assert module.loss(params, X, None) == pytest.approx(value * float(np.sum(params["w"])), rel=1e-12)
    np.testing.assert_allclose(module.predict(params, X), value, rtol=1e-12)


def test_a_negative_number_to_a_power_sympy_cannot_place_is_judged_by_its_value() -> None:
    """softplus(-2) is a function of dlc's: SymPy does not know it is not whole, its value does."""
    with pytest.raises(DlcError, match="not a finite real number"):
        load_source("const c = -2\nparam a : [] = ones\noutput pow(c, softplus(c))\nloss a * a")
    model = load_source("const c = -2\nparam a : [] = ones\nloss a * pow(c, relu(2))")
    assert model.graph is not None
