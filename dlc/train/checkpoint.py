"""Checkpoints: parameters, velocity and the epoch reached, in one .npz without pickles.

Keys are ``param/<name>``, ``velocity/<name>``, ``epoch`` and ``model``;
files are written atomically, so an interrupted save leaves the previous one.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlc.atomic import replacing
from dlc.errors import DlcError
from dlc.graph.graph import Graph


@dataclass
class Checkpoint:
    params: dict[str, np.ndarray]
    velocity: dict[str, np.ndarray]
    epoch: int  # epochs completed


def save(path: str | Path, checkpoint: Checkpoint, model: str) -> None:
    """Write a checkpoint atomically."""
    arrays = {f"param/{k}": v for k, v in checkpoint.params.items()}
    arrays |= {f"velocity/{k}": v for k, v in checkpoint.velocity.items()}
    arrays["epoch"] = np.array(checkpoint.epoch)
    arrays["model"] = np.array(model)
    with replacing(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]


def load(path: str | Path, graph: Graph, dtype: str) -> Checkpoint:
    """Read a checkpoint (or a plain .npz of parameters by name) for ``graph``.

    Raises:
        DlcError: if the file is missing, not an .npz, holds pickles, or its
            parameters do not match the model's names and shapes.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise DlcError(f"{path}: no such file") from None
    except ValueError as exc:  # object arrays need pickles, which are refused
        raise DlcError(f"{path}: cannot be read without unpickling ({exc}); dlc never unpickles") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DlcError(f"{path}: not a readable .npz file ({exc})") from None
    params = _section(arrays, "param/") or {k: v for k, v in arrays.items() if "/" not in k}
    velocity = _section(arrays, "velocity/")
    _check(path, graph, params, "parameter")
    if velocity:
        _check(path, graph, velocity, "velocity")
    else:
        velocity = {k: np.zeros_like(v) for k, v in params.items()}
    epoch = int(arrays["epoch"]) if "epoch" in arrays else 0
    cast = {k: np.array(params[p.name], dtype=dtype) for k, p in ((p.name, p) for p in graph.params)}
    return Checkpoint(cast, {k: np.array(velocity[k], dtype=dtype) for k in cast}, epoch)


def _section(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


def _check(path: str | Path, graph: Graph, found: dict[str, np.ndarray], what: str) -> None:
    for p in graph.params:
        if p.name not in found:
            raise DlcError(
                f"{path}: no {what} '{p.name}' (it holds: {', '.join(sorted(found)) or 'nothing'})"
            )
        value = found[p.name]
        if value.shape != p.shape:
            raise DlcError(
                f"{path}: {what} '{p.name}' has shape {list(value.shape)}, the model says {list(p.shape)}"
            )
        if value.dtype.kind not in "fiu":
            raise DlcError(f"{path}: {what} '{p.name}' is not numeric ({value.dtype})")
        if not np.all(np.isfinite(value)):
            raise DlcError(f"{path}: {what} '{p.name}' holds NaN or infinity")
