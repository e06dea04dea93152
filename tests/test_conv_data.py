"""Image data for convolutional models: examples shaped [C, H, W] (or [C, L]) from any source.

A model input declared ``[1, 8, 8]`` (or ``[8, 8]``) reads ``builtin:digits``
(stored ``[N, 64]``), an .npz of ``[N, 1, 8, 8]`` or ``[N, 8, 8]``, or a CSV of
64 columns: the same values, row-major, in the declared shape. Element counts
that differ, and images stored channels last, are errors that name the file,
the array and both shapes (exit code 2, no traceback).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from dlc.cli import main
from dlc.errors import DlcError
from dlc.frontend import load_source
from dlc.graph.graph import Graph
from dlc.train.data import load_data, load_inputs

from .conftest import ROOT

CNN = ROOT / "examples" / "digits_cnn.dlc"


def image_model(shape: str, channels: int = 1, image: str = "x") -> str:
    """A small convolutional classifier of 10 classes for ``input x : shape``, any image size."""
    return (
        f"input x : {shape}\ntarget y : [10]\n"
        f"param K : [4, {channels}, 3, 3] = he\nparam W : [10, 4] = glorot\n"
        f"h = max(max(relu(conv2d({image}, K)), 2), 1)\n"  # [4, H - 2, W - 2] -> [4]
        "loss softmax_cross_entropy(W @ h, y)\n"
    )


SEQUENCE = (
    "input x : [2, 12]\ntarget y : [3]\nparam K : [4, 2, 3] = he\nparam W : [3, 20] = glorot\n"
    "loss softmax_cross_entropy(W @ flatten(max_pool1d(relu(conv1d(x, K)), 2)), y)\n"
)


@cache
def graph(source: str) -> Graph:
    return load_source(source).graph


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """builtin:digits as a flat model reads it: [N, 64] in [0, 1], and the labels."""
    pytest.importorskip("sklearn")
    flat = "input x : [64]\ntarget y : class[10]\nparam W : [10, 64] = glorot\n"
    flat += "loss softmax_cross_entropy(W @ x, y)\n"
    data = load_data("builtin:digits", graph(flat))
    assert isinstance(data.X, np.ndarray) and isinstance(data.Y, np.ndarray)
    return data.X, data.Y.astype(np.int64)


def error_of(source: str, model: str) -> DlcError:
    with pytest.raises(DlcError) as info:
        load_data(source, graph(model))
    return info.value


# ---------------------------------------------------------------- built-in digits as images


@pytest.mark.parametrize("shape", ["[1, 8, 8]", "[8, 8]"])
def test_builtin_digits_take_the_declared_image_shape(
    digits: tuple[np.ndarray, np.ndarray], shape: str
) -> None:
    data = load_data("builtin:digits", graph(image_model(shape, image="reshape(x, [1, 8, 8])")))
    declared = tuple(json.loads(shape))
    assert isinstance(data.X, np.ndarray) and data.X.shape == (1797, *declared)
    np.testing.assert_array_equal(data.X.reshape(1797, 64), digits[0])  # row-major: pixel (r, c) is r * 8 + c
    assert data.classes == 10


def test_builtin_digits_of_another_size_name_the_shapes_that_fit(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    err = error_of("builtin:digits", image_model("[1, 7, 7]"))
    assert err.message == (
        "builtin:digits: the inputs have shape [64] per example (64 values), "
        "but the model declares input x : [1, 7, 7] (49 values)"
    )
    assert err.hint == "declare input x as [64] or [8, 8] or [1, 8, 8]"


# ---------------------------------------------------------------- .npz images


@pytest.mark.parametrize("layout", [(1, 8, 8), (8, 8), (64,)])
def test_npz_images_in_any_layout_of_64_values(
    tmp_path: Path, digits: tuple[np.ndarray, np.ndarray], layout: tuple[int, ...]
) -> None:
    X, labels = digits
    path = tmp_path / "images.npz"
    np.savez(path, x=X.reshape(len(X), *layout), y=labels)
    data = load_data(str(path), graph(image_model("[1, 8, 8]")))
    assert isinstance(data.X, np.ndarray) and data.X.shape == (1797, 1, 8, 8)
    np.testing.assert_array_equal(data.X.reshape(1797, 64), X)
    inputs = load_inputs(str(path), graph(image_model("[1, 8, 8]")))  # what dlc predict reads
    assert isinstance(inputs, np.ndarray) and inputs.shape == (1797, 1, 8, 8)


def test_npz_of_several_channels_and_sequences(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(20, 3, 8, 8))
    path = tmp_path / "rgb.npz"
    np.savez(path, x=images, y=rng.integers(0, 10, 20))
    data = load_data(str(path), graph(image_model("[3, 8, 8]", channels=3)))
    assert isinstance(data.X, np.ndarray)
    np.testing.assert_array_equal(data.X, images)
    sequences = rng.normal(size=(20, 2, 12))
    np.savez(path, x=sequences, y=rng.integers(0, 3, 20))
    data = load_data(str(path), graph(SEQUENCE))
    assert isinstance(data.X, np.ndarray)
    np.testing.assert_array_equal(data.X, sequences)


def test_npz_images_of_the_wrong_size(tmp_path: Path) -> None:
    path = tmp_path / "small.npz"
    np.savez(path, x=np.zeros((5, 7, 7)), y=np.zeros(5, dtype=np.int64))
    err = error_of(str(path), image_model("[1, 8, 8]"))
    assert err.message == (
        f"{path}: array 'x': the examples have shape [7, 7] per example (49 values), "
        "but the model declares input x : [1, 8, 8] (64 values)"
    )
    assert err.hint is not None and "[N, C, H, W]" in err.hint and "[N, H, W]" in err.hint


def test_npz_images_stored_channels_last_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "hwc.npz"
    np.savez(path, x=np.zeros((5, 8, 8, 3)), y=np.zeros(5, dtype=np.int64))
    err = error_of(str(path), image_model("[3, 8, 8]", channels=3))
    assert "have shape [8, 8, 3] per example, channels last" in err.message
    assert "declares input x : [3, 8, 8], channels first" in err.message
    assert err.hint == "transpose the array: numpy.transpose(a, (0, 3, 1, 2))"
    np.savez(path, x=np.zeros((5, 12, 2)), y=np.zeros(5, dtype=np.int64))
    assert error_of(str(path), SEQUENCE).hint == "transpose the array: numpy.transpose(a, (0, 2, 1))"


# ---------------------------------------------------------------- the command line


def train_cnn(capsys: pytest.CaptureFixture[str], tmp_path: Path, data: Path) -> dict[str, float]:
    code = main(
        ["train", str(CNN), "--data", str(data), "--epochs", "2", "--save", str(tmp_path / "cnn.npz"),
         "--json", "--quiet"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    summary: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return summary


@pytest.mark.parametrize("layout", [(1, 8, 8), (8, 8)])
def test_the_cnn_example_trains_on_npz_images(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, digits: tuple[np.ndarray, np.ndarray],
    layout: tuple[int, ...],
) -> None:  # fmt: skip
    X, labels = digits
    path = tmp_path / "digits.npz"
    np.savez(path, x=X[:400].reshape(400, *layout), y=labels[:400])
    assert train_cnn(capsys, tmp_path, path)["train_accuracy"] > 0.5  # chance is 0.1


def test_a_wrong_image_shape_exits_2_without_a_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "small.npz"
    np.savez(path, x=np.zeros((5, 1, 7, 7)), y=np.zeros(5, dtype=np.int64))
    capsys.readouterr()
    assert main(["train", str(CNN), "--data", str(path), "--save", str(tmp_path / "cnn.npz")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"error: {path}: array 'x': the examples have shape [1, 7, 7] per example (49 values)" in err
    assert "input x : [1, 8, 8] (64 values)" in err
    assert not (tmp_path / "cnn.npz").exists()
