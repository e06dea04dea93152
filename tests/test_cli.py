"""The command's own edges: help, version, what README promises; paths and text in compile_model."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

from dlc.cli import COMMANDS, main
from dlc.compiler import compile_model, is_path
from dlc.errors import DlcError

from .conftest import ROOT


def test_bare_dlc_shows_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: dlc") and err == ""
    assert all(name in out for name in COMMANDS)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert capsys.readouterr().out.strip() == f"dlc {version}"


def test_a_missing_dlc_file_is_not_read_as_model_text(tmp_path: Path) -> None:
    for name in ("missing.dlc", str(tmp_path / "gone" / "model.DLC"), " spaced.dlc "):
        with pytest.raises(DlcError) as caught:
            compile_model(name)
        assert caught.value.message == f"cannot read {name}: No such file or directory"


def test_which_strings_are_paths(tmp_path: Path) -> None:
    existing = tmp_path / "model.txt"
    existing.write_text("param w : [] = zeros\nloss w ** 2\n")
    assert is_path("model.dlc") and is_path(str(existing))
    assert not is_path("param w : [] = zeros loss w ** 2")  # one line of model text
    assert not is_path("loss x / 2.dlc\n")  # has a line break: text
    assert not is_path("param w : [] = zeros loss w ** 2 " + "x" * 5000)  # too long for a name: text
    assert not is_path("a\0b")
    assert compile_model(str(existing)).loss({"w": 3.0}, None, None) == pytest.approx(9.0)
    one_line = compile_model("param w : [] = zeros loss (w - 2) ** 2")
    assert one_line.loss({"w": 0.0}, None, None) == pytest.approx(4.0)


def readme_commands() -> list[list[str]]:
    """The concrete ``dlc ...`` commands in README.md (not the table's ``dlc show MODEL``)."""
    text = (ROOT / "README.md").read_text()
    found = re.findall(r"`(dlc (?:predict|train|show|grad|check|compile) [^`]*)`", text)
    return [c for c in map(shlex.split, found) if c[2] != "MODEL"]


def test_every_file_a_readme_command_names_exists() -> None:
    commands = readme_commands()
    assert any(c[1] == "predict" for c in commands)
    for command in commands:
        for word in command[2:]:
            if re.fullmatch(r"[\w/.-]+\.(dlc|csv)", word):
                assert (ROOT / word).is_file(), f"{' '.join(command)}: there is no {word}"


def test_the_readme_predict_command_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    predict = next(c for c in readme_commands() if c[1] == "predict")
    params = tmp_path / predict[predict.index("--params") + 1]
    assert main(["train", str(ROOT / "examples" / "xor.dlc"), "--save", str(params), "--quiet"]) == 0
    args = [str(ROOT / a) if a.startswith("examples/") else a for a in predict[1:]]
    args[args.index("--params") + 1] = str(params)
    capsys.readouterr()
    assert main(args) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0] == "output,label" and [r.split(",")[1] for r in rows[1:5]] == ["0", "1", "1", "0"]
