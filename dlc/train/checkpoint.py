"""Checkpoints: parameters, the optimizer's state and the epoch reached, in one .npz without pickles.

Keys are ``param/<name>``, ``state/<state>/<name>`` (each state of the
optimizer, per parameter), ``step`` (the optimizer's steps taken),
``optimizer`` (the call that chose it), ``epoch`` (the epochs completed,
a whole number from 0 to 2^31), ``model`` (its name) and ``fingerprint``: a
SHA-256 of what the model computes (:func:`fingerprint`). Loading checks the
fingerprint, so that a checkpoint of another model whose parameters happen
to have the same names and shapes is refused. A file without one (a plain
.npz of arrays named after the parameters, or a checkpoint of a dlc before
fingerprints) is accepted on names and shapes, with a note saying so.
Files are written atomically, so an interrupted save leaves the previous one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dlc.atomic import replacing
from dlc.errors import DlcError
from dlc.graph.graph import Graph
from dlc.graph.nodes import Constant, Input, Node, Param, typed_shape
from dlc.graph.printer import body_text, node_names
from dlc.train.npzfile import read_npz

#: The largest epoch a checkpoint may hold, as for whole-number settings.
MAX_EPOCH = 2**31


@dataclass
class Checkpoint:
    params: dict[str, np.ndarray]
    state: dict[str, Any]  # the optimizer's: {"step": steps taken, <state>: {<param>: array}}
    epoch: int  # epochs completed
    note: str | None = None  # a caveat found while loading it
    optimizer: str = ""  # the call that chose the optimizer, e.g. "adam(lr = 0.001)"


def fingerprint(graph: Graph) -> str:
    """A SHA-256 of what ``graph`` computes, in hex.

    It covers the inputs, targets and parameters (names and shapes), every
    operation with its shape, constants' values, the output and the loss. It
    leaves out what does not change the function: the model's name, names of
    intermediate values, initializers and the training section.
    """
    anonymous = replace(graph, names={})
    names = node_names(anonymous)
    digest = hashlib.sha256(b"dlc-model-1\n")
    leaves: list[Input | Param] = [*graph.data, *graph.params]
    for leaf in leaves:
        kind = f" class[{leaf.classes}]" if isinstance(leaf, Input) and leaf.classes else ""
        digest.update(f"{type(leaf).__name__} {leaf.name} {typed_shape(leaf)}{kind}\n".encode())
    for node in anonymous.nodes():
        if node.inputs or isinstance(node, Constant):
            digest.update(f"{names[node]} = {body_text(node, names)} : {typed_shape(node)}\n".encode())
        if isinstance(node, Constant):
            digest.update(np.ascontiguousarray(node.value, dtype=np.float64).tobytes())
    outputs: list[tuple[str, Node | None]] = [
        (f"output {k}" if graph.named_outputs else "output", v) for k, v in graph.outputs.items()
    ]
    roles = [*(outputs or [("output", None)]), ("loss", graph.loss)]
    for role, root in roles:
        digest.update(f"{role} {names[root] if root is not None else '-'}\n".encode())
    return digest.hexdigest()


def save(path: str | Path, checkpoint: Checkpoint, model: str, identity: str) -> None:
    """Write a checkpoint atomically; ``identity`` is the model's :func:`fingerprint`."""
    arrays = {f"param/{k}": v for k, v in checkpoint.params.items()}
    for name, values in checkpoint.state.items():
        if name != "step":
            arrays |= {f"state/{name}/{k}": v for k, v in values.items()}
    arrays["step"] = np.array(checkpoint.state.get("step", 0), dtype=np.int64)
    arrays["optimizer"] = np.array(checkpoint.optimizer)
    arrays["epoch"] = np.array(checkpoint.epoch, dtype=np.int64)
    arrays["model"] = np.array(model)
    arrays["fingerprint"] = np.array(identity)
    with replacing(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]


def load(path: str | Path, graph: Graph, dtype: str) -> Checkpoint:
    """Read a checkpoint (or a plain .npz of parameters by name) for ``graph``.

    Raises:
        DlcError: if the file is missing, not an .npz, holds pickles, was written
            for another model, or its parameters or epoch are not what the model needs.
    """
    names = [p.name for p in graph.params]
    optimizer = graph.train.optimizer
    states = optimizer.states if optimizer is not None else ()
    wanted = {"epoch", "model", "fingerprint", "step", "optimizer", *names}
    wanted |= {f"param/{n}" for n in names} | {f"state/{s}/{n}" for s in states for n in names}
    archive = read_npz(str(path), wanted, "the checkpoint")
    arrays = archive.arrays
    params = _section(arrays, "param/") or {k: v for k, v in arrays.items() if "/" not in k}
    _check(path, graph, params, "parameter", archive.held)
    note = _identity(path, graph, arrays)
    epoch = _epoch(path, arrays["epoch"]) if "epoch" in arrays else 0
    cast = {n: np.array(params[n], dtype=dtype) for n in names}
    state, fresh = _state(path, graph, arrays, archive.held, dtype)
    if fresh and epoch:
        call = optimizer.call if optimizer else "the optimizer"
        fresh = f"{path} holds no state of {call} ({fresh}): it starts from zeros"
        note = f"{note}; {fresh}" if note else fresh
    return Checkpoint(cast, state, epoch, note, str(arrays.get("optimizer", "")))


def _state(
    path: str | Path, graph: Graph, arrays: dict[str, np.ndarray], held: tuple[str, ...], dtype: str
) -> tuple[dict[str, Any], str | None]:
    """The optimizer's state in the file, or fresh zeros and why the file's is not taken."""
    optimizer = graph.train.optimizer
    states = optimizer.states if optimizer is not None else ()
    zeros = {s: {p.name: np.zeros(p.shape, dtype=dtype) for p in graph.params} for s in states}
    if "step" not in arrays:
        return {"step": 0, **zeros}, "it has no step count"
    stored = str(arrays.get("optimizer", ""))
    if optimizer is not None and stored != optimizer.call:
        return {"step": 0, **zeros}, f"it was saved training with {stored or 'another optimizer'}"
    state: dict[str, Any] = {"step": _whole(path, arrays["step"], "step")}
    for s in states:
        found = _section(arrays, f"state/{s}/")
        _check(path, graph, found, f"state '{s}' of", held)
        state[s] = {p.name: np.array(found[p.name], dtype=dtype) for p in graph.params}
    return state, None


def _identity(path: str | Path, graph: Graph, arrays: dict[str, np.ndarray]) -> str | None:
    """None if the file's fingerprint is the model's; a note if it has none; else an error."""
    stored = arrays.get("fingerprint")
    if stored is None:
        return (
            f"{path} carries no model fingerprint (a plain .npz, or written by an older dlc): "
            "only the names and shapes of its parameters were checked"
        )
    if stored.shape != () or stored.dtype.kind != "U" or str(stored) != fingerprint(graph):
        raise DlcError(
            f"{path} was saved for a different model: its parameters have the names and shapes "
            f"{graph.name} needs, but the two models compute different things (their fingerprints differ)",
            hint="train from the start; to start from these values on purpose, save them as a "
            "plain .npz of arrays named after the parameters",
        )
    return None


def _epoch(path: str | Path, stored: np.ndarray) -> int:
    """The stored epoch: one whole number from 0 to 2^31."""
    return _whole(path, stored, "epoch", MAX_EPOCH)


def _whole(path: str | Path, stored: np.ndarray, what: str, most: int = 2**62) -> int:
    value = stored.item() if stored.shape == () and stored.dtype.kind in "iuf" else None
    if value is None or not float(value).is_integer() or not 0 <= value <= most:
        shown = str(stored.tolist())[:40] if stored.size < 100 else f"an array of shape {list(stored.shape)}"
        bound = "2^31" if most == MAX_EPOCH else "2^62"
        raise DlcError(f"{path}: its {what} must be one whole number from 0 to {bound}, not {shown}")
    return int(value)


def _section(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


def _check(
    path: str | Path, graph: Graph, found: dict[str, np.ndarray], what: str, held: tuple[str, ...]
) -> None:
    for p in graph.params:
        if p.name not in found:
            raise DlcError(f"{path}: no {what} '{p.name}' (it holds: {', '.join(held) or 'nothing'})")
        value = found[p.name]
        if value.shape != p.shape:
            raise DlcError(
                f"{path}: {what} '{p.name}' has shape {list(value.shape)}, the model says {list(p.shape)}"
            )
        if value.dtype.kind not in "fiu":
            raise DlcError(f"{path}: {what} '{p.name}' is not numeric ({value.dtype})")
        if not np.all(np.isfinite(value)):
            raise DlcError(f"{path}: {what} '{p.name}' holds NaN or infinity")
