"""Convolution and pooling: values, gradients and Hessian-vector products against torch.

Each model uses a group of the new calls with strides, paddings (numbers, per axis, and
``same`` with an even kernel, whose extra element of padding goes after), and pooling
windows that overlap or leave elements out; the same network written with
torch.nn.functional (float64, autograd) is the oracle, for the reference evaluator and both
compiled backends. The data are random reals, so a max pooling window never ties (torch gives
a tie's gradient to one element, dlc shares it: see test_a_tie_in_max_pooling_is_shared).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from dlc.backends.llvm.kernels import Extent, View
from dlc.backends.llvm.tensor import gemm_plan, merge_letters
from dlc.compiler import compile_model
from dlc.frontend import load_source
from dlc.grad.formulas import derive

from .conftest import error_at
from .torch_oracle import TorchOracle

torch = pytest.importorskip("torch")
F = torch.nn.functional

CONV2D = """
input x : [2, 9, 8]
target y : [3]
param K : [4, 2, 3, 3] = he
param b : [4, 1, 1] = normal(0.1)
param K2 : [3, 4, 2, 2] = he
param V : [3, 12] = glorot
h = relu(conv2d(x, K, stride = [2, 1], padding = 1) + b)
m = max_pool2d(h, 2)
a = avg_pool2d(conv2d(h, K2, padding = same), 3, stride = 2, padding = 1)
k1 = conv1d(reshape(m, [4, 8]), K2[:, :, 0, :], stride = 2)
z = V @ flatten(k1) + sum(a)
loss softmax_cross_entropy(z, y)
"""


def conv2d_torch(p: dict[str, Any], x: Any, y: Any) -> Any:
    h = F.relu(F.conv2d(x, p["K"], stride=(2, 1), padding=1) + p["b"])
    m = F.max_pool2d(h, 2)
    a = F.avg_pool2d(F.conv2d(F.pad(h, (0, 1, 0, 1)), p["K2"]), 3, stride=2, padding=1)
    k1 = F.conv1d(m.reshape(-1, 4, 8), p["K2"][:, :, 0, :], stride=2)
    z = k1.reshape(len(x), -1) @ p["V"].T + a.sum(dim=(1, 2, 3))[:, None]
    return -(y * torch.log_softmax(z, -1)).sum(-1).mean()


POOL1D = """
input x : [3, 11]
target y : []
param K : [2, 3, 4] = glorot
param P : [2, 7] = normal(1)
q = conv1d(x, K, padding = same)
r = max_pool1d(tanh(q), 3, stride = 2, padding = 1)
s = avg_pool1d(q * q, 2)
t = conv1d(P, K[:, 0:2, :], padding = [2])
loss mse(sum(r) + sum(s * s) + sum(t), y)
"""


def pool1d_torch(p: dict[str, Any], x: Any, y: Any) -> Any:
    q = F.conv1d(F.pad(x, (1, 2)), p["K"])
    r = F.max_pool1d(torch.tanh(q), 3, stride=2, padding=1)
    s = F.avg_pool1d(q * q, 2)
    t = F.conv1d(p["P"][None], p["K"][:, 0:2, :], padding=2)
    pred = r.sum(dim=(1, 2)) + (s * s).sum(dim=(1, 2)) + t.sum()
    return ((pred - y) ** 2).mean()


STRIDED = """
input x : [1, 10, 10]
target y : [2]
param K1 : [3, 1, 3, 3] = he
param K2 : [5, 3, 2, 3] = he
param W : [2, 20] = glorot
c = conv2d(sigmoid(conv2d(x, K1, stride = 2, padding = [1, 2])), K2, stride = [1, 2])
p = max_pool2d(c, [2, 1], stride = [2, 1])
loss mse(W @ flatten(p), y)
"""


def strided_torch(p: dict[str, Any], x: Any, y: Any) -> Any:
    c = F.conv2d(torch.sigmoid(F.conv2d(x, p["K1"], stride=2, padding=(1, 2))), p["K2"], stride=(1, 2))
    q = F.max_pool2d(c, (2, 1), stride=(2, 1))
    return ((q.reshape(len(x), -1) @ p["W"].T - y) ** 2).mean()


CASES: dict[str, tuple[str, Callable[..., Any]]] = {
    "conv2d": (CONV2D, conv2d_torch),
    "pool1d": (POOL1D, pool1d_torch),
    "strided": (STRIDED, strided_torch),
}


def case_data(name: str) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    graph = load_source(CASES[name][0]).graph
    rng = np.random.default_rng(11)
    params = {p.name: rng.normal(size=p.shape) for p in graph.params}
    (x,), (y,) = graph.inputs, graph.targets
    X, Y = rng.normal(size=(5, *x.shape)), rng.uniform(size=(5, *y.shape))
    if name == "conv2d":
        Y /= Y.sum(axis=1, keepdims=True)
    return params, X, Y


ORACLE = TorchOracle(
    torch, {k: c[0] for k, c in CASES.items()}, {k: c[1] for k, c in CASES.items()}, case_data
)


@pytest.mark.parametrize("name", list(CASES))
def test_the_reference_evaluator_matches_torch(name: str) -> None:
    ORACLE.check_reference(name)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("name", list(CASES))
def test_both_backends_match_torch(name: str, backend: str) -> None:
    ORACLE.check_backend(name, backend)


@pytest.mark.parametrize("name", list(CASES))
def test_the_backends_agree_in_float32(name: str) -> None:
    params, x, y = case_data(name)
    single = {k: v.astype(np.float32) for k, v in params.items()}
    found = []
    for backend in ("numpy", "llvm"):
        module = compile_model(CASES[name][0], backend=backend, dtype="float32")
        found.append(module.value_and_grad(single, x.astype(np.float32), y.astype(np.float32)))
    (loss_a, grads_a), (loss_b, grads_b) = found
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-5)
    for k in grads_a:
        scale = np.abs(grads_a[k]).max()
        np.testing.assert_allclose(grads_a[k], grads_b[k], rtol=1e-4, atol=1e-5 * scale, err_msg=k)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_hessian_vector_products_match_torch(backend: str) -> None:
    """Second derivatives go through the windows too (Fold's rule is Unfold's)."""
    module = compile_model(CASES["strided"][0], backend=backend, hvp=True)
    params, x, y = case_data("strided")
    v = {k: np.random.default_rng(3).normal(size=a.shape) for k, a in params.items()}
    found = module.hvp(params, x, y, v)
    names = list(params)

    def loss(*flat: Any) -> Any:
        return strided_torch(dict(zip(names, flat, strict=True)), torch.tensor(x), torch.tensor(y))

    _, want = torch.autograd.functional.hvp(
        loss, tuple(torch.tensor(params[k]) for k in names), tuple(torch.tensor(v[k]) for k in names)
    )
    for k, w in zip(names, want, strict=True):
        np.testing.assert_allclose(found[k], w.numpy(), rtol=1e-9, atol=1e-11, err_msg=k)


def test_a_tie_in_max_pooling_is_shared() -> None:
    """Two equal maxima in a window share its gradient evenly (as max() of a tensor does)."""
    source = "input x : [1, 2, 2]\ntarget y : []\nparam w : [] = ones\nloss mse(sum(max_pool2d(w * x, 2)), y)"
    x, y = np.array([[[[1.0, 3.0], [3.0, 2.0]]]]), np.array([0.0])
    for backend in ("numpy", "llvm"):
        _, grads = compile_model(source, backend=backend).value_and_grad({"w": np.array(1.0)}, x, y)
        # d/dw (w * 3)^2 = 2 * 3 * 3: both 3s are winners, each gets half of d/dmax = 6, times x = 3
        np.testing.assert_allclose(grads["w"], 18.0, err_msg=backend)


def test_max_pooling_pads_with_minus_infinity() -> None:
    """A window that hangs over the edge takes its max from x alone, even when x is negative."""
    source = (
        "input x : [1, 3]\ntarget y : [1, 2]\nparam w : [] = ones\n"
        "output max_pool1d(w * x, 2, padding = 1)\nloss mse(max_pool1d(w * x, 2, padding = 1), y)"
    )
    x = np.array([[[-5.0, -7.0, -1.0]]])
    for backend in ("numpy", "llvm"):
        module = compile_model(source, backend=backend)
        np.testing.assert_array_equal(
            module.predict({"w": np.array(1.0)}, x), [[[-5.0, -1.0]]], err_msg=backend
        )


def test_a_convolution_is_one_matrix_product_for_the_whole_batch() -> None:
    """The windows' positions merge with the batch, and channels with kernel offsets: one gemm."""
    null = View(ir_null(), (0,))

    def plan(spec: str, sizes: dict[str, int], strides: list[tuple[int, ...]]) -> object:
        lhs, out = spec.split("->")
        subs = lhs.split(",")
        letters = list(dict.fromkeys(out + "".join(subs)))
        space = [Extent(1, True) if c == "B" else Extent(sizes[c]) for c in letters]
        views = [View(null.ptr, s) for s in strides]
        subs, out, letters, space, (_, *operands) = merge_letters(subs, out, letters, space, views)
        return gemm_plan(subs, out, operands, letters, space)

    # conv2d of [2, 9, 9] by [4, 2, 3, 3]: windows [7, 7, 2, 3, 3], product [7, 7, 4]; letters B h w o c i j
    sizes = {"h": 7, "w": 7, "c": 2, "i": 3, "j": 3, "o": 4}
    out = (196, 28, 4, 1, 0, 0, 0)
    windows = (882, 126, 18, 0, 9, 3, 1)
    kernel = (0, 0, 0, 18, 9, 3, 1)
    found = plan("Bhwcij,ocij->Bhwo", sizes, [out, windows, kernel])
    assert found is not None
    assert (found.m, found.n, found.k) == (Extent(49, True), Extent(4), Extent(18))  # type: ignore[attr-defined]


def ir_null() -> Any:
    from llvmlite import ir

    return ir.Constant(ir.PointerType(), None)


# ----------------------------------------------------------------- the formulas


def test_dlc_grad_shows_convolutions_and_their_gradients_as_calls() -> None:
    text = derive(load_source(CASES["conv2d"][0]).graph).text()
    for fragment in (
        "conv2d(x, K, stride = [2, 1], padding = 1)",
        "m = max_pool2d(h, 2)",
        "avg_pool2d(z₃, 3, stride = 2, padding = 1)",
        "conv_transpose2d(δ₃, K₂",
        "max_pool2d_backward(δ_m, h, 2)",
        "∂L/∂K = Σ_b conv2d_weight(x, δ₁, stride = [2, 1], padding = 1)",
        "conv1d_weight(u₁, δ_k1, stride = 2)",
    ):
        assert fragment in text, fragment
    assert "unfold" not in text and "fold(" not in text and "einsum" not in text


# ----------------------------------------------------------------- initial values


def test_he_and_glorot_take_a_kernels_fans_as_pytorch_does() -> None:
    module = compile_model(
        "input x : [3, 8, 8]\ntarget y : [40, 6, 6]\nparam K : [40, 3, 3, 3] = he\n"
        "param G : [40, 3, 3, 3] = glorot\nloss mse(conv2d(x, K) + conv2d(x, G), y)",
        backend="numpy",
    )
    p = module.init_params(0)
    fan_in, fan_out = 3 * 9, 40 * 9
    assert abs(p["K"].std() / np.sqrt(2 / fan_in) - 1) < 0.1
    limit = np.sqrt(6 / (fan_in + fan_out))
    assert np.abs(p["G"]).max() <= limit and np.abs(p["G"]).max() > 0.95 * limit


# ----------------------------------------------------------------- errors


HEAD = "input x : [2, 8, 8]\ninput v : [64]\ntarget y : []\nparam K : [4, 2, 3, 3] = he\n"


@pytest.mark.parametrize(
    ("line", "at", "fragment"),
    [
        ("loss mse(sum(conv2d(v, K)), y)", "v,", "conv2d takes x : [C, H, W] (channels first), not [64]"),
        ("loss mse(sum(conv2d(x, K[:, 0:1])), y)", "K[", "reads 1 channel, but x : [2, 8, 8] has 2"),
        ("loss mse(sum(conv2d(x, K[0])), y)", "K[", "conv2d takes K : [O, C, kh, kw], not [2, 3, 3]"),
        ("loss mse(sum(conv1d(x, K)), y)", "x,", "conv1d takes x : [C, L]"),
        ("loss mse(sum(conv2d(x[:, 0:2], K)), y)", "conv2d", "(2 + 2*0 - 3) / 1 + 1 = 0"),
        ("loss mse(sum(conv2d(x, K, stride = 0)), y)", "0)", "stride must be at least 1"),
        ("loss mse(sum(conv2d(x, K, stride = [1, 2, 3])), y)", "[1", "needs 2 numbers, one per axis, not 3"),
        (
            "loss mse(sum(conv2d(x, K, stride = 2, padding = same)), y)",
            "same",
            "padding = same needs stride 1",
        ),
        ("loss mse(sum(conv2d(x, K, padding = 1.5)), y)", "1.5", "must be a whole number"),
        ("loss mse(sum(max_pool2d(x, 4, padding = 3)), y)", "3)", "padding must be at most half the window"),
        ("loss mse(sum(max_pool2d(x, 9)), y)", "max_pool2d", "(8 + 2*0 - 9) / 9 + 1"),
        ("loss mse(sum(avg_pool2d(x, 0)), y)", "0)", "the window must be at least 1"),
        ("loss mse(sum(conv2d(x, K, padding = wide)), y)", "wide", "undefined name 'wide'"),
        ("loss mse(sum(conv2d(x, K, stride = 99999999999)), y)", "conv2d", "no input is that large"),
        (
            "loss mse(sum(conv2d(x, K, padding = 40000)), y)",
            "conv2d",
            "would take 1.2e+11 elements per example ([80006, 80006] positions of 2 channels by 3x3)",
        ),
        ("same = 2\nloss mse(sum(conv2d(x, K, padding = same)) + same, y)", "same)", "both a value"),
    ],
)
def test_a_bad_call_is_a_positioned_error(line: str, at: str, fragment: str) -> None:
    err = error_at(HEAD + line)
    assert fragment in str(err), str(err)
    text = str(err)
    row = 5 + line.count("\n")
    column = line.split("\n")[-1].index(at) + 1
    assert f":{row}:{column}:" in text and "^" in text, text


def test_a_flat_input_gets_a_hint_to_reshape() -> None:
    err = error_at(HEAD + "loss mse(sum(conv2d(v, K)), y)")
    assert "reshape(x, [1, 8, 8])" in str(err)


def test_he_refuses_a_vector_still() -> None:
    err = error_at("input x : [3]\ntarget y : []\nparam w : [3] = he\nloss mse(sum(w * x), y)")
    assert "kernels [O, C, ...]" in str(err)


def test_the_kernel_profile_accounts_for_every_kernel_of_a_step(tmp_path: Any) -> None:
    from benchmarks import kernels

    model = tmp_path / "small.dlc"
    model.write_text(CASES["strided"][0])
    rows = kernels.profile(str(model), "train_step", batch=4, steps=2, dtype="float64")
    assert abs(sum(share for _, share, _ in rows) - 1) < 1e-9
    described = " ".join(what for _, _, what in rows)
    assert "conv2d(" in described and "fold" in described


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_images_of_another_shape_get_a_hint_to_reshape(backend: str) -> None:
    module = compile_model(CASES["strided"][0], backend=backend)
    params = module.init_params(0)
    for flat in (np.zeros((3, 100)), np.zeros((3, 10, 10))):
        with pytest.raises(ValueError, match=r"expected \(B, 1, 10, 10\).*X\.reshape\(-1, 1, 10, 10\)"):
            module.predict(params, flat)


def test_a_flattened_map_of_the_wrong_size_is_blamed_on_the_layers_not_the_weight() -> None:
    err = error_at(
        "input x : [1, 7, 8]\ntarget y : [3]\nparam K : [4, 1, 3, 3] = he\nparam V : [3, 30] = he\n"
        "loss mse(V @ flatten(max_pool2d(conv2d(x, K), 2)), y)"
    )
    assert "the flattened [4, 2, 3] has 24 elements, but V reads 30: declare it [3, 24]" in str(err)
    assert "did you mean" not in str(err)


def test_a_numpy_module_refuses_a_batch_its_arrays_cannot_fit_in_memory() -> None:
    """Windows multiply memory (im2col): a batch that cannot fit is a MemoryError before any work,
    in every entry point that takes a batch, not the process killed by the system."""
    module = compile_model(CASES["strided"][0], backend="numpy")
    assert module.MEMORY_PER_EXAMPLE >= 8 * (5 * 6 * 1 * 3 * 3)  # at least the first windows, float64
    assert compile_model(CASES["strided"][0], backend="llvm").MEMORY_PER_EXAMPLE == 0  # sized natively
    params, x, y = case_data("strided")
    module._CHECK.memory_per_example = 2**50  # as if each example needed a PiB
    calls = {
        "loss": lambda: module.loss(params, x, y),
        "value_and_grad": lambda: module.value_and_grad(params, x, y),
        "train_step": lambda: module.train_step(params, module.init_state(params), x, y),
        "train": lambda: module.train(params, x, y, epochs=1),
    }
    for name, call in calls.items():
        with pytest.raises(MemoryError, match=r"a batch of \d+ examples needs about .* GiB"):
            call()
            pytest.fail(f"{name} took a batch that does not fit")
    module._CHECK.memory_per_example = 8  # a small need is not even looked at
    module.loss(params, x, y)
