"""Hints: what a user who wrote something else most likely meant.

A *suggestion* names a defined name close to a misspelt one
(:func:`closest`, :func:`did_you_mean`), used by every "did you mean ...?"
(names in a model file, initializers, settings, optimizers, built-in data sets).
"""

from __future__ import annotations

from collections.abc import Iterable

#: Functions of NumPy, PyTorch and JAX. One of these, unknown, is not a misspelling of a
#: dlc name: 'min' is not 'sin', 'tan' is not 'tanh', 'gelu' is not 'relu'. (A name dlc
#: defines is never unknown, so listing one that dlc has too changes nothing.)
FOREIGN = frozenset(
    """
    min max minimum maximum argmin argmax amin amax clip clamp where select
    reshape view flatten squeeze unsqueeze expand stack cat hstack vstack split
    dot matmul mm bmm einsum outer conv conv1d conv2d
    tan asin acos atan atan2 sinh cosh asinh acosh atanh sign floor ceil round
    log2 log10 log1p exp2 expm1 rsqrt square cumsum prod std var norm
    gelu elu selu relu6 silu mish hardtanh hardsigmoid softsign log_softmax
    dropout zeros_like ones_like
    """.split()  # noqa: SIM905 (a list of words reads better as words)
)

#: How many single-letter edits (insert, delete, replace, swap two neighbours) a
#: misspelling may have: one in a short name, two from this length on.
_LONG = 6
#: And how alike the two must look overall (difflib's ratio), whatever the edits.
_RATIO = 0.5


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``name`` is most likely a misspelling of, or None if none is close.

    Close means: the same but for letter case, or at most one edit away (two for names of
    six letters or more) while sharing at least half the letters in order. A name in
    :data:`FOREIGN` gets no suggestion: it is a function from elsewhere, not a typo.
    """
    if name in FOREIGN:
        return None
    pool = list(dict.fromkeys(candidates))
    for candidate in pool:
        if candidate.lower() == name.lower() and candidate != name:
            return candidate
    limit = 1 if len(name) < _LONG else 2
    best: tuple[int, float, int] | None = None
    found = None
    for candidate in pool:
        distance, ratio = _edits(name, candidate, limit), _ratio(name, candidate)
        if candidate == name or distance > limit or ratio < _RATIO:
            continue
        score = (distance, -ratio, _gap(name, candidate))
        if best is None or score < best:
            best, found = score, candidate
    return found


def did_you_mean(name: str, candidates: Iterable[str], prefix: str = "") -> str | None:
    """``"did you mean W2?"`` for the closest candidate (see :func:`closest`), or None."""
    found = closest(name, candidates)
    return f"did you mean {prefix}{found}?" if found is not None else None


def _gap(a: str, b: str) -> int:
    """How far apart the first letters that differ are: W3 is nearer W2 than W1."""
    for ca, cb in zip(a, b, strict=False):
        if ca != cb:
            return abs(ord(ca) - ord(cb))
    return 0


def _ratio(a: str, b: str) -> float:
    import difflib

    return difflib.SequenceMatcher(None, a, b).ratio()


def _edits(a: str, b: str, limit: int) -> int:
    """Edits from ``a`` to ``b`` (a swap of neighbours counts one); ``limit + 1`` if more."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    before: list[int] = []
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            current[j] = min(row[j] + 1, current[j - 1] + 1, row[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], before[j - 2] + 1)
        before, row = row, current
    return min(row[-1], limit + 1)
