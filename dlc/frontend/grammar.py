"""Find the grammar file and build the Lark parser (once per process, on first use)."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from lark import Lark

from dlc.errors import DlcError


def grammar_text() -> str:
    """The text of ``dlc.lark``.

    An installed wheel carries it as ``dlc/grammar/dlc.lark``; a source
    checkout (or an editable install) reads ``grammar/dlc.lark`` at the root.
    """
    packaged = resources.files("dlc").joinpath("grammar/dlc.lark")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    checkout = Path(__file__).resolve().parents[2] / "grammar" / "dlc.lark"
    if checkout.is_file():
        return checkout.read_text(encoding="utf-8")
    raise DlcError("the dlc grammar (dlc.lark) is missing from this installation")


@functools.cache
def lark_parser() -> Lark:
    """The LALR(1) parser; built on first use, never at import time."""
    # Imported here: the AST builder imports this module's users' types.
    from dlc.frontend.parser import AstBuilder

    return Lark(
        grammar_text(),
        parser="lalr",
        lexer="basic",  # keywords are reserved everywhere, not only where they fit
        maybe_placeholders=True,
        transformer=AstBuilder(),
        start=["start", "sweep_values"],
    )
