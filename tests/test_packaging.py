"""An installed (non-editable) dlc finds its grammar inside the wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import ROOT


@pytest.mark.slow
def test_wheel_carries_the_grammar_and_works_outside_the_checkout(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
    )
    (wheel,) = tmp_path.glob("dlc-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        assert "dlc/grammar/dlc.lark" in zf.namelist()
        assert zf.read("dlc/grammar/dlc.lark") == (ROOT / "grammar" / "dlc.lark").read_bytes()
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
    )
    example = ROOT / "examples" / "xor.dlc"
    code = (
        "import dlc.frontend.grammar as g, pathlib; "
        f"assert pathlib.Path(g.__file__).is_relative_to(pathlib.Path(r'{target}')); "
        f"from dlc.frontend import load; print(load(r'{example}').graph.name)"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "xor"
