"""Random networks (hypothesis): gradients against finite differences, and against torch autograd.

A network is drawn as a spec, then written twice, independently: as a dlc
model file and as a torch function. Agreement of the two gradients is the
oracle test; the finite-difference check runs whether torch is installed or not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlc.backends.initializers import initial_params
from dlc.backends.reference import evaluate
from dlc.frontend import load_source
from dlc.grad import differentiate
from dlc.gradcheck import check_gradients, sample_data

ACTIVATIONS = ["tanh", "sigmoid", "relu", "softplus", "swish", "leaky_relu", "sin", "identity"]
LOSSES = ["mse", "softmax_cross_entropy", "bce_with_logits", "bce"]


@dataclass(frozen=True)
class Spec:
    widths: tuple[int, ...]  # input, hidden..., output
    activations: tuple[str, ...]  # one per hidden layer
    loss: str
    bias: bool
    share: bool  # reuse the first square hidden layer's weights for the next layer
    l2: bool


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    depth = draw(st.integers(1, 3))
    widths = tuple(draw(st.integers(1, 5)) for _ in range(depth + 1))
    loss = draw(st.sampled_from(LOSSES))
    if loss == "softmax_cross_entropy":
        widths = (*widths[:-1], max(2, widths[-1]))
    acts = tuple(draw(st.sampled_from(ACTIVATIONS)) for _ in range(depth - 1))
    share = depth >= 3 and draw(st.booleans())
    if share:  # the last layer reuses the middle one's square matrix
        k = widths[-1]
        widths = (widths[0], k, k, k)
    return Spec(widths, acts, loss, draw(st.booleans()), share, draw(st.booleans()))


def weight(spec: Spec, i: int) -> str:
    return "W1" if spec.share and i == 2 else f"W{i}"  # shared: layers 1 and 2 are one matrix


def to_dlc(spec: Spec) -> str:
    lines = [f"input x : [{spec.widths[0]}]", f"target y : [{spec.widths[-1]}]"]
    lines.append("swish(z) = z * sigmoid(z)")
    lines.append("identity(z) = z")
    for i in range(len(spec.widths) - 1):
        if weight(spec, i) == f"W{i}":
            lines.append(f"param W{i} : [{spec.widths[i + 1]}, {spec.widths[i]}] = normal(0.6)")
        if spec.bias:
            lines.append(f"param b{i} : [{spec.widths[i + 1]}] = normal(0.3)")
    h = "x"
    for i in range(len(spec.widths) - 1):
        z = f"{weight(spec, i)} @ {h}" + (f" + b{i}" if spec.bias else "")
        h = z if i == len(spec.widths) - 2 else f"{spec.activations[i]}({z})"
    pred = f"sigmoid({h})" if spec.loss == "bce" else h
    if spec.loss == "bce":
        # Keep bce on probabilities (not the rewritten logit form) by squeezing them.
        pred = f"0.05 + 0.9 * {pred}"
    loss = f"{spec.loss}({pred}, y)"
    if spec.l2:
        loss += " + 0.01 * sum(W0 ** 2)"
    return "\n".join([*lines, f"loss {loss}"])


@given(specs())
def test_random_networks_pass_the_gradient_check(spec: Spec) -> None:
    graph = load_source(to_dlc(spec)).graph
    result = check_gradients(graph, seed=2, directions=2)
    # relu and leaky_relu have kinks; a difference step that crosses one is not a gradient error.
    kinked = {"relu", "leaky_relu"} & set(spec.activations)
    if kinked and not result.passed:
        # a unit within the step (1e-5) of its kink at this point (found: a relu's input at -7.8e-6,
        # every other unit dead, so no direction escapes it): check at another point; a wrong
        # gradient is wrong at both
        result = check_gradients(graph, seed=3, directions=2)
    assert result.passed or (kinked and min(result.directions) < 1e-5), (to_dlc(spec), result)


def torch_loss(spec: Spec, params: dict[str, object], x: object, y: object) -> object:
    import torch
    import torch.nn.functional as F  # noqa: N812

    acts = {
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "relu": torch.relu,
        "softplus": F.softplus,
        "swish": lambda z: z * torch.sigmoid(z),
        "leaky_relu": lambda z: F.leaky_relu(z, 0.01),
        "sin": torch.sin,
        "identity": lambda z: z,
    }
    h = x
    n = len(spec.widths) - 1
    for i in range(n):
        h = h @ params[weight(spec, i)].T  # type: ignore[attr-defined]
        if spec.bias:
            h = h + params[f"b{i}"]
        if i < n - 1:
            h = acts[spec.activations[i]](h)
    if spec.loss == "mse":
        loss = ((h - y) ** 2).mean()
    elif spec.loss == "softmax_cross_entropy":
        loss = -(y * torch.log_softmax(h, dim=-1)).sum(-1).mean()
    elif spec.loss == "bce_with_logits":
        loss = F.binary_cross_entropy_with_logits(h, y)
    else:
        loss = F.binary_cross_entropy(0.05 + 0.9 * torch.sigmoid(h), y)
    if spec.l2:
        loss = loss + 0.01 * (params["W0"] ** 2).sum()  # type: ignore[operator]
    return loss


@given(specs())
def test_random_networks_match_torch_autograd(spec: Spec) -> None:
    torch = pytest.importorskip("torch")
    graph = load_source(to_dlc(spec)).graph
    program = differentiate(graph)
    rng = np.random.default_rng(5)
    params = initial_params(graph.params, 5)
    data = sample_data(graph, 6, rng)
    names = list(program.grads)
    ours = evaluate([program.graph.loss, *program.grads.values()], {**params, **data})
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    loss = torch_loss(spec, tp, torch.tensor(data["x"]), torch.tensor(data["y"]))
    loss.backward()  # type: ignore[attr-defined]
    np.testing.assert_allclose(ours[0], loss.item(), rtol=1e-10, atol=1e-12)  # type: ignore[attr-defined]
    for name, g in zip(names, ours[1:], strict=True):
        np.testing.assert_allclose(g, tp[name].grad.numpy(), rtol=1e-8, atol=1e-10, err_msg=name)
