"""Hints: what a user who wrote something else most likely meant.

Two kinds. A *suggestion* names a defined name close to a misspelt one
(:func:`closest`, :func:`did_you_mean`), used by every "did you mean ...?"
(names in a model file, initializers, settings, optimizers, built-in data sets).
A *habit* hint explains a shape error by a convention from other frameworks
(:func:`check_binop`): weights written ``[in, out]``, as code that computes
``x @ W`` has them (a Keras ``Dense`` kernel), or ``*`` for a matrix
product. A hint is given only where the alternative would fit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dlc.errors import DlcError, Note
from dlc.frontend import ast
from dlc.graph import nodes
from dlc.graph import ops as g

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


# ------------------------------------------------------------------ habits


def check_binop(e: ast.BinOp, left: nodes.Node, right: nodes.Node, names: Mapping[str, object]) -> None:
    """Raise the error ``left @ right`` or ``left * right`` would, with a hint, if a habit explains it.

    Returns without raising when the operation fits, or when no hint applies (the
    operation then reports its own error, as for every other operator).
    """
    if e.op == "@":
        try:
            g.matmul(left, right)
        except nodes.ShapeError as exc:
            hint, notes = _matmul_hint(e, left, right, names)
            if hint is not None:
                raise DlcError(str(exc), e.op_span, hint=hint, notes=notes) from None
    elif e.op == "*":
        try:
            nodes.broadcast(left.shape, right.shape, op="*")
        except nodes.ShapeError as exc:
            hint, notes = _product_hint(e, left, right, names)
            if hint is not None:
                raise DlcError(str(exc), e.op_span, hint=hint, notes=notes) from None


_ORIENTATION = "dlc writes weights as [out, in] (math orientation, W @ x)"

Hint = tuple[str | None, tuple[Note, ...]]


def _matmul_hint(e: ast.BinOp, a: nodes.Node, b: nodes.Node, names: Mapping[str, object]) -> Hint:
    sa, sb = a.shape, b.shape
    if len(sa) == 2 and len(sb) == 1 and isinstance(b, nodes.Reshape) and sa[1] != sb[0]:
        # a flattened feature map of the wrong size: the layers before it, not the weight's orientation
        source = nodes.show_shape(b.inputs[0].shape)
        reads = f"{_text(e.left) or 'the matrix'} reads {sa[1]}"
        return f"the flattened {source} has {sb[0]} elements, but {reads}: declare it [{sa[0]}, {sb[0]}]", ()
    if len(sa) == 2 and _fits(sa[::-1], sb):
        declared = _declared(a, names)
        if declared is not None:
            return f"{_ORIENTATION}: did you mean {_with_shape(a, sa[::-1])}?", declared
        left, right = _text(e.left), _text(e.right)
        if left and right:
            return f"{_ORIENTATION}: did you mean transpose({left}) @ {right}?", ()
        return f"{_ORIENTATION}: the transpose of the left operand would fit", ()
    if len(sa) == 1 and len(sb) == 2 and _fits(sb, sa):
        left, right = _text(e.left), _text(e.right)
        swapped = f"did you mean {right} @ {left}?" if left and right else "swap the operands"
        return f"dlc puts the matrix first (math orientation, W @ x): {swapped}", ()
    return None, ()


def _product_hint(e: ast.BinOp, a: nodes.Node, b: nodes.Node, names: Mapping[str, object]) -> Hint:
    sa, sb = a.shape, b.shape
    if not (1 <= len(sa) <= 2 and 1 <= len(sb) <= 2) or len(sa) + len(sb) == 2:
        return None, ()
    left, right = _text(e.left), _text(e.right)
    written = f"{left} @ {right}" if left and right else "@"
    if _fits(sa, sb):
        return f"* multiplies element by element; for a matrix product write {written}", ()
    declared = _declared(a, names)
    if len(sa) == 2 and _fits(sa[::-1], sb) and declared is not None:
        return (
            f"* multiplies element by element; dlc writes weights as [out, in]: for a matrix "
            f"product declare {_with_shape(a, sa[::-1])} and write {written}",
            declared,
        )
    return None, ()


def _fits(sa: nodes.Shape, sb: nodes.Shape) -> bool:
    """Whether ``sa @ sb`` is a matrix product dlc accepts."""
    return 1 <= len(sa) <= 2 and 1 <= len(sb) <= 2 and sa[-1] == sb[0]


def _declared(node: nodes.Node, names: Mapping[str, object]) -> tuple[Note, ...] | None:
    """A note at the declaration of the parameter ``node`` is, or None if it is no parameter."""
    if not isinstance(node, nodes.Param):
        return None
    decl = names.get(node.name)
    if not isinstance(decl, ast.ParamDecl):
        return None
    return (Note(f"{node.name} is declared {nodes.show_shape(node.shape)} here", decl.shape.span),)


def _with_shape(param: nodes.Node, shape: nodes.Shape) -> str:
    """``W : [16, 4]``: a parameter's declaration with another shape."""
    assert isinstance(param, nodes.Param)
    return f"{param.name} : {nodes.show_shape(shape)}"


def _text(e: ast.Expr) -> str | None:
    """An operand as written, if it is a plain name."""
    return e.ident.text if isinstance(e, ast.Name) else None
