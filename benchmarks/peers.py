"""The implementations of one training step that the benchmark compares, one class each.

Every peer trains the same network (``Spec``) the same way: forward pass,
mean softmax cross-entropy over the batch, gradient, then heavy-ball momentum
in place, v <- mu*v - lr*g; w <- w + v (dlc's convention, written out by
hand for every peer). dlc's two modules (NumPy, LLVM) are implementations
like the others here; the NumPy module is the cross-check's reference.

The life of a peer: ``build()`` (everything done once per network: dlc
compiles its model file, PyTensor builds and compiles its graph, JAX wraps
its step in ``jax.jit``), ``load(params, X, Y)`` (copy in a start state,
velocity zero), then ``step()`` any number of times (returns the batch loss
as a Python float, which also waits for asynchronous work to finish) and
``state()`` (the parameters as float64 NumPy arrays, for the cross-check).
"""

from __future__ import annotations

import importlib
import os
from typing import ClassVar

import numpy as np

from benchmarks.spec import Spec


class Peer:
    key: ClassVar[str]
    label: ClassVar[str]
    module: ClassVar[str]  # the library it needs

    def __init__(self, spec: Spec, dtype: str) -> None:
        self.spec = spec
        self.dtype = dtype
        self.lr = spec.lr
        self.mu = spec.momentum

    @classmethod
    def missing(cls) -> str | None:
        """Why this peer cannot run here, or None."""
        try:
            importlib.import_module(cls.module)
        except Exception as exc:  # ImportError, or a broken install
            return f"{cls.module} not importable ({type(exc).__name__}: {exc})"
        return None

    @classmethod
    def version(cls) -> str:
        return str(getattr(importlib.import_module(cls.module), "__version__", "?"))

    @classmethod
    def warm_library(cls) -> None:
        """A trivial use of the library, so one-time initialisation is not billed to the first step."""

    def build(self) -> None:
        pass

    def load(self, params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> None:
        raise NotImplementedError

    def step(self) -> float:
        raise NotImplementedError

    def state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def state_dtype(self) -> str:
        return str(next(iter(self.state_raw().values())).dtype)

    def state_raw(self) -> dict:
        raise NotImplementedError


class NumpyState(Peer):
    """Parameters and velocity as NumPy arrays in a dict (dlc's layout)."""

    def load(self, params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> None:
        self.params = {k: np.array(v, dtype=self.dtype) for k, v in params.items()}
        self.velocity = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.X = np.array(X, dtype=self.dtype)
        self.Y = np.array(Y, dtype=self.dtype)

    def state_raw(self) -> dict:
        return self.params

    def state(self) -> dict[str, np.ndarray]:
        return {k: np.array(v, dtype=np.float64) for k, v in self.params.items()}  # a copy


class Dlc(NumpyState):
    key = "dlc"
    label = "dlc (NumPy module)"
    module = "dlc.compiler"

    @classmethod
    def version(cls) -> str:
        from importlib.metadata import version

        return version("dlc")

    @classmethod
    def warm_library(cls) -> None:
        from dlc.compiler import compile_model

        compile_model("param w : [] = zeros\nloss (w - 3) ** 2\n")

    def build(self) -> None:
        from dlc.compiler import compile_model

        self.mod = compile_model(self.spec.path, backend="numpy", dtype=self.dtype)

    def load(self, params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> None:
        """As NumpyState's, with the module's own optimizer state ({"step": 0, "velocity": zeros})."""
        self.params = {k: np.array(v, dtype=self.dtype) for k, v in params.items()}
        self.train_state = self.mod.init_state(self.params)
        self.X = np.array(X, dtype=self.dtype)
        self.Y = np.array(Y, dtype=self.dtype)

    def step(self) -> float:
        return self.mod.train_step(
            self.params, self.train_state, self.X, self.Y, lr=self.lr, momentum=self.mu, nesterov=False
        )


class DlcLlvm(Dlc):
    """dlc's LLVM module: the whole step (forward, backward, update in place) is one native call.

    Its first step JIT-compiles the module's IR (or loads the machine code
    from the disk cache, ``DLC_CACHE_DIR``; the benchmark switches the cache
    off so that "to first step" is a cold compile).
    """

    key = "llvm"
    label = "dlc (LLVM)"
    module = "llvmlite.binding"

    @classmethod
    def warm_library(cls) -> None:
        from dlc.compiler import compile_model

        mod = compile_model("param w : [] = zeros\nloss (w - 3) ** 2\n", backend="llvm")
        mod.loss(mod.init_params(0), None, None)  # initialises LLVM's native target once per process

    def build(self) -> None:
        from dlc.compiler import compile_model

        self.mod = compile_model(self.spec.path, backend="llvm", dtype=self.dtype)


class HandNumpy(NumpyState):
    """The network written out by hand: the obvious efficient NumPy code."""

    key = "numpy"
    label = "NumPy by hand"
    module = "numpy"

    def step(self) -> float:
        p, v, X, Y = self.params, self.velocity, self.X, self.Y
        n, B = self.spec.layers, X.shape[0]
        hs = [X]  # the input of every layer
        for i in range(1, n):
            h = hs[-1] @ p[f"W{i}"].T
            h += p[f"b{i}"]
            np.tanh(h, out=h)
            hs.append(h)
        z = hs[-1] @ p[f"W{n}"].T
        z += p[f"b{n}"]
        m = z.max(axis=1, keepdims=True)
        e = np.exp(z - m)
        s = e.sum(axis=1, keepdims=True)
        loss = float(np.mean(np.log(s[:, 0]) + m[:, 0] - (Y * z).sum(axis=1)))
        delta = e
        delta /= s  # softmax
        delta -= Y
        delta /= B  # dL/dz = (p - Y) / B
        grads = {}
        for i in range(n, 0, -1):
            h = hs[i - 1]
            grads[f"W{i}"] = delta.T @ h
            grads[f"b{i}"] = delta.sum(axis=0)
            if i > 1:
                delta = delta @ p[f"W{i}"]
                delta *= 1 - h * h  # tanh' = 1 - tanh^2
        for k, g in grads.items():
            v[k] *= self.mu
            g *= self.lr
            v[k] -= g
            p[k] += v[k]
        return loss


class Torch(Peer):
    key = "torch"
    label = "PyTorch eager"
    module = "torch"

    @classmethod
    def warm_library(cls) -> None:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        x = torch.ones(4, 4, requires_grad=True)
        torch.autograd.grad(torch.tanh(x @ x).sum(), [x])

    def build(self) -> None:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        self.tdtype = getattr(torch, self.dtype)

    def load(self, params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> None:
        import torch

        self.params = [
            torch.tensor(np.asarray(params[k]), dtype=self.tdtype).requires_grad_() for k in self.spec.names
        ]
        self.velocity = [torch.zeros_like(w) for w in self.params]
        self.X = torch.tensor(np.asarray(X), dtype=self.tdtype)
        self.Y = torch.tensor(np.asarray(Y), dtype=self.tdtype)

    def step(self) -> float:
        import torch
        import torch.nn.functional as F  # noqa: N812 (the usual name)

        p, n = self.params, self.spec.layers
        h = self.X
        for i in range(n - 1):
            h = torch.tanh(F.linear(h, p[2 * i], p[2 * i + 1]))
        z = F.linear(h, p[-2], p[-1])
        loss = F.cross_entropy(z, self.Y)  # probability targets; mean over the batch
        grads = torch.autograd.grad(loss, p)
        with torch.no_grad():
            for w, v, g in zip(p, self.velocity, grads, strict=True):
                v.mul_(self.mu).add_(g, alpha=-self.lr)  # v <- mu*v - lr*g
                w.add_(v)
        return loss.item()

    def state_raw(self) -> dict:
        return dict(zip(self.spec.names, self.params, strict=True))

    def state_dtype(self) -> str:
        return str(self.params[0].dtype).removeprefix("torch.")

    def state(self) -> dict[str, np.ndarray]:
        return {k: w.detach().numpy().astype(np.float64, copy=True) for k, w in self.state_raw().items()}


class Jax(Peer):
    key = "jax"
    label = "JAX (jit)"
    module = "jax"

    @classmethod
    def warm_library(cls) -> None:
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)
        jax.jit(lambda a: jnp.tanh(a) * 2)(jnp.ones(3)).block_until_ready()

    def build(self) -> None:
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)  # else float64 arrays silently become float32
        n, lr, mu = self.spec.layers, self.lr, self.mu

        def loss_fn(params: dict, X: jax.Array, Y: jax.Array) -> jax.Array:
            h = X
            for i in range(1, n):
                h = jnp.tanh(h @ params[f"W{i}"].T + params[f"b{i}"])
            z = h @ params[f"W{n}"].T + params[f"b{n}"]
            return jnp.mean(jax.nn.logsumexp(z, axis=1) - jnp.sum(Y * z, axis=1))

        def step(params: dict, velocity: dict, X: jax.Array, Y: jax.Array) -> tuple:
            loss, grads = jax.value_and_grad(loss_fn)(params, X, Y)
            velocity = jax.tree.map(lambda v, g: mu * v - lr * g, velocity, grads)
            params = jax.tree.map(lambda w, v: w + v, params, velocity)
            return params, velocity, loss

        # Donating params and velocity lets XLA update their buffers in place.
        self.fn = jax.jit(step, donate_argnums=(0, 1))

    def load(self, params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> None:
        import jax.numpy as jnp

        self.params = {k: jnp.array(params[k], dtype=self.dtype) for k in self.spec.names}
        self.velocity = {k: jnp.zeros_like(w) for k, w in self.params.items()}
        self.X = jnp.array(X, dtype=self.dtype)
        self.Y = jnp.array(Y, dtype=self.dtype)

    def step(self) -> float:
        self.params, self.velocity, loss = self.fn(self.params, self.velocity, self.X, self.Y)
        return float(loss)  # waits for the step: all outputs of one executable are ready together

    def state_raw(self) -> dict:
        return self.params

    def state(self) -> dict[str, np.ndarray]:
        return {k: np.array(w, dtype=np.float64) for k, w in self.params.items()}


class PyTensor(Peer):
    key = "pytensor"
    label = "PyTensor"
    module = "pytensor"

    @classmethod
    def warm_library(cls) -> None:
        import pytensor
        import pytensor.tensor as pt

        x = pt.dvector("x")
        pytensor.function([x], pt.tanh(x).sum())(np.ones(3))

    def build(self) -> None:
        import pytensor
        import pytensor.tensor as pt

        dt, n = self.dtype, self.spec.layers
        shapes = {f"W{i}": (self.spec.dims[i], self.spec.dims[i - 1]) for i in range(1, n + 1)}
        shapes |= {f"b{i}": (self.spec.dims[i],) for i in range(1, n + 1)}
        self.shared = {k: pytensor.shared(np.zeros(shapes[k], dt), name=k) for k in self.spec.names}
        self.vshared = {k: pytensor.shared(np.zeros(shapes[k], dt), name="v" + k) for k in self.spec.names}
        X, Y = pt.matrix("X", dtype=dt), pt.matrix("Y", dtype=dt)
        p = self.shared
        h = X
        for i in range(1, n):
            h = pt.tanh(h @ p[f"W{i}"].T + p[f"b{i}"])
        z = h @ p[f"W{n}"].T + p[f"b{n}"]
        loss = pt.mean(pt.logsumexp(z, axis=1) - pt.sum(Y * z, axis=1))
        grads = pytensor.grad(loss, [p[k] for k in self.spec.names])
        lr, mu = pt.constant(np.asarray(self.lr, dt)), pt.constant(np.asarray(self.mu, dt))
        updates = []
        for k, g in zip(self.spec.names, grads, strict=True):
            v_new = mu * self.vshared[k] - lr * g
            updates += [(self.vshared[k], v_new), (p[k], p[k] + v_new)]
        self.fn = pytensor.function([X, Y], loss, updates=updates)

    def load(self, params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> None:
        for k in self.spec.names:
            self.shared[k].set_value(np.array(params[k], dtype=self.dtype))
            self.vshared[k].set_value(np.zeros_like(self.shared[k].get_value(borrow=True)))
        self.X = np.array(X, dtype=self.dtype)
        self.Y = np.array(Y, dtype=self.dtype)

    def step(self) -> float:
        return float(self.fn(self.X, self.Y))

    def state_raw(self) -> dict:
        return {k: s.get_value(borrow=True) for k, s in self.shared.items()}

    def state(self) -> dict[str, np.ndarray]:
        return {k: np.array(w, dtype=np.float64) for k, w in self.state_raw().items()}

    @classmethod
    def linker(cls) -> str:
        from pytensor.compile.mode import get_default_mode

        return type(get_default_mode().linker).__name__


PEERS: dict[str, type[Peer]] = {p.key: p for p in (Dlc, DlcLlvm, HandNumpy, Torch, Jax, PyTensor)}
