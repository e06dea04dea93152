"""Symbolic gradients against central finite differences (and torch where installed)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dlc.backends.initializers import initial_params
from dlc.backends.reference import evaluate
from dlc.frontend import load, load_source
from dlc.grad import differentiate, hessian_vector_program
from dlc.gradcheck import check_gradients, sample_data
from dlc.graph.nodes import Elementwise, MatMul

from .conftest import EXAMPLES

VEC = """
input  x : [4]
target y : [3]
param  W : [3, 4] = normal(0.5)
param  b : [3] = normal(0.5)
"""

# name -> model text; each exercises an op, a loss, or a way of sharing parameters.
MODELS = {
    "relu": VEC + "loss mse(relu(W @ x + b), y)",
    "leaky_relu": VEC + "loss mse(leaky_relu(W @ x + b, 0.2), y)",
    "tanh": VEC + "loss mse(tanh(W @ x + b), y)",
    "sigmoid": VEC + "loss mse(sigmoid(W @ x) * b, y)",
    "softplus": VEC + "loss mse(softplus(W @ x - b), y)",
    "exp_log_sqrt": VEC + "loss mse(log(1 + exp(W @ x)) + sqrt(b * b + 1), y)",
    "abs_sin_cos": VEC + "loss mse(abs(W @ x) + sin(b) * cos(W @ x), y)",
    "pow": VEC + "loss mse(pow(W @ x, 3) / 10 + b ** 2, y)",
    "param_exponent": VEC + "param p : [] = constant(1.5)\nloss mse(sigmoid(W @ x) ** p + b, y)",
    "division": VEC + "loss mse((W @ x) / (b * b + 1), y)",
    "swish": VEC + "swish(z) = z * sigmoid(z)\nloss mse(swish(W @ x + b), y)",
    "sum_mean": VEC + "loss sum(W @ x) ** 2 / 10 + mean(b * (W @ x)) + mean(W, 0) @ x",
    "softmax": VEC + "loss mse(softmax(W @ x + b), y)",
    "logsumexp": VEC + "loss logsumexp(W @ x + b) - sum(y * (W @ x))",
    "softmax_ce": VEC + "loss softmax_cross_entropy(W @ x + b, y)",
    "bce_logits": VEC + "loss bce_with_logits(W @ x + b, y)",
    "bce_rewritten": VEC + "loss bce(sigmoid(W @ x + b), y)",
    "bce_probabilities": VEC + "loss bce(0.1 + 0.8 * sigmoid(W @ x + b), y)",
    "transpose_tied": """
        input x : [4]
        target y : [4]
        param W : [3, 4] = normal(0.5)
        loss mse(transpose(W) @ tanh(W @ x), y)   # tied weights: W and W^T
        """,
    "shared_layer": """
        input x : [4]
        target y : [4]
        param W : [4, 4] = normal(0.5)
        param c : [4] = normal(0.5)
        a(M, v) = tanh(M @ v + c)
        loss mse(a(W, a(W, x)), y)                # one layer applied twice
        """,
    "bias_broadcast_and_regularizer": VEC + "loss mse(W @ x + b, y) + 0.01 * sum(W ** 2) + 0.1 * sum(b)",
    "concat": VEC + "param V : [2, 7] = normal(0.5)\nloss sum(V @ concat(x, b)) ** 2",
    "matrix_per_example": """
        input X : [3, 4]
        target y : [3, 2]
        param W : [4, 2] = normal(0.5)
        param r : [2] = normal(0.5)
        loss mse(tanh(X @ W) * r, y)
        """,
    "vector_matrix_and_dot": """
        input x : [4]
        target y : [1]
        param W : [4, 3] = normal(0.5)
        param u : [3] = normal(0.5)
        loss mse((x @ W) @ u + 0 * y, y)
        """,
    "constant_matrix": VEC + "const M = [[1, 0, 2], [0, 1, -1]]\nloss sum((M @ (W @ x + b)) ** 2)",
    "no_data": "param w : [2] = constant(0.5)\nloss sum((w ** 2 - 1) ** 2) + w @ w",
    "row_broadcast": """
        input x : [3, 4]
        target y : [3, 4]
        param s : [3, 1] = normal(1)
        loss mse(x * s, y)
        """,
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_gradients_match_finite_differences(name: str) -> None:
    graph = load_source(MODELS[name]).graph
    result = check_gradients(graph, seed=1)
    assert result.passed, result
    assert result.directions and all(e < 1e-5 for e in result.directions)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_examples_pass_the_gradient_check(path: object, dtype: str) -> None:
    result = check_gradients(load(path).graph, dtype=dtype)  # type: ignore[arg-type]
    assert result.passed, result


def test_a_wrong_gradient_is_caught() -> None:
    """The check itself can fail: corrupt one gradient and it must notice."""
    graph = load_source(MODELS["tanh"]).graph
    program = differentiate(graph)
    rng = np.random.default_rng(0)
    params = initial_params(graph.params, 0)
    data = sample_data(graph, 4, rng)
    (gw,) = evaluate([program.grads["W"]], {**params, **data})
    from dlc import gradcheck

    def loss(p: dict[str, np.ndarray]) -> float:
        return float(evaluate([program.graph.loss], {**p, **data})[0])

    numeric = gradcheck._directional(loss, params, {"W": np.ones((3, 4)), "b": np.zeros(3)})
    assert gradcheck._relative(float(np.sum(gw)), numeric) < 1e-6
    assert gradcheck._relative(float(np.sum(gw)) * 1.01, numeric) > 1e-3


def test_a_check_that_meets_nan_fails_rather_than_passes() -> None:
    # sqrt(-x*x) is nan for every example: nothing can be compared, so nothing is shown right.
    graph = load_source("input x : [2]\nparam w : [2] = constant(1)\nloss sum(sqrt(-x * x) * w)").graph
    result = check_gradients(graph)
    assert np.isnan(result.worst) and not result.passed


def test_derivatives_are_written_in_terms_of_the_output() -> None:
    program = differentiate(load_source(MODELS["tanh"]).graph)
    forward = {n for n in program.graph.nodes()}
    tanh_node = next(n for n in forward if isinstance(n, Elementwise) and "tanh" in str(n.expr))
    # Some gradient node reads the forward tanh value instead of recomputing tanh.
    users = [n for n in program.nodes() if tanh_node in n.inputs and n not in forward]
    assert users and all("tanh" not in str(n.expr) for n in users if isinstance(n, Elementwise))


def chain(depth: int) -> str:
    layers = "\n".join(f"param W{i} : [8, 8] = normal(0.3)" for i in range(depth))
    h = "x"
    for i in range(depth):
        h = f"tanh(W{i} @ {h})"
    return f"input x : [8]\ntarget y : [8]\n{layers}\nloss mse({h}, y)"


def test_gradient_size_grows_linearly_with_depth() -> None:
    sizes = []
    for depth in range(1, 65):
        graph = load_source(chain(depth)).graph
        program = differentiate(graph)
        sizes.append((len(graph.nodes()), len(program.nodes())))
    forward = [f for f, _ in sizes]
    total = [t for _, t in sizes]
    # Every extra layer adds the same number of nodes, forward and backward.
    assert len({b - a for a, b in itertools.pairwise(forward[1:])}) == 1
    assert len({b - a for a, b in itertools.pairwise(total[1:])}) == 1
    assert total[-1] <= 4 * forward[-1]


def test_matmuls_forward_and_backward() -> None:
    program = differentiate(load_source(chain(3)).graph)
    forward = sum(isinstance(n, MatMul) for n in program.graph.nodes())
    products = sum(n.op_name in ("matmul", "einsum") for n in program.nodes())
    # 3 forward products; backward: one per weight, one per hidden input (the first needs none).
    assert (forward, products) == (3, 3 + 3 + 2)


@pytest.mark.parametrize("name", ["tanh", "softmax_ce", "shared_layer", "param_exponent", "no_data"])
def test_hessian_vector_products_match_differences_of_gradients(name: str) -> None:
    graph = load_source(MODELS[name]).graph
    hvp = hessian_vector_program(graph)
    rng = np.random.default_rng(3)
    params = {k: v + rng.normal(0, 0.1, v.shape) for k, v in initial_params(graph.params, 0).items()}
    data = sample_data(graph, 4, rng)
    v = {k: rng.normal(size=p.shape) for k, p in params.items()}
    feeds = {**params, **data, **{f"v:{k}": val for k, val in v.items()}}
    names = list(params)
    analytic = evaluate([hvp.extra[f"hvp:{k}"] for k in names], feeds)
    h = 1e-5

    def grads(shift: float) -> list[np.ndarray]:
        moved = {k: p + shift * v[k] for k, p in params.items()}
        return evaluate([hvp.grads[k] for k in names], {**moved, **data})

    up, down = grads(h), grads(-h)
    for a, u, d in zip(analytic, up, down, strict=True):
        numeric = (u - d) / (2 * h)
        np.testing.assert_allclose(a, numeric, rtol=1e-5, atol=1e-6)


def test_deep_but_legal_nesting_differentiates() -> None:
    source = VEC + "loss mse(" + "tanh(" * 240 + "W @ x" + ")" * 240 + " + b, y)"
    result = check_gradients(load_source(source).graph, directions=1)
    assert result.passed
