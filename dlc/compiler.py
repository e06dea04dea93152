"""The whole pipeline behind one call: model file -> module you can import.

``compile_model`` parses and checks the model, derives its gradients and
emits a backend's module, then loads it.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import types
from pathlib import Path

import numpy as np

from dlc.errors import DlcError
from dlc.files import check_regular, human_bytes
from dlc.frontend import Model, load, load_source
from dlc.graph.graph import Graph

BACKENDS = ("numpy", "llvm")
DTYPES = ("float64", "float32")


def read_model(path_or_source: str | Path, optimizer: str | None = None) -> Model:
    """A checked model from a file path or from model text.

    A ``Path`` is a path. A string is a path when it has no line break and
    either ends in ``.dlc`` or names something that exists; any other string
    is model text. So ``"missing.dlc"`` is a file that does not exist, never
    a model of one (wrong) line.

    ``optimizer``: an optimizer call that replaces the train block's (``"adam(lr = 3e-4)"``).

    Raises:
        DlcError: if the file cannot be read (missing, a folder, a pipe or a
            device) or the model has a mistake.
    """
    if isinstance(path_or_source, Path) or is_path(path_or_source):
        check_regular(path_or_source)
        model = load(path_or_source)
        return model if optimizer is None else load_source(model.source, model.path, optimizer)
    return load_source(path_or_source, optimizer=optimizer)


def is_path(text: str) -> bool:
    """Whether ``text`` (given where a path or a model's text may be) is a path; see :func:`read_model`."""
    if "\n" in text or "\r" in text:
        return False
    if text.strip().lower().endswith(".dlc"):
        return True
    try:
        return os.path.lexists(text)
    except (OSError, ValueError):  # too long for a name, or a NUL inside: text
        return False


def compile_source(model: Model, backend: str = "numpy", dtype: str = "float64", hvp: bool = False) -> str:
    """The source text of ``model``'s module for ``backend``.

    With ``hvp``, the module's ``hvp(params, X, Y, v)`` computes Hessian-vector
    products (the gradient graph is differentiated once more).

    Raises:
        DlcError: for an unknown backend or dtype.
    """
    from dlc.grad import differentiate, hessian_vector_program
    from dlc.grad.formulas import derive

    if backend not in BACKENDS:
        raise DlcError(f"unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    if dtype not in DTYPES:
        raise DlcError(f"unknown dtype '{dtype}'; choose one of {', '.join(DTYPES)}")
    program = hessian_vector_program(model.graph) if hvp else differentiate(model.graph)
    if backend == "numpy":
        from dlc.backends.numpy import write_module

        return write_module(program, derive(model.graph), dtype, Path(model.path).name)
    from dlc.backends.llvm import write_module as write_native
    from dlc.backends.llvm.scalar import UnsupportedError

    try:
        return write_native(program, derive(model.graph), dtype, Path(model.path).name)
    except UnsupportedError as exc:
        raise DlcError(str(exc), hint="the NumPy backend (--backend numpy) may compute it") from None


def memory_limit() -> int | None:
    """Bytes this process can have at most: the physical memory, or a lower address-space limit."""
    limits = []
    with contextlib.suppress(AttributeError, ValueError, OSError):
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            limits.append(soft)
    except (ImportError, AttributeError, ValueError, OSError):
        pass
    return min(limits) if limits else None


def check_memory(graph: Graph, dtype: str, copies: int, purpose: str) -> None:
    """Refuse early, saying how much is needed, when ``copies`` of the parameters cannot fit.

    Args:
        graph: the model.
        dtype: the precision of the copies.
        copies: how many arrays of the parameters' size the task holds at once.
        purpose: what needs them ("training"), for the message.

    Raises:
        DlcError: if they need more bytes than :func:`memory_limit`.
    """
    limit = memory_limit()
    values = sum(math.prod(p.shape) for p in graph.params)
    need = values * copies * np.dtype(dtype).itemsize
    if limit is None or need <= limit or not graph.params:
        return
    biggest = max(graph.params, key=lambda p: math.prod(p.shape))
    one = math.prod(biggest.shape) * np.dtype(dtype).itemsize
    raise DlcError(
        f"{purpose} needs at least {human_bytes(need)} of memory, but this machine has "
        f"{human_bytes(limit)}: {copies} copies of the parameters' {values:,} values in {dtype} "
        f"({biggest.name} : {list(biggest.shape)} alone is {human_bytes(one)})",
        hint="make the model smaller"
        + (", or use --dtype float32" if purpose == "training" and dtype == "float64" else ""),
    )


def out_of_memory(graph: Graph, dtype: str, purpose: str) -> DlcError:
    """The error for a MemoryError raised during ``purpose``, with the parameters' size."""
    values = sum(math.prod(p.shape) for p in graph.params)
    size = human_bytes(values * np.dtype(dtype).itemsize)
    return DlcError(
        f"{purpose} ran out of memory (the parameters alone are {values:,} values, {size} in {dtype}, "
        "and it keeps several copies of them)",
        hint="make the model, the data or --batch-size smaller",
    )


def load_module(source: str, name: str) -> types.ModuleType:
    """Execute a generated module's text (dlc's own output) as a fresh module."""
    module = types.ModuleType(name)
    module.__file__ = f"<dlc {name}>"
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # the text is dlc's own output
    return module


def compile_model(
    path_or_source: str | Path,
    backend: str = "numpy",
    dtype: str = "float64",
    hvp: bool = False,
    optimizer: str | None = None,
) -> types.ModuleType:
    """Compile a model (a file path or model text) and return the loaded module.

    Args:
        path_or_source: a ``.dlc`` file, or the text of a model (see :func:`read_model`
            for which strings are paths).
        backend: "numpy" (a NumPy module) or "llvm" (native code through LLVM).
        dtype: "float64" or "float32": the precision of all arrays.
        hvp: also compile Hessian-vector products (the module's ``hvp``).
        optimizer: the optimizer to train with instead of the model's, as a train block
            writes it: ``"adam(lr = 3e-4)"``.

    Returns:
        A module with ``init_params``, ``init_state``, ``predict``, ``loss``, ``value_and_grad``,
        ``train_step``, ``train``, ``hvp``, ``PARAM_SHAPES``, ``INPUT_SHAPE``,
        ``TARGET_SHAPE``, ``DTYPE`` and ``FORMULAS``.

    Raises:
        DlcError: for any mistake in the model or the options.
    """
    model = read_model(path_or_source, optimizer)
    source = compile_source(model, backend, dtype, hvp)
    module = load_module(source, f"dlc_{model.graph.name}")
    module.__dlc_source__ = source  # type: ignore[attr-defined]
    return module


__all__ = [
    "check_memory",
    "compile_model",
    "compile_source",
    "is_path",
    "memory_limit",
    "out_of_memory",
    "read_model",
    "sys",
]
