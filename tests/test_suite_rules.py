"""The test suite's own rules: no test asserts a time, and native code is cached in a temporary folder."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlc.compiler import compile_model

from .conftest import ROOT

CLOCKS = {"perf_counter", "time", "monotonic", "perf_counter_ns", "time_ns", "monotonic_ns"}


def _reads_a_clock(node: ast.AST, tainted: set[str]) -> bool:
    """Whether ``node`` calls time.perf_counter() (or another clock) or uses a value derived from one."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            f = sub.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            if name in CLOCKS and owner in ("time", ""):
                return True
        if isinstance(sub, ast.Name) and sub.id in tainted:
            return True
    return False


def _targets(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def clock_assertions(source: str) -> list[int]:
    """Lines of the asserts in ``source`` that compare a time read from a clock."""
    tree = ast.parse(source)
    tainted: set[str] = set()
    for _ in range(5):  # values derived from values derived from a clock ...
        for node in ast.walk(tree):
            assigns = isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)) and node.value is not None
            if assigns and _reads_a_clock(node.value, tainted):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    tainted |= _targets(target)
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Assert) and _reads_a_clock(n.test, tainted)]


def test_the_clock_finder_finds_clocks() -> None:
    source = (
        "import time\nbegan = time.perf_counter()\nx = 1\nseconds = time.perf_counter() - began\n"
        "total = seconds * 2\nassert x < 3\nassert total < 5\nassert time.monotonic() - began < 1\n"
    )
    assert clock_assertions(source) == [7, 8]


@pytest.mark.parametrize("path", sorted((ROOT / "tests").glob("*.py")), ids=lambda p: p.name)
def test_no_test_asserts_a_wall_clock_time(path: Path) -> None:
    """A time on a shared machine says more about the neighbours than about dlc: count instead."""
    assert clock_assertions(path.read_text(encoding="utf-8")) == [], f"{path.name} asserts a time"


def test_native_code_is_cached_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory) -> None:
    cache = Path(os.environ["DLC_CACHE_DIR"])
    assert cache.is_relative_to(tmp_path_factory.getbasetemp()), cache
    before = set(cache.rglob("*"))
    module = compile_model("param w : [3] = zeros\nloss sum((w - 1.5) ** 2)\n", backend="llvm")
    assert module.loss(module.init_params(0), None, None) == pytest.approx(6.75)
    assert set(cache.rglob("*")) - before, "the machine code went somewhere else"
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.environ['DLC_CACHE_DIR'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert child.stdout.strip() == str(cache), "commands the tests start use the same cache"
    np.testing.assert_array_equal(module.init_params(0)["w"], np.zeros(3))
