"""Models checked against torch float64 autograd: the loss and every gradient, at 1e-10.

A test file lists its cases (model text, the same network written with torch, and the
data of each case); :class:`TorchOracle` computes torch's values and checks the reference
evaluator's and a compiled module's against them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dlc.backends.reference import evaluate
from dlc.compiler import compile_model
from dlc.frontend import load_source
from dlc.grad import differentiate

Data = tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]


class TorchOracle:
    """``sources[name]``: a model with one input x and one target y; ``networks[name]`` the
    torch function of (params, x, y) giving its loss; ``data(name)``: (params, x, y)."""

    def __init__(
        self, torch: Any, sources: dict[str, str], networks: dict[str, Callable[..., Any]],
        data: Callable[[str], Data], rtol: float = 1e-10,
    ) -> None:  # fmt: skip
        self.torch, self.sources, self.networks, self.data, self.rtol = torch, sources, networks, data, rtol

    def values(self, name: str) -> tuple[float, dict[str, np.ndarray]]:
        """torch's loss and gradients, in float64."""
        params, x, y = self.data(name)
        tp = {k: self.torch.tensor(v, requires_grad=True) for k, v in params.items()}
        loss = self.networks[name](tp, self.torch.tensor(x), self.torch.tensor(y))
        loss.backward()
        return loss.item(), {k: v.grad.numpy() for k, v in tp.items()}

    def assert_matches(self, loss: float, grads: dict[str, np.ndarray], name: str) -> None:
        want_loss, want = self.values(name)
        np.testing.assert_allclose(loss, want_loss, rtol=self.rtol, atol=self.rtol / 100)
        assert set(grads) == set(want)
        for k, g in want.items():
            np.testing.assert_allclose(
                grads[k], g, rtol=self.rtol, atol=self.rtol / 100, err_msg=f"{name}: {k}"
            )

    def check_reference(self, name: str) -> None:
        """The reference evaluator's loss and gradients against torch's."""
        program = differentiate(load_source(self.sources[name]).graph)
        params, x, y = self.data(name)
        values = evaluate([program.graph.loss, *program.grads.values()], {**params, "x": x, "y": y})
        self.assert_matches(float(values[0]), dict(zip(program.grads, values[1:], strict=True)), name)

    def check_backend(self, name: str, backend: str) -> None:
        """A compiled module's loss and gradients against torch's."""
        module = compile_model(self.sources[name], backend=backend)
        params, x, y = self.data(name)
        loss, grads = module.value_and_grad(params, x, y)
        self.assert_matches(loss, grads, name)
