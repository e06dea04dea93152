"""Errors that point at the user's source.

Library code raises :class:`DlcError`; only the command line turns it into
text (``file:line:col: error: ...``, the source line, a caret) and an exit code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """A region of a source file; lines and columns count from 1, ends are exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int

    def to(self, other: Span) -> Span:
        """The span that starts where this one starts and ends where ``other`` ends."""
        return Span(self.line, self.column, other.end_line, other.end_column)

    def __repr__(self) -> str:
        return f"{self.line}:{self.column}-{self.end_line}:{self.end_column}"


@dataclass(frozen=True)
class Note:
    """A secondary message attached to an error, e.g. the call that led to it."""

    message: str
    span: Span | None = None


class DlcError(Exception):
    """A mistake in user input, with where it is and, if it helps, a hint.

    Args:
        message: one line saying what is wrong.
        span: where in the source it is, or None when no position applies.
        hint: an optional suggestion ("did you mean W2?").
        notes: further places worth showing (the call site of a function).
    """

    def __init__(
        self,
        message: str,
        span: Span | None = None,
        *,
        hint: str | None = None,
        notes: tuple[Note, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
        self.notes = notes
        # Set by whoever knows which file was being read.
        self.path: str | None = None
        self.source: str | None = None
        # The argument of a call at fault (``axis``), so a caller can point at it.
        self.argument: str | None = None

    def with_note(self, note: Note) -> DlcError:
        """Return this error with one more note (the original is unchanged)."""
        err = DlcError(self.message, self.span, hint=self.hint, notes=(*self.notes, note))
        err.path, err.source = self.path, self.source
        return err

    def in_file(self, path: str, source: str) -> DlcError:
        """Record the file this error belongs to, unless one is recorded already."""
        if self.path is None:
            self.path, self.source = path, source
        return self

    def render(self, kind: str = "error") -> str:
        """The full message: ``file:line:col: error: ...``, source line, caret, hint."""
        lines = [_headline(self.path, self.span, kind, self.message)]
        lines += _excerpt(self.source, self.span)
        for note in self.notes:
            lines.append(_headline(self.path, note.span, "note", note.message))
            lines += _excerpt(self.source, note.span)
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


def _headline(path: str | None, span: Span | None, kind: str, message: str) -> str:
    where = path or ("<model>" if span is not None else "dlc")
    if span is not None:
        where += f":{span.line}:{span.column}"
    return f"{where}: {kind}: {message}"


_MAX_SHOWN = 100


def _excerpt(source: str | None, span: Span | None) -> list[str]:
    """The source line of ``span`` and a caret line under it."""
    if source is None or span is None:
        return []
    lines = source.split("\n")
    if not 1 <= span.line <= len(lines):
        return []
    text = lines[span.line - 1].rstrip("\r")
    start = min(max(span.column - 1, 0), len(text))
    end = span.end_column - 1 if span.end_line == span.line else len(text)
    if len(text) > _MAX_SHOWN:
        # Show a window of a very long line, around the spot.
        left = max(0, start - _MAX_SHOWN // 2)
        text = text[left : left + _MAX_SHOWN]
        start, end = start - left, min(end - left, len(text))
    width = max(1, min(end, len(text)) - start)
    # Copy tabs so that the caret lines up however the terminal expands them.
    pad = "".join("\t" if ch == "\t" else " " for ch in text[:start])
    return ["    " + text, "    " + pad + "^" + "~" * (width - 1)]
