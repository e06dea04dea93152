"""Formulas as MathML, which browsers render natively: LaTeX from dlc's notation, converted by latex2mathml.

Nothing here reaches the network: the page is whole without a math renderer
from elsewhere.
"""

from __future__ import annotations

import math

import numpy as np
import sympy

from dlc.errors import DlcError
from dlc.grad import notation as nt

#: Rows and columns of a value shown whole; larger ones show their corners and dots.
SHOWN = 6
OPS = {"=": "=", "<-": r"\leftarrow"}


def _convert(latex: str) -> str:
    try:
        from latex2mathml.converter import convert
    except ImportError:
        raise DlcError("dlc play needs latex2mathml", hint='pip install "dlc[play]"') from None
    return convert(latex)


def equation_mathml(lhs: sympy.Expr, rhs: sympy.Expr, op: str = "=") -> str:
    return _convert(f"{nt.latex(lhs)} {OPS[op]} {nt.latex(rhs)}")


def mathml(lhs: sympy.Expr, rhs: sympy.Expr, op: str, rows: list[tuple[str, str]]) -> str:
    """The equation, then "where" each symbol's value (LaTeX pairs), one per line."""
    lines = [rf"{nt.latex(lhs)} {OPS[op]} {nt.latex(rhs)}"]
    if rows:
        lines.append(r"\text{where, for the first example:}")
        lines += [f"{name} = {value}" for name, value in rows]
    return _convert(r"\begin{array}{l} " + r" \\ ".join(lines) + r" \end{array}")


def _entry(v: float) -> str:
    if not math.isfinite(v):
        return r"\text{" + str(v) + "}"
    text = f"{v:.3g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        return rf"{mantissa} \times 10^{{{int(exponent)}}}"
    return text


def matrix_latex(value: np.ndarray) -> str:
    """A value as a number, a column vector or a matrix, with dots where it is larger than SHOWN."""
    a = np.asarray(value, dtype=np.float64)
    if a.ndim == 0:
        return _entry(float(a))
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    shape = a.shape
    if a.ndim > 2:
        a = a.reshape(-1, a.shape[-1])
    rows = _cut([_cut([_entry(float(x)) for x in r], r"\cdots") for r in a], None)
    body = r" \\ ".join(" & ".join(r) if r is not None else _dots(a) for r in rows)
    size = r" \times ".join(map(str, shape))
    return rf"\begin{{bmatrix}} {body} \end{{bmatrix}} \; ({size})"


def _cut(items: list, filler: object) -> list:
    if len(items) <= SHOWN:
        return items
    half = SHOWN // 2
    return [*items[:half], filler, *items[-half:]]


def _dots(a: np.ndarray) -> str:
    columns = min(a.shape[1], SHOWN + 1)
    return " & ".join([r"\vdots"] * columns)
