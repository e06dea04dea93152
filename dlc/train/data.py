"""Training data for a model: built-in sets, CSV files and .npz archives.

:func:`load_data` reads a source and shapes it for the model: ``X`` is
``[N, *input shape]``, ``Y`` is ``[N, *target shape]``, both float64.
:func:`load_inputs` reads only the inputs (for ``dlc predict``).

Sources:

``builtin:NAME``
    a data set generated in code (:mod:`dlc.train.datasets`).
``FILE.csv``
    a header row naming the columns, then one row per example: numbers
    separated by commas. Blank lines are skipped and the last newline is
    optional. Columns are taken by position (the header's names are not used):

    - the first prod(input shape) columns are the input, in row-major order
      (for ``input x : [2, 3]``: x[0,0], x[0,1], x[0,2], x[1,0], ...);
    - the rest is the target: either prod(target shape) columns, row-major
      too, or, when the target is a class, one column of class labels
      0..k-1 (whole numbers). The target is a class when it is
      ``target y : [k]`` with k >= 2 (the label is one-hot encoded), or a
      single value trained with ``bce`` / ``bce_with_logits`` (the label must
      be 0 or 1 and is kept as it is).

    Any other number of columns is an error that names the counts that fit.
    For :func:`load_inputs` the input columns alone are enough; target
    columns, if present, are ignored.
``FILE.npz``
    arrays named after the model's input and target (``x``, ``y``), read
    without unpickling, each checked against the file's size before it is
    allocated (:mod:`dlc.train.npzfile`). Each is ``[N, ...]`` with the model's per-example
    shape, or the same number of values per example (reshaped row-major).
    A 1-D integer target array holds class labels and is converted as above.

A model with several inputs or targets, or a target of class indices
(``target label : class[k]``), reads its data in one way (:func:`_general`):
CSV columns in declaration order, the inputs and then the targets, each
flattened row-major, a class-index target as one column of labels 0..k-1;
from an .npz, one array per input and target, by its declared name; a
built-in set of named arrays (``builtin:two_heads``) likewise. ``X`` and
``Y`` are then as the module takes them (:mod:`dlc.train.arrays`): a dict
by name where there are several.

Only regular files are read (never a FIFO or a device such as /dev/zero);
a CSV file may hold at most 1 GiB (larger data belongs in an .npz).

Every problem raises :class:`~dlc.errors.DlcError`; errors in a CSV file carry
the line and column of the field at fault.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlc.errors import DlcError, Span
from dlc.graph.graph import Graph
from dlc.graph.nodes import Input, Loss
from dlc.train import datasets
from dlc.train.arrays import Arrays, module_form
from dlc.train.csvfile import Table, error, read_csv
from dlc.train.npzfile import Archive, read_npz

BUILTIN_PREFIX = "builtin:"
_BCE_KINDS = frozenset({"bce", "bce_logits"})


@dataclass(frozen=True)
class Dataset:
    """Examples shaped for a model.

    Attributes:
        X: float64 ``[N, *input shape]``, or None if the model has no input (a dict
            of such arrays by name when it has several).
        Y: float64 ``[N, *target shape]``, or None if the model has no target (a dict
            by name when it has several; ``[N]`` of class indices for a class target).
        name: where it came from: ``xor.csv``, ``builtin:spiral``.
        classes: the number of classes when the target is a class (one-hot
            rows of k >= 2, or a single 0/1 value), else None.
    """

    X: Arrays
    Y: Arrays
    name: str
    classes: int | None


def load_data(source: str, graph: Graph) -> Dataset:
    """Read the examples in ``source`` (``builtin:NAME``, ``*.csv``, ``*.npz``) for ``graph``.

    Raises:
        DlcError: if the source cannot be read or does not fit the model.
    """
    kind = _kind(source)
    if not _simple(graph) and (kind != "builtin" or len(graph.inputs) > 1 or len(graph.targets) > 1):
        X, Y = _general(source, kind, graph, inputs_only=False)
        return Dataset(X, Y, Path(source).name, None)
    if kind == "builtin":
        return _builtin_data(source, graph)
    if kind == "csv":
        return _csv_data(source, graph)
    return _npz_data(source, graph)


def load_inputs(source: str, graph: Graph) -> Arrays:
    """Read only the model's inputs from ``source``; a target there is ignored.

    Raises:
        DlcError: if the model has no input, or the source cannot be read or does not fit.
    """
    if not graph.inputs:
        raise DlcError(f"model {graph.name} has no input, so there is nothing to read from {source}")
    kind = _kind(source)
    if len(graph.inputs) > 1:
        return _general(source, kind, graph, inputs_only=True)[0]
    inp = graph.inputs[0]
    if kind == "builtin":
        data = datasets.builtin(source.removeprefix(BUILTIN_PREFIX))
        return _builtin_inputs(source, data, inp)
    if kind == "csv":
        table = read_csv(source)
        _check_columns(table, graph, inputs_only=True)
        return _rows(table.values[:, : _size(inp)], inp)
    return _npz_array(read_npz(source, [inp.name]), inp)


def _kind(source: str) -> str:
    if source.startswith(BUILTIN_PREFIX):
        return "builtin"
    suffix = Path(source).suffix.lower()
    if suffix in (".csv", ".npz"):
        return suffix[1:]
    raise DlcError(
        f"cannot tell what kind of data '{source}' is", hint="give builtin:NAME, a .csv or a .npz file"
    )


# ---------------------------------------------------------------- the model's side


def _describe(node: Input) -> str:
    shape = f"class[{node.classes}]" if node.classes else f"[{', '.join(map(str, node.shape))}]"
    return f"{node.role} {node.name} : {shape}"


def _one(leaves: tuple[Input, ...]) -> Input | None:
    """The one input (or target) of a model that has at most one."""
    assert len(leaves) <= 1, "a model of several inputs or targets reads its data in _general"
    return leaves[0] if leaves else None


def _simple(graph: Graph) -> bool:
    """A model of at most one input and one target, not a class index: read as it always was."""
    return len(graph.inputs) <= 1 and len(graph.targets) <= 1 and not any(t.classes for t in graph.targets)


def _size(node: Input | None) -> int:
    return math.prod(node.shape) if node is not None else 0


def _class_count(graph: Graph) -> int | None:
    """k when the target is a class: ``[k]`` with k >= 2, or one value under a bce loss."""
    target = _one(graph.targets)
    if target is None:
        return None
    if len(target.shape) == 1 and target.shape[0] >= 2:
        return target.shape[0]
    kinds = {n.kind for n in graph.nodes() if isinstance(n, Loss)}
    return 2 if _size(target) == 1 and kinds & _BCE_KINDS else None


def _rows(values: np.ndarray, node: Input) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float64).reshape(len(values), *node.shape)


def _fit(array: np.ndarray, node: Input, what: str, shapes: tuple[tuple[int, ...], ...] = ()) -> np.ndarray:
    """``array`` as ``[N, *node.shape]``, if it has that many values per example.

    The declared shape wins: any layout of the same number of values is read
    row-major (``[N, 64]`` or ``[N, 8, 8]`` for ``input x : [1, 8, 8]``),
    except images stored channels last (``[N, H, W, C]`` for a declared
    ``[C, H, W]``), which row-major order would scramble. ``shapes`` are the
    per-example shapes the source naturally has (a built-in set's), for the hint.
    """
    per_example = math.prod(array.shape[1:]) if array.ndim else -1
    if array.ndim == 0 or per_example != _size(node):
        has = f"{per_example} value{'s' * (per_example != 1)}"
        raise DlcError(
            f"{what} have shape {_show(array.shape[1:])} per example ({has}), "
            f"but the model declares {_describe(node)} ({_size(node)} values)",
            hint=_shape_hint(array.shape[1:], node, shapes),
        )
    _refuse_channels_last(array.shape[1:], node, what)
    return _rows(array, node)


def _show(shape: tuple[int, ...]) -> str:
    return f"[{', '.join(map(str, shape))}]"


def _shape_hint(held: tuple[int, ...], node: Input, shapes: tuple[tuple[int, ...], ...]) -> str | None:
    """What would fit: the source's own shapes, or the layouts of image data."""
    if shapes:
        return f"declare {node.role} {node.name} as " + " or ".join(map(_show, shapes))
    if len(node.shape) == 3 or len(held) >= 2:
        return (
            "images are [N, C, H, W] for a model input [C, H, W] (or [N, H, W] for [1, H, W] or [H, W]); "
            "any layout of as many values per example is read row-major"
        )
    return None


def _refuse_channels_last(held: tuple[int, ...], node: Input, what: str) -> None:
    """Channels last (``[H, W, C]``) where the model declares channels first (``[C, H, W]``)."""
    declared = node.shape
    if len(declared) < 2 or len(held) != len(declared) or declared[0] == 1 or held == declared:
        return
    if held != (*declared[1:], declared[0]):
        return
    axes = (0, len(held), *range(1, len(held)))
    raise DlcError(
        f"{what} have shape {_show(held)} per example, channels last, but the model declares "
        f"{_describe(node)}, channels first; reading it row-major would scramble the channels",
        hint=f"transpose the array: numpy.transpose(a, {axes})",
    )


def _bad_label(labels: np.ndarray, classes: int) -> int | None:
    """The index of the first label that is not a whole number in 0..classes-1, if any."""
    bad = (labels != np.round(labels)) | (labels < 0) | (labels >= classes)
    found = np.flatnonzero(bad)
    return int(found[0]) if found.size else None


def _label_problem(value: float, classes: int, target: Input) -> str:
    if value != round(value):
        return f"class label {value:g} is not a whole number"
    allowed = "0 or 1" if classes == 2 else f"0..{classes - 1}"
    return f"class label {value:g} is out of range: {_describe(target)} takes {allowed}"


def _encode(labels: np.ndarray, classes: int, target: Input) -> np.ndarray:
    """Checked labels as the target expects: one-hot rows, or a 0/1 value."""
    whole = labels.astype(np.int64)
    if _size(target) == 1:
        return _rows(whole, target)
    return _rows(np.eye(classes)[whole], target)


def _classes_of(Y: np.ndarray, graph: Graph) -> int | None:
    """The class count of numeric targets: one-hot rows of k >= 2, or 0/1 under a bce loss."""
    classes = _class_count(graph)
    if classes is None or not np.isin(Y, (0.0, 1.0)).all():
        return None
    if _size(_one(graph.targets)) == 1:
        return classes
    return classes if (Y.reshape(len(Y), -1).sum(axis=1) == 1).all() else None


# ---------------------------------------------------------------- built-in sets


def _builtin_data(source: str, graph: Graph) -> Dataset:
    data = datasets.builtin(source.removeprefix(BUILTIN_PREFIX))
    inp, target = _one(graph.inputs), _one(graph.targets)
    X = _builtin_inputs(source, data, inp) if inp is not None else None
    if target is None:
        return Dataset(X, None, source, None)
    if data.classes is None:
        return Dataset(X, _fit(data.target, target, f"{source}: the targets"), source, None)
    return Dataset(X, _builtin_labels(source, data, target), source, data.classes)


def _builtin_inputs(source: str, data: datasets.Builtin, inp: Input) -> np.ndarray:
    return _fit(data.X, inp, f"{source}: the inputs", data.shapes or (data.X.shape[1:],))


def _builtin_labels(source: str, data: datasets.Builtin, target: Input) -> np.ndarray:
    classes = data.classes
    assert classes is not None
    if target.classes == classes:
        return np.ascontiguousarray(data.target, dtype=np.float64)
    if (target.shape == (classes,) and not target.classes) or (classes == 2 and _size(target) == 1):
        return _encode(data.target, classes, target)
    fits = f"[{classes}] (one-hot)" + (" or [1] (0/1)" if classes == 2 else "")
    raise DlcError(
        f"{source} has {classes} classes, but the model declares {_describe(target)}",
        hint=f"declare the target as {fits}",
    )


# ---------------------------------------------------------------- CSV files


def _column_options(graph: Graph, inputs_only: bool) -> dict[int, str]:
    """The column counts a file may have, each with what its columns are."""
    inp, target = _one(graph.inputs), _one(graph.targets)
    head = [f"{_size(inp)} for {_describe(inp)}"] if inp is not None else []
    options = {_size(inp): head[0]} if inputs_only and inp is not None else {}
    if target is not None:
        both = [*head, f"{_size(target)} for {_describe(target)}"]
        options.setdefault(_size(inp) + _size(target), ", ".join(both))
        classes = _class_count(graph)
        if classes is not None:
            label = f"1 class label 0..{classes - 1} for {_describe(target)}"
            options.setdefault(_size(inp) + 1, ", ".join([*head, label]))
    elif not inputs_only:
        options.setdefault(_size(inp), head[0] if head else "nothing")
    return options


def _check_columns(table: Table, graph: Graph, inputs_only: bool = False) -> None:
    options = _column_options(graph, inputs_only)
    count = table.values.shape[1]
    if count in options:
        return
    expected = " or ".join(f"{n} ({what})" for n, what in options.items())
    line, text = table.header
    message = f"the file has {count} columns, but model {graph.name} reads {expected}"
    raise error(table.path, table.text, message, Span(line, 1, line, len(text) + 1))


def _csv_data(path: str, graph: Graph) -> Dataset:
    table = read_csv(path)
    _check_columns(table, graph)
    inp = _one(graph.inputs)
    name, n_in = Path(path).name, _size(inp)
    X = _rows(table.values[:, :n_in], inp) if inp is not None else None
    target = _one(graph.targets)
    if target is None:
        return Dataset(X, None, name, None)
    classes = _class_count(graph)
    if classes is None or table.values.shape[1] != n_in + 1:
        Y = _rows(table.values[:, n_in:], target)
        return Dataset(X, Y, name, _classes_of(Y, graph))
    labels = table.values[:, n_in]
    bad = _bad_label(labels, classes)
    if bad is not None:
        raise table.fielderror(_label_problem(float(labels[bad]), classes, target), bad, n_in)
    return Dataset(X, _encode(labels, classes, target), name, classes)


# ---------------------------------------------------------------- .npz archives


def _npz_raw(npz: Archive, node: Input) -> np.ndarray:
    """The array for ``node``, checked to be present, real numbers, finite, with examples."""
    where = f"{npz.path}: array '{node.name}'"
    if node.name not in npz.arrays:
        held = ", ".join(npz.held) or "nothing"
        raise DlcError(
            f"{npz.path} has no array '{node.name}' for the model's {_describe(node)}; it holds: {held}"
        )
    array = npz.arrays[node.name]
    if array.dtype.kind not in "biuf":
        raise DlcError(f"{where} is not numeric (dtype {array.dtype})")
    if array.ndim == 0 or len(array) == 0:
        raise DlcError(f"{where} holds no examples (shape {list(array.shape)})")
    finite = np.isfinite(array.reshape(len(array), -1)).all(axis=1)
    if not finite.all():
        raise DlcError(f"{where} holds NaN or infinity (example {int(np.flatnonzero(~finite)[0])})")
    return array


def _npz_array(npz: Archive, node: Input) -> np.ndarray:
    """The array for ``node``, checked and shaped ``[N, *node.shape]``."""
    return _fit(_npz_raw(npz, node), node, f"{npz.path}: array '{node.name}': the examples")


def _npz_data(path: str, graph: Graph) -> Dataset:
    inp, target = _one(graph.inputs), _one(graph.targets)
    npz = read_npz(path, [n.name for n in (inp, target) if n is not None])
    name = Path(path).name
    X = _npz_array(npz, inp) if inp is not None else None
    if target is None:
        return Dataset(X, None, name, None)
    raw = _npz_raw(npz, target)
    if inp is not None and X is not None and len(X) != len(raw):
        counts = f"'{inp.name}' has {len(X)} examples, but '{target.name}' has {len(raw)}"
        raise DlcError(f"{path}: array {counts}")
    classes = _class_count(graph)
    if classes is None or raw.ndim != 1 or raw.dtype.kind not in "iu":
        Y = _fit(raw, target, f"{path}: array '{target.name}': the examples")
        return Dataset(X, Y, name, _classes_of(Y, graph))
    bad = _bad_label(raw, classes)
    if bad is not None:
        problem = _label_problem(float(raw[bad]), classes, target)
        raise DlcError(f"{path}: array '{target.name}': {problem} (example {bad})")
    return Dataset(X, _encode(raw, classes, target), name, classes)


# ---------------------------------------------------------------- several inputs or targets


def _width(node: Input) -> int:
    """Columns of a CSV row: one class label, or the values of the shape."""
    return 1 if node.classes else _size(node)


def _general(source: str, kind: str, graph: Graph, inputs_only: bool) -> tuple[Arrays, Arrays]:
    """(X, Y) of any model: by declaration order (CSV) or by name (.npz, built-in); see the docstring."""
    leaves = graph.inputs if inputs_only else graph.data
    if kind == "builtin":
        data = datasets.builtin(source.removeprefix(BUILTIN_PREFIX))
        if data.named is None:
            raise DlcError(
                f"{source} has one input and one target, but model {graph.name} has "
                f"{len(graph.inputs)} inputs and {len(graph.targets)} targets",
                hint="give the data as a .csv or .npz file",
            )
        arrays = _general_npz(Archive(source, data.named, tuple(data.named)), leaves)
    elif kind == "csv":
        arrays = _general_csv(source, graph, leaves)
    else:
        arrays = _general_npz(read_npz(source, [n.name for n in leaves]), leaves)
    return module_form(graph.inputs, arrays), None if inputs_only else module_form(graph.targets, arrays)


def _general_csv(path: str, graph: Graph, leaves: tuple[Input, ...]) -> dict[str, np.ndarray]:
    table = read_csv(path)
    counts = {sum(map(_width, leaves)), sum(map(_width, graph.data))}
    if table.values.shape[1] not in counts:
        each = ", ".join(f"{_width(n)} for {_describe(n)}" for n in graph.data)
        line, text = table.header
        message = (f"the file has {table.values.shape[1]} columns, but model {graph.name} reads "
                   f"{' or '.join(map(str, sorted(counts)))} ({each})")  # fmt: skip
        raise error(table.path, table.text, message, Span(line, 1, line, len(text) + 1))
    arrays, column = {}, 0
    for node in leaves:
        block = table.values[:, column : column + _width(node)]
        if node.classes:
            bad = _bad_label(block[:, 0], node.classes)
            if bad is not None:
                raise table.fielderror(_label_problem(float(block[bad, 0]), node.classes, node), bad, column)
        arrays[node.name] = _rows(block, node)
        column += _width(node)
    return arrays


def _general_npz(npz: Archive, leaves: tuple[Input, ...]) -> dict[str, np.ndarray]:
    """The arrays of ``leaves`` by name (an .npz, or a built-in set of named arrays), checked."""
    path = npz.path
    arrays = {}
    for node in leaves:
        raw = _npz_raw(npz, node)
        where = f"{path}: array '{node.name}'"
        if node.classes:
            if raw.ndim != 1:
                raise DlcError(
                    f"{where} has shape {list(raw.shape)}, but {_describe(node)} takes one label per example"
                )
            bad = _bad_label(raw, node.classes)
            if bad is not None:
                raise DlcError(
                    f"{where}: {_label_problem(float(raw[bad]), node.classes, node)} (example {bad})"
                )
        arrays[node.name] = _fit(raw, node, f"{where}: the examples")
        first = leaves[0].name
        if len(arrays[node.name]) != len(arrays[first]):
            counts = f"'{first}' has {len(arrays[first])} examples, but '{node.name}' has {len(raw)}"
            raise DlcError(f"{path}: array {counts}")
    return arrays
