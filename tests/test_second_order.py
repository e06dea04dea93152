"""Hessian-vector products: compiled into both modules, against torch's double backward and differences.

A module compiled with ``hvp=True`` has ``hvp(params, X, Y, v)``: the
Hessian of the loss (in all parameters together) times the direction ``v``,
from the gradient graph differentiated once more.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

from dlc.backends.initializers import initial_params
from dlc.compiler import compile_model
from dlc.frontend import load_source
from dlc.gradcheck import check_hessian, sample_data

from .conftest import EXAMPLES, ROOT
from .test_numpy_backend import as_given
from .test_random_networks import Spec, specs, to_dlc, torch_loss

BACKENDS = ["numpy", "llvm"]


def torch_hvp(loss_of, params: dict[str, np.ndarray], v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """H v by torch: the gradient of <grad L, v>, through autograd twice."""
    import torch

    tp = {k: torch.tensor(a, requires_grad=True) for k, a in params.items()}
    grads = torch.autograd.grad(loss_of(tp), list(tp.values()), create_graph=True)
    inner = sum((g * torch.tensor(v[k])).sum() for g, k in zip(grads, tp, strict=True))
    second = torch.autograd.grad(inner, list(tp.values()), allow_unused=True)
    return {
        k: np.zeros_like(params[k]) if h is None else h.detach().numpy()
        for k, h in zip(tp, second, strict=True)
    }


@settings(max_examples=15)
@given(specs())
def test_random_networks_match_torch_double_backward(spec: Spec) -> None:
    torch = pytest.importorskip("torch")
    text = to_dlc(spec)
    graph = load_source(text).graph
    rng = np.random.default_rng(11)
    params = initial_params(graph.params, 11)
    data = sample_data(graph, 5, rng)
    v = {k: rng.normal(size=a.shape) for k, a in params.items()}
    want = torch_hvp(
        lambda tp: torch_loss(spec, tp, torch.tensor(data["x"]), torch.tensor(data["y"])), params, v
    )
    for backend in BACKENDS:
        got = compile_model(text, backend=backend, hvp=True).hvp(params, data["x"], data["y"], v)
        for k in params:
            scale = max(float(np.max(np.abs(want[k]), initial=0.0)), 1e-6)
            np.testing.assert_allclose(
                got[k], want[k], rtol=1e-9, atol=1e-10 * scale, err_msg=f"{backend} {k}"
            )


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_both_backends_give_the_same_products_for_every_example(path: Path) -> None:
    modules = [compile_model(path, backend=b, hvp=True) for b in BACKENDS]
    graph = load_source(path.read_text(), path=str(path)).graph
    rng = np.random.default_rng(3)
    params = {k: a + rng.normal(0, 0.1, a.shape) for k, a in initial_params(graph.params, 3).items()}
    data = sample_data(graph, 7, rng)
    X, Y = (as_given(leaves, data, "float64") for leaves in (graph.inputs, graph.targets))
    v = {k: rng.normal(size=a.shape) for k, a in params.items()}
    numpy_hv, native_hv = (m.hvp(params, X, Y, v) for m in modules)
    for k in params:
        scale = max(float(np.max(np.abs(numpy_hv[k]), initial=0.0)), 1e-12)
        np.testing.assert_allclose(native_hv[k], numpy_hv[k], rtol=1e-10, atol=1e-12 * scale, err_msg=k)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_passes_the_hessian_check(path: Path) -> None:
    result = check_hessian(load_source(path.read_text(), path=str(path)).graph, seed=1)
    assert result.passed, result


def test_a_hessian_through_abs_is_computed_not_a_delta() -> None:
    """abs' = sign, whose derivative SymPy gives as a DiracDelta: 0 wherever it is evaluated."""
    text = (
        "input x : [3]\ntarget y : [1]\nparam w : [1, 3] = normal(0.5)\n"
        "loss mse(abs(w @ x) * (w @ x), y) + sum(abs(w))\n"
    )
    result = check_hessian(load_source(text).graph, seed=2)
    assert result.passed, result
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(4, 3)), rng.normal(size=(4, 1))
    params, v = {"w": rng.normal(size=(1, 3))}, {"w": rng.normal(size=(1, 3))}

    def loss_of(tp: dict) -> object:
        z = torch.tensor(X) @ tp["w"].T
        return (((z.abs() * z) - torch.tensor(Y)) ** 2).mean() + tp["w"].abs().sum()

    want = torch_hvp(loss_of, params, v)
    for backend in BACKENDS:
        got = compile_model(text, backend=backend, hvp=True).hvp(params, X, Y, v)
        np.testing.assert_allclose(got["w"], want["w"], rtol=1e-10)


def test_hvp_checks_its_direction_like_the_parameters() -> None:
    X, Y = np.zeros((2, 2)), np.zeros((2, 1))
    for backend in BACKENDS:
        m = compile_model(ROOT / "examples" / "xor.dlc", backend=backend, hvp=True)
        p = m.init_params(0)
        with pytest.raises(ValueError, match=r"v\['W1'\] has shape \(2, 8\), expected \(8, 2\)"):
            m.hvp(p, X, Y, {**p, "W1": np.zeros((2, 8))})
        with pytest.raises(ValueError, match=r"v has no 'b2'"):
            m.hvp(p, X, Y, {k: a for k, a in p.items() if k != "b2"})
        plain = compile_model(ROOT / "examples" / "xor.dlc", backend=backend)
        with pytest.raises(NotImplementedError, match="compiled without Hessian-vector products"):
            plain.hvp(p, X, Y, p)


def test_dlc_check_hessian_and_compile_hvp_from_the_command_line(tmp_path: Path) -> None:
    def dlc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dlc", *args], capture_output=True, text=True, cwd=tmp_path
        )

    done = dlc("check", str(ROOT / "examples" / "seed_chain.dlc"), "--hessian")
    assert done.returncode == 0, done.stderr
    assert "Hessian check of" in done.stdout and done.stdout.count("passed:") == 2
    assert "d loss / d W2           64 of 256 elements, at random" in done.stdout
    assert dlc("compile", str(ROOT / "examples" / "xor.dlc"), "--hvp", "-o", "xor_hvp.py").returncode == 0
    assert "def hvp(params, X, Y, v):" in (tmp_path / "xor_hvp.py").read_text()


def test_a_probability_that_overflowed_has_a_zero_bce_gradient_not_nan() -> None:
    text = "target y : [1]\nparam a : [1] = constant(1)\nparam p : [1] = constant(1)\nloss bce(a * p, y)\n"
    for backend in BACKENDS:
        m = compile_model(text, backend=backend)
        for a, p in ((1e200, 1e300), (-1e200, 1e300), (1e5, 3.0)):
            with np.errstate(all="ignore"):
                _, grads = m.value_and_grad({"a": np.array([a]), "p": np.array([p])}, None, np.array([[1.0]]))
            assert all(np.all(g == 0) for g in grads.values()), (backend, a, p, grads)
