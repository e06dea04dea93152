"""The data layer of ``dlc train``: built-in sets, CSV files, .npz archives, and their errors."""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from dlc.errors import DlcError
from dlc.frontend import load_source
from dlc.graph.graph import Graph
from dlc.train import datasets
from dlc.train.data import load_data, load_inputs

REGRESSION = "input x : [2]\ntarget y : [1]\nparam W : [1, 2] = glorot\nloss mse(W @ x, y)\n"
BINARY = "input x : [2]\ntarget y : [1]\nparam W : [1, 2] = glorot\nloss bce_with_logits(W @ x, y)\n"
THREE = "input x : [2]\ntarget y : [3]\nparam W : [3, 2] = glorot\nloss softmax_cross_entropy(W @ x, y)\n"
TWO = "input x : [2]\ntarget y : [2]\nparam W : [2, 2] = glorot\nloss softmax_cross_entropy(W @ x, y)\n"
MATRIX = "input x : [2, 2]\ntarget y : [2]\nparam W : [2, 2] = glorot\nloss mse(sum(W * x, 1), y)\n"
SINE = "input x : [1]\ntarget y : [1]\nparam W : [1, 1] = glorot\nloss mse(W @ x, y)\n"
DIGITS = (
    "input x : [64]\ntarget y : [10]\nparam W : [10, 64] = glorot\nloss softmax_cross_entropy(W @ x, y)\n"
)
NO_TARGET = "input x : [2]\nparam W : [1, 2] = glorot\nloss sum((W @ x) ** 2)\n"


@cache
def graph(source: str) -> Graph:
    return load_source(source).graph


def write(tmp_path: Path, text: str | bytes, name: str = "data.csv") -> str:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, newline="")
    return str(path)


def error_of(source: str, model: str, inputs_only: bool = False) -> DlcError:
    with pytest.raises(DlcError) as info:
        (load_inputs if inputs_only else load_data)(source, graph(model))
    return info.value


# ---------------------------------------------------------------- built-in sets


@pytest.mark.parametrize(
    ("name", "count", "per_class"),
    [("xor", 4, [2, 2]), ("spiral", 400, [200, 200]), ("points", 400, [200, 200])],
)
def test_binary_builtins_have_their_shape_and_balance(name: str, count: int, per_class: list[int]) -> None:
    data = load_data(f"builtin:{name}", graph(BINARY))
    assert data.X is not None and data.Y is not None
    assert (data.X.shape, data.Y.shape, data.X.dtype, data.Y.dtype) == ((count, 2), (count, 1), "f8", "f8")
    assert (data.name, data.classes) == (f"builtin:{name}", 2)
    assert set(np.unique(data.Y)) == {0.0, 1.0}
    assert np.bincount(data.Y[:, 0].astype(int)).tolist() == per_class
    again = load_data(f"builtin:{name}", graph(BINARY))
    assert again.X is not None and again.Y is not None
    assert np.array_equal(data.X, again.X) and np.array_equal(data.Y, again.Y)


def test_xor_is_the_four_corners() -> None:
    data = load_data("builtin:xor", graph(BINARY))
    assert data.X is not None and data.Y is not None
    assert data.X.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert data.Y[:, 0].tolist() == [0, 1, 1, 0]


def test_class_labels_become_one_hot_for_a_vector_target() -> None:
    data = load_data("builtin:spiral", graph(TWO))
    assert data.Y is not None and data.Y.shape == (400, 2)
    assert (data.Y.sum(axis=1) == 1).all() and data.classes == 2
    binary = load_data("builtin:spiral", graph(BINARY)).Y
    assert binary is not None and np.array_equal(data.Y[:, 1:], binary)


def test_two_classes_fit_a_single_value_under_mse_too() -> None:
    data = load_data("builtin:xor", graph(REGRESSION))
    assert data.Y is not None and data.Y[:, 0].tolist() == [0, 1, 1, 0] and data.classes == 2


def test_points_are_linearly_separable_with_a_margin() -> None:
    data = load_data("builtin:points", graph(BINARY))
    assert data.X is not None and data.Y is not None
    turned = data.X @ np.array([np.cos(np.pi / 6), np.sin(np.pi / 6)])  # the first turned coordinate
    assert np.abs(turned).min() >= 0.1
    assert np.array_equal(turned > 0, data.Y[:, 0] == 1)


def test_spiral_radius_grows_and_the_noise_is_small() -> None:
    data = load_data("builtin:spiral", graph(BINARY))
    assert data.X is not None
    radius = np.hypot(data.X[:, 0], data.X[:, 1])
    assert 0.0 < radius.min() < 0.25 and 1.0 < radius.max() < 1.3


def test_regression_is_a_noisy_sine() -> None:
    data = load_data("builtin:regression", graph(SINE))
    assert data.X is not None and data.Y is not None
    assert (data.X.shape, data.Y.shape, data.classes) == ((256, 1), (256, 1), None)
    assert data.X.min() >= -3 and data.X.max() <= 3
    residual = data.Y - np.sin(data.X)
    assert 0.0 < np.abs(residual).max() < 0.3
    again = load_data("builtin:regression", graph(SINE)).Y
    assert again is not None and np.array_equal(data.Y, again)


def test_digits_come_from_scikit_learn() -> None:
    pytest.importorskip("sklearn")
    data = load_data("builtin:digits", graph(DIGITS))
    assert data.X is not None and data.Y is not None
    assert (data.X.shape, data.Y.shape, data.classes) == ((1797, 64), (1797, 10), 10)
    assert data.X.min() == 0.0 and data.X.max() == 1.0
    counts = data.Y.sum(axis=0)
    assert counts.min() >= 170 and counts.max() <= 190


def test_digits_without_scikit_learn_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    err = error_of("builtin:digits", DIGITS)
    assert "needs scikit-learn" in err.message and err.hint == "pip install scikit-learn"


def test_a_model_without_target_gets_no_targets() -> None:
    data = load_data("builtin:spiral", graph(NO_TARGET))
    assert data.X is not None and data.X.shape == (400, 2)
    assert (data.Y, data.classes) == (None, None)


def test_builtin_inputs_alone() -> None:
    X = load_inputs("builtin:spiral", graph(THREE))  # the labels would not fit, but are not read
    assert X.shape == (400, 2)


def test_builtin_class_count_must_fit_the_target() -> None:
    err = error_of("builtin:spiral", THREE)
    assert err.message == "builtin:spiral has 2 classes, but the model declares target y : [3]"
    assert err.hint == "declare the target as [2] (one-hot) or [1] (0/1)"


def test_builtin_input_shape_must_fit() -> None:
    err = error_of("builtin:regression", REGRESSION)
    assert err.message == (
        "builtin:regression: the inputs have shape [1] per example (1 value), "
        "but the model declares input x : [2] (2 values)"
    )
    assert err.hint == "declare input x as [1]"


def test_unknown_builtin_suggests_a_name() -> None:
    err = error_of("builtin:spirals", BINARY)
    assert "unknown built-in data set 'builtin:spirals'" in err.message
    assert err.hint == "did you mean builtin:spiral?"
    assert "did you mean" not in (error_of("builtin:zzzz", BINARY).hint or "")


def test_unknown_source_kind(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "x\n1\n", "data.txt"), BINARY)
    assert "cannot tell what kind of data" in err.message and "builtin:NAME" in (err.hint or "")


def test_builtins_table_is_complete() -> None:
    assert set(datasets.BUILTINS) == {"xor", "spiral", "points", "regression", "digits", "chars", "two_heads"}


# ---------------------------------------------------------------- CSV: reading


def test_csv_numeric_target_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "a,b,y\n1,2,3.5\n-1e-2, .5 ,+4\n")
    data = load_data(path, graph(REGRESSION))
    assert data.X is not None and data.Y is not None
    assert data.X.tolist() == [[1, 2], [-0.01, 0.5]] and data.Y.tolist() == [[3.5], [4]]
    assert (data.name, data.classes) == ("data.csv", None)


def test_csv_label_column_is_one_hot_encoded(tmp_path: Path) -> None:
    data = load_data(write(tmp_path, "a,b,label\n0,0,2\n1,1,0\n2,2,1.0\n"), graph(THREE))
    assert data.Y is not None and data.Y.tolist() == [[0, 0, 1], [1, 0, 0], [0, 1, 0]]
    assert data.classes == 3


def test_csv_one_hot_columns_count_as_classes(tmp_path: Path) -> None:
    data = load_data(write(tmp_path, "a,b,c0,c1,c2\n0,0,0,0,1\n1,1,1,0,0\n"), graph(THREE))
    assert data.Y is not None and data.Y.shape == (2, 3) and data.classes == 3
    soft = load_data(write(tmp_path, "a,b,c0,c1,c2\n0,0,0.2,0.3,0.5\n"), graph(THREE))
    assert soft.classes is None


def test_csv_binary_label_is_kept_as_0_or_1(tmp_path: Path) -> None:
    data = load_data(write(tmp_path, "a,b,y\n0,0,0\n0,1,1\n"), graph(BINARY))
    assert data.Y is not None and data.Y.tolist() == [[0], [1]] and data.classes == 2


def test_csv_input_is_reshaped_row_major(tmp_path: Path) -> None:
    data = load_data(write(tmp_path, "x00,x01,x10,x11,y0,y1\n1,2,3,4,5,6\n"), graph(MATRIX))
    assert data.X is not None and data.X.tolist() == [[[1, 2], [3, 4]]]
    assert data.Y is not None and data.Y.tolist() == [[5, 6]]


def test_csv_blank_lines_crlf_bom_and_no_final_newline(tmp_path: Path) -> None:
    text = "\ufeffa,b,y\r\n\r\n1,2,0\r\n   \r\n3,4,1"
    data = load_data(write(tmp_path, text), graph(BINARY))
    assert data.X is not None and data.X.tolist() == [[1, 2], [3, 4]]


def test_csv_without_target_for_a_model_without_target(tmp_path: Path) -> None:
    data = load_data(write(tmp_path, "a,b\n1,2\n"), graph(NO_TARGET))
    assert data.Y is None and data.X is not None and data.X.shape == (1, 2)


@pytest.mark.parametrize("text", ["a,b\n1,2\n", "a,b,y\n1,2,1\n", "a,b,y0,y1,y2\n1,2,0,1,0\n"])
def test_csv_inputs_with_or_without_targets(tmp_path: Path, text: str) -> None:
    X = load_inputs(write(tmp_path, text), graph(THREE))
    assert X.tolist() == [[1, 2]]


# ---------------------------------------------------------------- CSV: errors

CSV_ERRORS = [
    # (text, model, line, column, caret width, message)
    ("", BINARY, 1, 1, 1, "the file is empty"),
    ("\n  \n\n", BINARY, 1, 1, 1, "the file is empty"),
    ("1,2,3\n4,5,6\n", BINARY, 1, 1, 5, "the first row holds numbers, not column names"),
    ("a,b,y\n\n", BINARY, 1, 1, 5, "the file has a header but no data rows"),
    ("a,b,y\n1,2,0,9\n", BINARY, 2, 7, 1, "this row has 4 fields, but the header has 3"),
    ("a,b,y\n1,2\n3,4,1\n", BINARY, 2, 4, 1, "this row has 2 fields, but the header has 3"),
    ("a,b,y\n1,2,0\n3,4", BINARY, 3, 4, 1, "the file ends in the middle of a row: it has 2 of 3 fields"),
    ("a,b,y\n1, 2x ,0\n", BINARY, 2, 4, 2, "'2x' is not a number"),
    ("a,b,y\n1,1_0,0\n", BINARY, 2, 3, 3, "'1_0' is not a number"),
    ("a,b,y\n1,,0\n", BINARY, 2, 3, 1, "empty field: expected a number"),
    ("a,b,y\n1,2,0\n1,NaN,0\n", BINARY, 3, 3, 3, "'NaN' is not a finite number"),
    ("a,b,y\n-inf,2,0\n", BINARY, 2, 1, 4, "'-inf' is not a finite number"),
    ("a,b,y\n1e999,2,0\n", BINARY, 2, 1, 5, "1e999 is too large for a 64-bit float"),
    ("a,b,y\n1,2,0\n1,2,5\n", THREE, 3, 5, 1, "class label 5 is out of range: target y : [3] takes 0..2"),
    ("a,b,y\n1,2,-1\n", THREE, 2, 5, 2, "class label -1 is out of range"),
    ("a,b,y\n1,2,0.5\n", THREE, 2, 5, 3, "class label 0.5 is not a whole number"),
    ("a,b,y\n1,2,2\n", BINARY, 2, 5, 1, "class label 2 is out of range: target y : [1] takes 0 or 1"),
    (
        "a,b,c,d\n1,2,3,4\n",
        THREE,
        1,
        1,
        7,
        "the file has 4 columns, but model model reads 5 (2 for input x : [2], 3 for target y : [3])"
        " or 3 (2 for input x : [2], 1 class label 0..2 for target y : [3])",
    ),
    ("a,b\n1,2\n", REGRESSION, 1, 1, 3, "reads 3 (2 for input x : [2], 1 for target y : [1])"),
]


@pytest.mark.parametrize(("text", "model", "line", "column", "width", "message"), CSV_ERRORS)
def test_csv_errors_point_at_the_spot(
    tmp_path: Path, text: str, model: str, line: int, column: int, width: int, message: str
) -> None:
    path = write(tmp_path, text)
    rendered = error_of(path, model).render().split("\n")
    assert rendered[0].startswith(f"{path}:{line}:{column}: error: ")
    assert message in rendered[0]
    source_line = text.lstrip("\ufeff").split("\n")[line - 1].rstrip("\r")
    assert rendered[1] == "    " + source_line
    assert rendered[2] == "    " + " " * (column - 1) + "^" + "~" * (width - 1)


def test_csv_truncation_gives_a_hint(tmp_path: Path) -> None:
    assert error_of(write(tmp_path, "a,b,y\n1,2,0\n3,"), BINARY).hint == "the file looks truncated"


def test_csv_missing_header_gives_a_hint(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "1,2,0\n"), BINARY)
    assert err.hint == "add a first line naming the 3 columns, such as x1,x2,y"


def test_csv_that_is_not_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, b"a,b,y\n1,\xff,0\n")
    rendered = error_of(path, BINARY).render()
    assert rendered.startswith(f"{path}:2:3: error: the file is not valid UTF-8 text")


def test_csv_missing_or_unreadable_file(tmp_path: Path) -> None:
    missing = error_of(str(tmp_path / "nope.csv"), BINARY)
    assert missing.message == f"cannot read {tmp_path / 'nope.csv'}: No such file or directory"
    assert missing.span is None
    (tmp_path / "dir.csv").mkdir()
    assert error_of(str(tmp_path / "dir.csv"), BINARY).message.startswith("cannot read")


def test_csv_inputs_with_a_wrong_column_count(tmp_path: Path) -> None:
    path = write(tmp_path, "a,b,c,d\n1,2,3,4\n")
    rendered = error_of(path, REGRESSION, inputs_only=True).render()
    assert rendered.startswith(f"{path}:1:1: error: the file has 4 columns, but model model reads 2 (")
    assert "or 3 (2 for input x : [2], 1 for target y : [1])" in rendered


def test_inputs_of_a_model_without_input() -> None:
    model = "target y : [1]\nparam b : [1] = zeros\nloss mse(b, y)\n"
    assert "has no input" in error_of("builtin:xor", model, inputs_only=True).message


# ---------------------------------------------------------------- .npz archives


def npz(tmp_path: Path, **arrays: np.ndarray) -> str:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return str(path)


def test_npz_arrays_by_name(tmp_path: Path) -> None:
    path = npz(tmp_path, x=np.arange(6.0).reshape(3, 2), y=np.array([[0.5], [1.5], [2.5]]), extra=np.ones(2))
    data = load_data(path, graph(REGRESSION))
    assert data.X is not None and data.Y is not None
    assert data.X.shape == (3, 2) and data.Y.tolist() == [[0.5], [1.5], [2.5]]
    assert (data.name, data.classes) == ("data.npz", None)


def test_npz_integer_labels_become_one_hot(tmp_path: Path) -> None:
    data = load_data(npz(tmp_path, x=np.zeros((3, 2), np.float32), y=np.array([2, 0, 1])), graph(THREE))
    assert data.Y is not None and data.Y.tolist() == [[0, 0, 1], [1, 0, 0], [0, 1, 0]]
    assert data.classes == 3 and data.X is not None and data.X.dtype == np.float64


def test_npz_binary_labels_and_reshaping(tmp_path: Path) -> None:
    path = npz(tmp_path, x=np.arange(4).reshape(2, 2, 1), y=np.array([1, 0]))
    binary = load_data(path, graph(BINARY))
    assert binary.Y is not None and binary.Y.tolist() == [[1], [0]] and binary.classes == 2
    matrix = load_data(npz(tmp_path, x=np.arange(8).reshape(2, 4), y=np.ones((2, 2))), graph(MATRIX))
    assert matrix.X is not None and matrix.X[1].tolist() == [[4, 5], [6, 7]]


def test_npz_inputs_alone(tmp_path: Path) -> None:
    assert load_inputs(npz(tmp_path, x=np.ones((4, 2))), graph(BINARY)).shape == (4, 2)


def test_npz_that_is_not_a_zip(tmp_path: Path) -> None:
    path = write(tmp_path, "a,b\n1,2\n", "data.npz")
    assert error_of(path, BINARY).message == f"{path} is not a .npz archive (it is not a zip file)"


def test_npz_missing(tmp_path: Path) -> None:
    path = str(tmp_path / "none.npz")
    assert error_of(path, BINARY).message == f"cannot read {path}: No such file or directory"


def test_npz_truncated(tmp_path: Path) -> None:
    path = npz(tmp_path, x=np.ones((50, 2)), y=np.ones((50, 1)))
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])
    assert "is not a .npz archive" in error_of(path, BINARY).message


def test_npz_damaged_member(tmp_path: Path) -> None:
    path = npz(tmp_path, x=np.ones((50, 2)), y=np.ones((50, 1)))
    data = bytearray(Path(path).read_bytes())
    start = data.index(b"\x93NUMPY")  # the first member's header: spoil it
    data[start : start + 6] = b"garbag"
    Path(path).write_bytes(bytes(data))
    message = error_of(path, BINARY).message
    assert message.startswith(f"{path}: array 'x'") or "not a readable .npz archive" in message


def test_npz_without_the_array(tmp_path: Path) -> None:
    path = npz(tmp_path, inputs=np.ones((2, 2)), y=np.ones((2, 1)))
    err = error_of(path, BINARY)
    assert err.message == f"{path} has no array 'x' for the model's input x : [2]; it holds: inputs, y"


def test_npz_refuses_pickles(tmp_path: Path) -> None:
    path = npz(tmp_path, x=np.array([{"a": 1}, None], dtype=object), y=np.ones((2, 1)))
    message = error_of(path, BINARY).message
    assert f"{path}: array 'x' holds Python objects" in message and "refuses pickles" in message


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.array([["a", "b"]]), "y": np.ones((1, 1))}, "array 'x' is not numeric (dtype <U1)"),
        ({"x": np.ones((2, 2)) * 1j, "y": np.ones((2, 1))}, "array 'x' is not numeric (dtype complex128)"),
        ({"x": np.ones((3, 3)), "y": np.ones((3, 1))}, "array 'x': the examples have shape [3] per example"),
        ({"x": np.ones((3, 2)), "y": np.ones((3, 2))}, "array 'y': the examples have shape [2] per example"),
        ({"x": np.array(1.0), "y": np.ones((3, 1))}, "array 'x' holds no examples (shape [])"),
        ({"x": np.ones((0, 2)), "y": np.ones((0, 1))}, "array 'x' holds no examples (shape [0, 2])"),
        (
            {"x": np.array([[1, 2], [3, np.nan]]), "y": np.ones((2, 1))},
            "'x' holds NaN or infinity (example 1)",
        ),
        ({"x": np.ones((2, 2)), "y": np.array([[np.inf], [0]])}, "'y' holds NaN or infinity (example 0)"),
        ({"x": np.ones((3, 2)), "y": np.ones((2, 1))}, "array 'x' has 3 examples, but 'y' has 2"),
        (
            {"x": np.ones((2, 2)), "y": np.array([0, 2])},
            "class label 2 is out of range: target y : [1] takes",
        ),
    ],
)
def test_npz_errors_name_the_file_and_array(
    tmp_path: Path, arrays: dict[str, np.ndarray], message: str
) -> None:
    path = npz(tmp_path, **arrays)
    err = error_of(path, BINARY)
    assert err.message.startswith(path) and message in err.message
    assert err.span is None


def test_npz_labels_out_of_range_for_a_vector_target(tmp_path: Path) -> None:
    err = error_of(npz(tmp_path, x=np.ones((2, 2)), y=np.array([0, 3])), THREE)
    assert err.message.endswith(
        "array 'y': class label 3 is out of range: target y : [3] takes 0..2 (example 1)"
    )
