"""Initial parameter values, drawn with NumPy from a seed.

Matrices are [out, in] (math orientation), so fan-in is the last dimension
and fan-out the first; a convolution's kernel [O, C, *k] has fan-in C times
the window's size and fan-out O times it (PyTorch's rule). glorot draws
U(-a, a) with a = sqrt(6 / (fan_in + fan_out)), he draws N(0, 2 / fan_in).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from dlc.graph.nodes import Param


def initial_value(param: Param, rng: np.random.Generator, dtype: type = np.float64) -> np.ndarray:
    """One parameter's starting value, drawn from ``rng``."""
    kind, args, shape = param.init.kind, param.init.args, param.shape
    if kind == "zeros":
        value = np.zeros(shape)
    elif kind == "ones":
        value = np.ones(shape)
    elif kind == "constant":
        value = np.full(shape, args[0])
    elif kind == "normal":
        value = rng.normal(0.0, args[0], size=shape)
    elif kind == "uniform":
        value = rng.uniform(-args[0], args[0], size=shape)
    elif kind == "glorot":
        value = rng.uniform(-glorot_limit(shape), glorot_limit(shape), size=shape)
    elif kind == "he":
        value = rng.normal(0.0, he_scale(shape), size=shape)
    else:
        raise NotImplementedError(f"no initializer '{kind}'")
    return np.asarray(value, dtype=dtype)


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan-in, fan-out) of a matrix [out, in] or a kernel [O, C, *window]."""
    window = math.prod(shape[2:])
    return shape[1] * window, shape[0] * window


def glorot_limit(shape: tuple[int, ...]) -> float:
    return math.sqrt(6.0 / sum(fans(shape)))


def he_scale(shape: tuple[int, ...]) -> float:
    return math.sqrt(2.0 / fans(shape)[0])


def initial_params(params: Iterable[Param], seed: int = 0, dtype: type = np.float64) -> dict[str, np.ndarray]:
    """Starting values for all parameters, in declaration order, from one seeded generator."""
    rng = np.random.default_rng(seed)
    return {p.name: initial_value(p, rng, dtype) for p in params}
