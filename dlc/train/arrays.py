"""A model's examples in the form its compiled module takes them.

One input (or target) is one array ``[N, *shape]``; several are a dict of
such arrays by name, in declaration order; none is None. These helpers count,
slice and convert data in that form, whichever it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dlc.graph.nodes import Input

#: Examples as a module takes them: an array, a dict of arrays by name, or None.
Arrays = np.ndarray | dict[str, np.ndarray] | None


def module_form(leaves: Sequence[Input], arrays: dict[str, np.ndarray]) -> Arrays:
    """The arrays of ``leaves`` (inputs, or targets): None, the one array, or a dict by name."""
    if not leaves:
        return None
    if len(leaves) == 1:
        return arrays[leaves[0].name]
    return {n.name: arrays[n.name] for n in leaves}


def count(data: Arrays) -> int:
    """How many examples ``data`` holds (0 for None)."""
    if data is None:
        return 0
    if isinstance(data, dict):
        return len(next(iter(data.values())))
    return len(data)


def take(data: Arrays, rows: Any) -> Arrays:
    """The examples ``rows`` (indices or a slice) of ``data``."""
    if data is None:
        return None
    if isinstance(data, dict):
        return {k: v[rows] for k, v in data.items()}
    return data[rows]


def cast(data: Arrays, dtype: str) -> Arrays:
    """``data`` in ``dtype`` (without a copy where it already is)."""
    if data is None:
        return None
    if isinstance(data, dict):
        return {k: v.astype(dtype, copy=False) for k, v in data.items()}
    return data.astype(dtype, copy=False)


def first(data: Arrays) -> np.ndarray | None:
    """The array of a single input or target (the first of several)."""
    if isinstance(data, dict):
        return next(iter(data.values()))
    return data
