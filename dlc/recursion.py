"""Room for the recursion that deep but legal models need.

The parser caps nesting at a few hundred levels, but one level of a model
(a call of a user function, a named value) costs several Python frames in the
passes that walk it, and SymPy recurses over expression trees. Python 3.11
does not grow the C stack for Python-to-Python calls, so a larger frame limit
is safe; it is raised only while a pass runs, and restored after.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

FRAME_LIMIT = 20_000


@contextmanager
def deep_recursion() -> Iterator[None]:
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, FRAME_LIMIT))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)
