"""dlc: a symbolic differentiation compiler for neural networks.

The command line is ``dlc`` (:mod:`dlc.cli`); from Python, :func:`dlc.compiler.compile_model`
compiles a model, :func:`sweep` trains it over a grid of settings, and :func:`play` shows it
training live in the browser (inline in Jupyter).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def sweep(
    model: str | Path,
    grid: Mapping[str, Sequence[Any]] | Sequence[str] = (),
    *,
    seeds: int = 1,
    data: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    backend: str = "numpy",
    dtype: str = "float64",
    val_split: float = 0.0,
    workers: int | None = None,
    ray: str | None = None,
    out: str | Path = "sweep",
    resume: bool = False,
) -> Any:
    """Train ``model`` (a file, or model text) for every combination of ``grid`` and every seed.

    ``grid`` maps a setting to its values, ``{"lr": [0.01, 0.1], "optimizer": ["adam(lr = 1e-3)"]}``
    (numbers, or text in the model language), or is a list of ``"lr = 0.01, 0.1"`` texts, as
    ``dlc sweep --set`` takes them. The other arguments are ``dlc sweep``'s flags. Every run's
    results are kept in the folder ``out``.

    Returns:
        The table, one record per configuration (its settings, run counts, and the mean and
        sample standard deviation over seeds of final_loss, best_loss, accuracy, val_loss and
        val_accuracy), as a pandas DataFrame when pandas is installed, else a list of dicts.

    Raises:
        dlc.errors.DlcError: for a bad model, grid, option or data, before any run.
    """
    from dlc.compiler import read_model
    from dlc.sweeps.sweep import SweepOptions, run_sweep

    sets = _sets(grid)
    options = SweepOptions(
        sets=tuple(sets), seeds=seeds, data=data, epochs=epochs, batch_size=batch_size, backend=backend,
        dtype=dtype, val_split=val_split, workers=workers, ray=ray, out=Path(out), resume=resume,
    )  # fmt: skip
    outcome = run_sweep(read_model(model if isinstance(model, Path) else str(model)), options)
    if outcome.interrupted:
        raise KeyboardInterrupt
    records = [row.record() for row in outcome.rows]
    try:
        import pandas
    except ImportError:
        return records
    return pandas.DataFrame.from_records(records)


def play(
    model: str | Path,
    *,
    data: str | None = None,
    backend: str = "numpy",
    dtype: str = "float64",
    val_split: float = 0.0,
    port: int = 0,
) -> Any:
    """Serve ``model``'s live page (``dlc play``) from this process, on 127.0.0.1; in Jupyter the
    returned object shows the page inline. ``port`` 0 takes any free port.

    Returns:
        A handle with ``url``, ``session`` (the training: ``session.command("play")`` ...) and
        ``stop()``; a context manager that stops the server at its end.

    Raises:
        dlc.errors.DlcError: for a bad model, data or option, or a port in use.
    """
    from dlc.compiler import read_model
    from dlc.playground.run import PlayOptions, start

    options = PlayOptions(data=data, backend=backend, dtype=dtype, val_split=val_split, port=port)
    return start(read_model(model if isinstance(model, Path) else str(model)), options)


def _sets(grid: Any) -> list[str]:
    """The ``--set`` texts of a grid given as a mapping, a list of texts or one text."""
    if isinstance(grid, str):
        return [grid]
    if isinstance(grid, Mapping):
        for name, values in grid.items():
            if (
                not isinstance(name, str)
                or isinstance(values, (str, bytes))
                or not hasattr(values, "__iter__")
            ):
                example = "{'lr': [0.01, 0.1]}"
                raise TypeError(f"grid: a setting's name maps to a list of its values, as {example}, "
                                f"not {name!r}: {values!r}")  # fmt: skip
        return [f"{k} = {', '.join(map(_written, v))}" for k, v in grid.items()]
    if not hasattr(grid, "__iter__") or not all(isinstance(t, str) for t in grid):
        raise TypeError(
            f"grid is a mapping of settings to values, or a list of 'name = v1, v2' texts, not {grid!r}"
        )
    return list(grid)


def _written(value: Any) -> str:
    """A grid value as the model language writes it."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (int, float)):
        return repr(float(value)) if isinstance(value, float) else str(value)
    return str(value)
