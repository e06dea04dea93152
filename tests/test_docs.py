"""Every complete model in docs/language.md (a ```dlc block) is accepted by dlc."""

from __future__ import annotations

import re

import pytest

from dlc.errors import DlcError
from dlc.frontend import load_source

from .conftest import ROOT

LANGUAGE_MD = ROOT / "docs" / "language.md"

#: A fenced block opened by exactly ```dlc (not ```dlc-fragment), up to its closing fence.
_FENCE = re.compile(r"^```dlc[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def dlc_blocks() -> list[tuple[int, str]]:
    """(line number of the opening fence, block text) for every ```dlc block."""
    text = LANGUAGE_MD.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in _FENCE.finditer(text)]


BLOCKS = dlc_blocks()


def test_the_reference_has_enough_complete_examples() -> None:
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize(("line", "source"), BLOCKS, ids=[f"line{line}" for line, _ in BLOCKS])
def test_complete_example_is_accepted(line: int, source: str) -> None:
    try:
        load_source(source, path=f"docs/language.md:{line}")
    except DlcError as err:
        pytest.fail(f"the ```dlc block at docs/language.md line {line} is rejected:\n{err.render()}")
