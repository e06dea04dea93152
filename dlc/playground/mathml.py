r"""Formulas as MathML, which browsers render natively: LaTeX from dlc's notation, converted by latex2mathml.

Nothing here reaches the network: the page is whole without a math renderer
from elsewhere.

latex2mathml writes each letter of ``\mathrm{scores}`` or
``\operatorname{softmax\_cross\_entropy}`` as an identifier of its own, and the
notation prints a name such as ``weight_decay`` as ``\mathrm{weight}_{\mathrm{decay}}``,
which reads as "weight" with the subscript "decay". So before converting, such
a pair becomes the one name again, and every name becomes a placeholder
character (from a private-use plane) that latex2mathml writes as one ``<mi>``;
after converting, each placeholder is its name again, upright. The MathML is
then parsed and written again, with MathML elements and attributes only (the
rest is dropped), and with a few fixes for Chromium: brackets around a matrix
in a row of their own, stretching to its height; a dot between two numbers
side by side; ``min`` and ``max`` spaced as names; a table's column alignment
as CSS too.
"""

from __future__ import annotations

import itertools
import math
import re
import xml.etree.ElementTree as ET

import numpy as np
import sympy

from dlc.errors import DlcError
from dlc.grad import notation as nt

#: Rows and columns of a value shown whole; larger ones show their corners and dots.
SHOWN = 6
OPS = {"=": "=", "<-": r"\leftarrow"}

MATHML = "http://www.w3.org/1998/Math/MathML"
#: Presentation MathML: the elements and attributes that may reach the page (no href, no event handler).
ELEMENTS = frozenset(
    ("math", "mrow", "mi", "mn", "mo", "ms", "mtext", "mspace", "msub", "msup", "msubsup", "munder", "mover",
     "munderover", "mfrac", "msqrt", "mroot", "mstyle", "mpadded", "mphantom", "menclose", "merror", "mtable",
     "mtr", "mtd", "mlabeledtr", "mmultiscripts", "mprescripts", "none", "semantics", "annotation")
)  # fmt: skip
ATTRIBUTES = frozenset(
    ("xmlns", "display", "mathvariant", "stretchy", "fence", "form", "separator", "accent", "accentunder",
     "symmetric", "largeop", "movablelimits", "lspace", "rspace", "minsize", "maxsize", "width", "height",
     "depth", "linethickness", "columnalign", "rowalign", "columnspacing", "rowspacing", "columnlines",
     "rowlines", "frame", "framespacing", "equalrows", "equalcolumns", "displaystyle", "scriptlevel",
     "notation", "align", "rowspan", "columnspan")
)  # fmt: skip

#: A name inside ``\mathrm{}`` or ``\operatorname{}``: letters, digits and underscores, escaped (``\_``)
#: or not (an option's name, ``\mathrm{padding}``, is printed unescaped).
_NAME = r"(?:[A-Za-z0-9]|\\?_)+"
_NAMED = re.compile(rf"\\(?:mathrm|operatorname)\{{({_NAME})\}}")
#: ``\mathrm{weight}_{\mathrm{decay}}``: a name of several letters with a word as its "subscript" is one
#: name as written, weight_decay (``W_{\mathrm{out}}``, ``\mathrm{conv}_{1}``, ``\delta_{\mathrm{h}}`` keep
#: their subscripts).
_JOINED = re.compile(rf"\\mathrm\{{({_NAME})\}}_\{{\\mathrm\{{({_NAME})\}}\}}")
#: A gradient's row in :func:`mathml`: the name ``∂L/∂W1`` printed as one name.
_GRADIENT = re.compile(r"\\mathrm\{∂L/∂([A-Za-z][A-Za-z0-9_]*)\}")
#: Placeholders for names: supplementary private-use plane A, never in the notation's LaTeX.
_FIRST, _LAST = 0xF0000, 0xFFFFD
_PRIVATE = re.compile("[\U000f0000-\U000ffffd]")

#: Elements whose children are written one after another (an mrow, or an inferred one).
_ROWS = frozenset(("math", "mrow", "mtd", "mstyle", "msqrt", "mpadded", "mphantom", "merror", "menclose"))
_SCRIPTS = frozenset(("msub", "msup", "msubsup"))
_WORD = re.compile(r"[A-Za-z]{2,}")
_PRIMES = ("\u2032", "\u2033", "\u2034")
#: Brackets latex2mathml writes around a table (bmatrix, pmatrix, vmatrix...), opening to closing.
_BRACKETS = {"[": "]", "(": ")", "|": "|", "\u2016": "\u2016", "{": "}"}


def _convert(latex: str) -> str:
    try:
        from latex2mathml.converter import convert
    except ImportError:
        raise DlcError("dlc play needs latex2mathml", hint='pip install "dlc[play]"') from None
    latex, names = _hide_names(latex)
    try:
        root = ET.fromstring(convert(latex))
    except Exception:  # latex2mathml's own errors, or what it wrote is not XML: the LaTeX, as text
        return _failed(_PRIVATE.sub(lambda m: names.get(m.group(), "?"), latex))
    return _written(_cleaned(root, names))


def _hide_names(latex: str) -> tuple[str, dict[str, str]]:
    """``latex`` with each name a placeholder character, and the names by placeholder."""
    latex = _PRIVATE.sub("", latex)
    latex = _GRADIENT.sub(
        lambda m: rf"\frac{{\partial L}}{{\partial {nt.latex(sympy.Symbol(m.group(1), real=True))}}}", latex
    )

    def joined(m: re.Match[str]) -> str:
        base, under = _unescaped(m.group(1)), _unescaped(m.group(2))
        return m.group() if len(base) < 2 else rf"\mathrm{{{base}_{under}}}"

    latex = _JOINED.sub(joined, latex)
    chars: dict[str, str] = {}

    def hidden(m: re.Match[str]) -> str:
        name = _unescaped(m.group(1))
        if name not in chars:
            if _FIRST + len(chars) > _LAST:
                return m.group()
            chars[name] = chr(_FIRST + len(chars))
        return f" {chars[name]} "

    latex = _NAMED.sub(hidden, latex)
    return latex, {c: name for name, c in chars.items()}


def _unescaped(name: str) -> str:
    return name.replace("\\_", "_")


def _cleaned(root: ET.Element, names: dict[str, str]) -> ET.Element:
    """MathML only, the names back in, and the fixes for Chromium."""
    for element in root.iter():
        _only_mathml(element)
        _named(element, names)
        _fixed(element)
    for parent in list(root.iter()):
        _stretch_brackets(parent)
        if parent.tag in _ROWS:
            _numbers_apart(parent)
    root.attrib = {"xmlns": MATHML, **root.attrib}
    return root


def _only_mathml(element: ET.Element) -> None:
    """A MathML element with MathML attributes (another element becomes an empty ``<mrow>``)."""
    element.tag = element.tag.rpartition("}")[2]
    if element.tag not in ELEMENTS:
        element.tag, element.text = "mrow", None
        element.attrib.clear()
    for key in [k for k in element.attrib if k not in ATTRIBUTES]:
        del element.attrib[key]
    element.tail = None  # MathML has no text between elements


def _named(element: ET.Element, names: dict[str, str]) -> None:
    """A placeholder's identifier as the name, upright."""
    if not element.text or not _PRIVATE.search(element.text):
        return
    if element.tag == "mi" and element.text in names:
        element.text = names[element.text]
        element.set("mathvariant", "normal")
    else:
        element.text = _PRIVATE.sub(lambda m: names.get(m.group(), ""), element.text)


def _fixed(element: ET.Element) -> None:
    if element.tag == "mo" and _WORD.fullmatch(element.text or ""):
        element.tag = "mi"  # \min, \max: a function's name, min(1, t) rather than min (1, t)
    if element.tag == "msup" and len(element) == 2 and element[1].text in _PRIMES:
        element.tag, element[1].tag = "mrow", "mo"  # f' as f′: the prime's glyph is raised already
        element[1].attrib.clear()
    if element.tag == "mtd" and element.get("columnalign") in ("left", "right", "center"):
        element.set("style", f"text-align: {element.get('columnalign')}")  # Chromium ignores columnalign


def _stretch_brackets(parent: ET.Element) -> None:
    """``<mo>[</mo><mtable/><mo>]</mo>`` in an ``<mrow>`` of their own, the brackets stretching to the
    table's height (in a longer row they would stretch to its tallest part, or not at all)."""
    children = list(parent)
    i = 0
    while i + 2 < len(children):
        left, table, right = children[i : i + 3]
        closing = _BRACKETS.get((left.text or "").strip()) if left.tag == "mo" else None
        closed = right.tag == "mo" and (right.text or "").strip() == closing
        if not (closing and table.tag == "mtable" and closed):
            i += 1
            continue
        row = ET.Element("mrow")
        for mo, form in ((left, "prefix"), (right, "postfix")):
            mo.attrib = {"stretchy": "true", "fence": "true", "symmetric": "true", "form": form}
        at = list(parent).index(left)
        for child in (left, table, right):
            parent.remove(child)
            row.append(child)
        parent.insert(at, row)
        i += 3


def _numbers_apart(row: ET.Element) -> None:
    """A dot between a number and a number right after it: 0.05 ⋅ 0.5^x, not 0.050.5^x."""
    for left, right in itertools.pairwise(list(row)):
        if _ends_in_number(left) and _starts_with_number(right):
            dot = ET.Element("mo")
            dot.text = "\u22c5"
            row.insert(list(row).index(right), dot)


def _starts_with_number(element: ET.Element) -> bool:
    if element.tag == "mn":
        return True
    return element.tag in _ROWS | _SCRIPTS and len(element) > 0 and _starts_with_number(element[0])


def _ends_in_number(element: ET.Element) -> bool:
    return element.tag == "mn" or (element.tag in _ROWS and len(element) > 0 and _ends_in_number(element[-1]))


def _written(root: ET.Element) -> str:
    """The MathML as text, ASCII only (character references for the rest)."""
    return ET.tostring(root, encoding="us-ascii").decode("ascii")


def _failed(latex: str) -> str:
    """LaTeX that latex2mathml could not convert, as text in an error box."""
    root = ET.Element("math", {"xmlns": MATHML, "display": "inline"})
    ET.SubElement(ET.SubElement(root, "merror"), "mtext").text = latex
    return _written(root)


def equation_mathml(lhs: sympy.Expr, rhs: sympy.Expr, op: str = "=") -> str:
    return _convert(f"{nt.latex(lhs)} {OPS[op]} {nt.latex(rhs)}")


def mathml(lhs: sympy.Expr, rhs: sympy.Expr, op: str, rows: list[tuple[str, str]], data: bool = True) -> str:
    """The equation, then "where" each symbol's value (LaTeX pairs), one per line; ``data``: whether the
    values are the first example's (a model without data has no examples)."""
    lines = [rf"{nt.latex(lhs)} {OPS[op]} {nt.latex(rhs)}"]
    if rows:
        lines.append(r"\text{where, for the first example:}" if data else r"\text{where:}")
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
