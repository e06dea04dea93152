"""The error corpus: every file in tests/errors/ is a model with one mistake.

The first line of each file says what ``dlc show`` must report::

    # expect: LINE:COL: MESSAGE-SUBSTRING

and an optional second line ``# hint: SUBSTRING`` names a hint that must be
printed too. Each file must be rejected with exit code 2, a headline
``PATH:LINE:COL: error: ...MESSAGE-SUBSTRING...``, the offending source line
and a caret under the reported column, and never a traceback.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from dlc.cli import main

from .conftest import ROOT

CORPUS = ROOT / "tests" / "errors"
FILES = sorted(CORPUS.glob("*.dlc"))
MIN_FILES = 45
#: Lines longer than this are shown as a window around the spot (see dlc.errors).
MAX_SHOWN = 100

#: Files whose expected report is not what dlc prints yet: each is a known bug.
KNOWN_BUGS: dict[str, str] = {}  # file name -> what dlc gets wrong there (marked xfail, strict)


@dataclass(frozen=True)
class Expectation:
    line: int
    column: int
    message: str
    hint: str | None


_EXPECT = re.compile(r"# expect: (\d+):(\d+): (.+)")
_HINT = re.compile(r"# hint: (.+)")


def source_lines(path: Path) -> list[str]:
    """The file's lines as dlc sees them (a byte-order mark and CRs dropped, bad bytes replaced)."""
    text = path.read_bytes().decode("utf-8", errors="replace").removeprefix("\ufeff")
    return [line.rstrip("\r") for line in text.split("\n")]


def expectation(path: Path) -> Expectation:
    lines = source_lines(path)
    match = _EXPECT.fullmatch(lines[0])
    assert match, f"{path.name}: the first line must be '# expect: LINE:COL: MESSAGE'"
    hint = _HINT.fullmatch(lines[1]) if len(lines) > 1 else None
    return Expectation(int(match[1]), int(match[2]), match[3].strip(), hint[1].strip() if hint else None)


def _param(path: Path) -> object:
    reason = KNOWN_BUGS.get(path.name)
    marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
    return pytest.param(path, id=path.stem, marks=marks)


def test_corpus_is_large_enough() -> None:
    assert len(FILES) >= MIN_FILES
    assert set(KNOWN_BUGS) <= {p.name for p in FILES}, "KNOWN_BUGS names a file that does not exist"


@pytest.mark.parametrize("path", [_param(p) for p in FILES])
def test_error_report(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    want = expectation(path)
    code = main(["show", str(path)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert code == 2, f"exit code {code}; stderr:\n{err}"

    lines = err.split("\n")
    headline = f"{path}:{want.line}:{want.column}: error: "
    found = [i for i, line in enumerate(lines) if line.startswith(headline) and want.message in line]
    assert found, f"no line '{headline}...{want.message}...' in stderr:\n{err}"
    i = found[0]

    # The offending source line, indented, then a caret under the column.
    assert i + 2 < len(lines), f"no source excerpt after the headline:\n{err}"
    shown, caret = lines[i + 1], lines[i + 2]
    source = source_lines(path)[want.line - 1]
    assert shown.startswith("    ") and shown[4:].strip(), f"not an indented source line: {shown!r}"
    if len(source) <= MAX_SHOWN:
        # A line cut at an undecodable byte ends in U+FFFD where the bad byte was.
        cut = shown.endswith("\ufffd") and source.startswith(shown[4:])
        assert shown == "    " + source or cut, f"{shown!r} is not line {want.line}: {source!r}"
        assert caret.startswith("    ") and caret.index("^") == 4 + want.column - 1, (
            f"caret not under column {want.column}:\n{shown}\n{caret}"
        )
    else:
        assert shown[4:] in source
        assert "^" in caret

    if want.hint is not None:
        hints = [line for line in lines if line.startswith("hint: ")]
        assert any(want.hint in h for h in hints), f"no hint containing {want.hint!r} in:\n{err}"


@pytest.mark.parametrize("name", ["undefined_name.dlc", "train_momentum_one.dlc"])
def test_error_report_through_a_subprocess(name: str) -> None:
    path = CORPUS / name
    want = expectation(path)
    done = subprocess.run(
        [sys.executable, "-m", "dlc", "show", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert f"{path}:{want.line}:{want.column}: error: " in done.stderr
    assert want.message in done.stderr
