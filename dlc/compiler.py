"""The whole pipeline behind one call: model file -> module you can import.

``compile_model`` parses and checks the model, derives its gradients and
emits a backend's module, then loads it.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

from dlc.errors import DlcError
from dlc.frontend import Model, load, load_source

BACKENDS = ("numpy", "llvm")
DTYPES = ("float64", "float32")


def read_model(path_or_source: str | Path) -> Model:
    """A checked model from a file path or from model text (text has a line break or no such file)."""
    if isinstance(path_or_source, Path) or ("\n" not in path_or_source and Path(path_or_source).is_file()):
        return load(path_or_source)
    return load_source(path_or_source)


def compile_source(model: Model, backend: str = "numpy", dtype: str = "float64") -> str:
    """The source text of ``model``'s module for ``backend``.

    Raises:
        DlcError: for an unknown backend or dtype.
    """
    from dlc.grad import differentiate
    from dlc.grad.formulas import derive

    if backend not in BACKENDS:
        raise DlcError(f"unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    if dtype not in DTYPES:
        raise DlcError(f"unknown dtype '{dtype}'; choose one of {', '.join(DTYPES)}")
    program = differentiate(model.graph)
    if backend == "numpy":
        from dlc.backends.numpy import write_module

        return write_module(program, derive(model.graph), dtype, Path(model.path).name)
    from dlc.backends.llvm import write_module as write_native
    from dlc.backends.llvm.scalar import UnsupportedError

    try:
        return write_native(program, derive(model.graph), dtype, Path(model.path).name)
    except UnsupportedError as exc:
        raise DlcError(str(exc), hint="the NumPy backend (--backend numpy) may compute it") from None


def load_module(source: str, name: str) -> types.ModuleType:
    """Execute a generated module's text (dlc's own output) as a fresh module."""
    module = types.ModuleType(name)
    module.__file__ = f"<dlc {name}>"
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # the text is dlc's own output
    return module


def compile_model(
    path_or_source: str | Path, backend: str = "numpy", dtype: str = "float64"
) -> types.ModuleType:
    """Compile a model (a file path or model text) and return the loaded module.

    Args:
        path_or_source: a ``.dlc`` file, or the text of a model.
        backend: "numpy" (a NumPy module) or "llvm" (native code through LLVM).
        dtype: "float64" or "float32": the precision of all arrays.

    Returns:
        A module with ``init_params``, ``predict``, ``loss``, ``value_and_grad``,
        ``train_step``, ``train``, ``PARAM_SHAPES``, ``INPUT_SHAPE``,
        ``TARGET_SHAPE``, ``DTYPE`` and ``FORMULAS``.

    Raises:
        DlcError: for any mistake in the model or the options.
    """
    model = read_model(path_or_source)
    source = compile_source(model, backend, dtype)
    module = load_module(source, f"dlc_{model.graph.name}")
    module.__dlc_source__ = source  # type: ignore[attr-defined]
    return module


__all__ = ["compile_model", "compile_source", "read_model", "sys"]
