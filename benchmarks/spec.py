"""What is benchmarked: the model sizes, their start state and their data.

Everything about a network (layer widths, batch size, learning rate,
momentum) is read from its model file through dlc's compiled module, so the
peers train exactly the network the ``.dlc`` file describes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODELS = Path(__file__).parent / "models"
SIZES = ("tiny", "small", "medium", "large")
DTYPES = ("float32", "float64")
PARAM_SEED = 0
DATA_SEED = 1234


@dataclass(frozen=True)
class Spec:
    """One benchmark network: an MLP with tanh hidden layers and a softmax cross-entropy loss."""

    size: str
    path: Path
    dims: tuple[int, ...]  # (in, hidden..., out)
    batch: int
    lr: float
    momentum: float

    @property
    def layers(self) -> int:
        return len(self.dims) - 1

    @property
    def names(self) -> list[str]:
        """Parameter names in order W1, b1, W2, b2, ..."""
        return [f"{kind}{i}" for i in range(1, self.layers + 1) for kind in ("W", "b")]

    def describe(self) -> str:
        return f"{'-'.join(map(str, self.dims))}, batch {self.batch}"


def model_path(size: str) -> Path:
    return MODELS / f"mlp_{size}.dlc"


def load_spec(size: str, module: object | None = None) -> Spec:
    """The network of ``benchmarks/models/mlp_<size>.dlc``, read from its compiled module."""
    if module is None:
        module = reference_module(size, "float64")
    shapes = module.PARAM_SHAPES  # type: ignore[attr-defined]
    training = module.TRAINING  # type: ignore[attr-defined]
    # the optimizer's settings: SETTINGS, or (modules compiled before optimizers were formulas) TRAINING
    settings = getattr(module, "SETTINGS", training)
    layers = len(shapes) // 2
    dims = [shapes["W1"][1]] + [shapes[f"W{i}"][0] for i in range(1, layers + 1)]
    for i in range(1, layers + 1):  # the layout the peers assume
        assert shapes[f"W{i}"] == (dims[i], dims[i - 1]) and shapes[f"b{i}"] == (dims[i],), shapes
    return Spec(
        size=size,
        path=model_path(size),
        dims=tuple(dims),
        batch=int(training["batch_size"]),
        lr=float(settings["lr"]),
        momentum=float(settings["momentum"]),
    )


def reference_module(size: str, dtype: str) -> object:
    from dlc.compiler import compile_model

    return compile_model(model_path(size), backend="numpy", dtype=dtype)


def start_state(spec: Spec, dtype: str, module: object | None = None) -> tuple[dict, np.ndarray, np.ndarray]:
    """dlc's initial parameters (fixed seed) and one random batch with one-hot targets, in ``dtype``."""
    if module is None:
        module = reference_module(spec.size, "float64")
    params = module.init_params(PARAM_SEED)  # type: ignore[attr-defined]
    params = {k: np.asarray(v, dtype=dtype) for k, v in params.items()}
    rng = np.random.default_rng(DATA_SEED)
    X = rng.standard_normal((spec.batch, spec.dims[0]))
    labels = rng.integers(0, spec.dims[-1], size=spec.batch)
    Y = np.eye(spec.dims[-1])[labels]
    return params, X.astype(dtype), Y.astype(dtype)


def load_spec_from(data: object, size: str) -> Spec:
    """A Spec from the arrays ``run_probe`` saves (no dlc compile needed)."""
    return Spec(
        size=size,
        path=model_path(size),
        dims=tuple(int(d) for d in data["dims"]),  # type: ignore[index]
        batch=int(data["batch"]),  # type: ignore[index]
        lr=float(data["lr"]),  # type: ignore[index]
        momentum=float(data["momentum"]),  # type: ignore[index]
    )
