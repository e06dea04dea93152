"""What a built-in function is: its signature, and what it sees of a call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn, Protocol

import sympy

from dlc.graph import nodes

#: Keyword arguments that take a word rather than a value: ``padding = same``.
WORDS = {"padding": ("same", "valid")}


class Call(Protocol):
    """What a built-in sees of its call (implemented by the lowering pass)."""

    def given(self, name: str) -> bool: ...
    def tensor(self, name: str) -> nodes.Node: ...
    def tensors(self) -> list[nodes.Node]: ...
    def integer(self, name: str) -> int | None: ...
    def is_integer(self, name: str) -> bool: ...
    def dims(self, name: str) -> tuple[int, ...]: ...
    def sizes(self, name: str, rank: int) -> tuple[int, ...] | None: ...
    def word(self, name: str, words: tuple[str, ...]) -> str | None: ...
    def fail(self, message: str, argument: str | None = None, hint: str | None = None) -> NoReturn: ...
    def make(self, build: Callable[..., nodes.Node], *args: object) -> nodes.Node: ...
    def elementwise(self, fn: Callable[..., sympy.Expr], *args: nodes.Node) -> nodes.Node: ...


@dataclass(frozen=True)
class Builtin:
    """A built-in function: ``params`` in order, those in ``optional`` may be left out."""

    params: tuple[str, ...]
    build: Callable[[Call], nodes.Node]
    optional: tuple[str, ...] = ()
    variadic: bool = False  # takes any number of tensors (``params`` then are keywords only)
    doc: str = ""
