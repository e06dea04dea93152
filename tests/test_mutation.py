"""Mutated examples end in a clean graph or a positioned DlcError, never anything else.

Mutations: truncation anywhere, a line deleted or duplicated, a name or a
number changed; and random byte-level edits through hypothesis.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlc.errors import DlcError
from dlc.frontend import load_source

from .conftest import EXAMPLES

TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+(\.\d*)?([eE][+-]?\d+)?")
REPLACEMENTS = ("zz", "W1", "x", "y", "tanh", "input", "0", "-1", "2.5", "1e9", "100000")


def mutations(source: str) -> Iterator[str]:
    step = max(1, len(source) // 400)
    for cut in range(0, len(source), step):
        yield source[:cut]
    lines = source.split("\n")
    for i in range(len(lines)):
        yield "\n".join(lines[:i] + lines[i + 1 :])
        yield "\n".join(lines[: i + 1] + lines[i:])
    comments = [m.span() for m in re.finditer(r"#[^\n]*", source)]
    for match in TOKEN.finditer(source):
        if any(start <= match.start() < end for start, end in comments):
            continue  # a word of a comment changed is the same model
        for new in REPLACEMENTS:
            if new != match.group():
                yield source[: match.start()] + new + source[match.end() :]


def check(source: str, path: str) -> None:
    """Either the model loads, or the error is a DlcError that points into the file."""
    try:
        load_source(source, path)
    except DlcError as err:
        assert err.span is not None, err.render()
        first = err.render().splitlines()[0]
        assert re.match(rf"{re.escape(path)}:\d+:\d+: error: ", first), first


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_mutation_fails_cleanly(path: Path) -> None:
    source = path.read_text()
    count = 0
    for mutated in mutations(source):
        check(mutated, path.name)
        count += 1
    assert count > 500


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
@given(data=st.data())
def test_random_edits_fail_cleanly(path: Path, data: st.DataObject) -> None:
    source = path.read_text()
    start = data.draw(st.integers(0, len(source)))
    end = data.draw(st.integers(start, min(len(source), start + 40)))
    insert = data.draw(
        st.text(alphabet=st.sampled_from(list("()[]{},=:@+-*/^#.\n 0123456789eWxyabT_é\t")), max_size=12)
    )
    check(source[:start] + insert + source[end:], path.name)
