"""The formulas dlc play shows, as MathML: well-formed, names whole and upright, subscripts kept, matrix
brackets that stretch, and nothing but MathML whatever a model names (tests/test_play_browser.py renders
them; these read the markup only)."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import sympy

pytest.importorskip("latex2mathml", reason="dlc play needs the extra dlc[play]")

from dlc.backends.common import update_formulas
from dlc.compiler import read_model
from dlc.grad import notation as nt
from dlc.grad.formulas import derive
from dlc.playground.mathml import equation_mathml, mathml, matrix_latex

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.dlc"))
NS = "{http://www.w3.org/1998/Math/MathML}"

#: Presentation MathML (MathML Core and MathML 3): no element of HTML or SVG, no href, no event handler.
MATHML_ELEMENTS = {
    "math", "mrow", "mi", "mn", "mo", "ms", "mtext", "mspace", "msub", "msup", "msubsup", "munder", "mover",
    "munderover", "mfrac", "msqrt", "mroot", "mstyle", "mpadded", "mphantom", "menclose", "merror", "mtable",
    "mtr", "mtd", "mlabeledtr", "mmultiscripts", "mprescripts", "none", "semantics", "annotation",
}  # fmt: skip
MATHML_ATTRIBUTES = {
    "xmlns", "display", "mathvariant", "stretchy", "fence", "form", "separator", "accent", "accentunder",
    "symmetric", "largeop", "movablelimits", "lspace", "rspace", "minsize", "maxsize", "width", "height",
    "depth", "linethickness", "columnalign", "rowalign", "columnspacing", "rowspacing", "columnlines",
    "rowlines", "frame", "framespacing", "equalrows", "equalcolumns", "displaystyle", "scriptlevel",
    "notation", "align", "rowspan", "columnspan",
}  # fmt: skip
#: The one attribute of ours that is CSS: a table cell's alignment, for Chromium, which ignores columnalign.
ALIGNED = {"text-align: left", "text-align: right", "text-align: center"}
TOKENS = {"mi", "mn", "mo", "mtext", "ms"}

#: A model whose names look like markup, LaTeX or attributes, with every odd use of '_' the language allows.
ODD = """
model odd

input  x__ : [2]
target y_ : [1]

param script : [4, 2] = glorot
param b__lt : [4] = zeros
param W_out_amp : [1, 4] = glorot
param gt_ : [1] = zeros

on__load(z) = z * sigmoid(z)
text_mathrm(z) = tanh(z)

x_img_src = script @ x__ + b__lt
hidden_out = on__load(text_mathrm(x_img_src))
frac_1 = W_out_amp @ hidden_out + gt_

output sigmoid(frac_1)
loss bce_with_logits(frac_1, y_)

optimizer evil_opt(lr_href = 0.1, style_ = 0.5) {
    state x_javascript_
    x_javascript_ = style_ * x_javascript_ + gradient
    w = w - lr_href * x_javascript_
}

train {
    optimizer  = evil_opt
    batch_size = 4
    epochs     = 1
}
"""


def _formulas(model) -> list[str]:
    """The MathML of a model's derived formulas and of its optimizer's update, as the page gets them."""
    out = []
    for _, eqs in derive(model.graph).sections():
        out += [equation_mathml(e.lhs, e.rhs) for e in eqs]
    optimizer = model.graph.train.optimizer
    if optimizer is not None:
        out += [equation_mathml(sympy.Symbol(k, real=True), f, op) for k, op, f in update_formulas(optimizer)]
    return out


@pytest.fixture(scope="module")
def shown() -> dict[str, list[str]]:
    """Each example's formulas, by the example's name."""
    return {p.stem: _formulas(read_model(p)) for p in EXAMPLES}


def _update(optimizer: str) -> list[str]:
    """The MathML of an optimizer's update, chosen as ``dlc play`` does (a call replacing the model's)."""
    chosen = read_model(ROOT / "examples" / "xor.dlc", optimizer).graph.train.optimizer
    return [equation_mathml(sympy.Symbol(k, real=True), f, op) for k, op, f in update_formulas(chosen)]


def _tree(markup: str) -> ET.Element:
    root = ET.fromstring(markup)
    assert root.tag == NS + "math"
    return root


def _local(element: ET.Element) -> str:
    assert element.tag.startswith(NS), element.tag
    return element.tag[len(NS) :]


def _check_mathml_only(markup: str) -> None:
    """Well-formed MathML: MathML elements and attributes only, text only in token elements."""
    assert "<script" not in markup.lower()
    for element in _tree(markup).iter():
        name = _local(element)
        assert name in MATHML_ELEMENTS, (name, markup)
        for key, value in element.attrib.items():
            if key == "style":
                assert name == "mtd" and value in ALIGNED, (value, markup)
                continue
            assert key in MATHML_ATTRIBUTES, (key, markup)
        if name not in TOKENS and name != "annotation":
            assert not (element.text or "").strip(), (name, element.text, markup)
        assert not (element.tail or "").strip(), (name, element.tail, markup)


def _identifiers(markup: str) -> list[str]:
    return [e.text or "" for e in _tree(markup).iter(NS + "mi")]


def _subscripts(markup: str) -> list[tuple[str, str]]:
    """(base, subscript) as text, for every msub and msubsup."""
    out = []
    for e in _tree(markup).iter():
        if _local(e) in ("msub", "msubsup"):
            base, sub = e[0], e[1]
            out.append(("".join(base.itertext()), "".join(sub.itertext())))
    return out


def _letters_apart(markup: str) -> list[str]:
    """Runs of single upright letters side by side: a name split into one identifier per letter."""
    runs = []
    for parent in _tree(markup).iter():
        run: list[str] = []
        for child in [*parent, None]:
            single = (
                child is not None
                and _local(child) == "mi"
                and child.get("mathvariant") == "normal"
                and len(child.text or "") == 1
            )
            if single:
                run.append(child.text)
                continue
            if len(run) > 1:
                runs.append("".join(run))
            run = []
    return runs


# --- every example


def test_every_examples_formulas_are_mathml_and_nothing_else(shown: dict[str, list[str]]) -> None:
    assert len(shown) == len(EXAMPLES) >= 10
    for formulas in shown.values():
        assert formulas
        for markup in formulas:
            assert markup.startswith("<math")
            _check_mathml_only(markup)


def test_no_name_is_split_into_letters(shown: dict[str, list[str]]) -> None:
    for markup in (m for formulas in shown.values() for m in formulas):
        assert _letters_apart(markup) == [], markup


def test_function_names_are_one_identifier_each(shown: dict[str, list[str]]) -> None:
    names = {name for formulas in shown.values() for m in formulas for name in _identifiers(m)}
    for wanted in (
        "softmax_cross_entropy", "bce_with_logits", "conv2d", "max_pool2d", "max_pool2d_backward",
        "conv_transpose2d", "conv2d_weight", "softmax", "relu", "reshape", "mse", "sum", "step", "onehot",
    ):  # fmt: skip
        assert wanted in names, wanted
    # Spelled as written, never with LaTeX's escapes left in.
    assert not any("\\" in name for name in names)


def test_names_are_upright_single_identifiers(shown: dict[str, list[str]]) -> None:
    everything = [m for formulas in shown.values() for m in formulas]
    for name in ("logit", "scores", "hidden", "theta", "Wx", "Wh", "padding", "softmax_cross_entropy"):
        found = [e for m in everything for e in _tree(m).iter(NS + "mi") if e.text == name]
        assert found, name
        assert all(e.get("mathvariant") == "normal" for e in found), name


def test_delta_of_a_named_value_keeps_the_name_as_its_subscript(shown: dict[str, list[str]]) -> None:
    subscripts = {s for m in shown["xor"] for s in _subscripts(m)}
    assert ("\u03b4", "logit") in subscripts and ("\u03b4", "hidden") in subscripts
    delta = next(m for m in shown["xor"] if ("\u03b4", "logit") in _subscripts(m))
    sub = next(e for e in _tree(delta).iter(NS + "msub") if "".join(e[1].itertext()) == "logit")[1]
    assert [_local(e) for e in sub.iter() if _local(e) in TOKENS] == ["mi"]


def test_subscripts_stay_subscripts(shown: dict[str, list[str]]) -> None:
    subscripts = {s for formulas in shown.values() for m in formulas for s in _subscripts(m)}
    for pair in (
        ("W", "1"), ("W", "2"), ("h", "1"), ("b", "1"), ("z", "3"), ("\u03b4", "3"), ("\u03b4", "1"),
        ("K", "1"), ("conv", "1"), ("pool", "2"), ("W", "image"), ("b", "class"), ("w", "value"),
    ):  # fmt: skip
        assert pair in subscripts, pair
    w1 = next(e for m in shown["digits"] for e in _tree(m).iter(NS + "msub") if "".join(e.itertext()) == "W1")
    assert [_local(e) for e in w1] == ["mi", "mrow"] and w1[0].text == "W"
    assert [_local(e) for e in w1[1]] == ["mn"]


# --- the optimizer's update


@pytest.mark.parametrize(
    ("optimizer", "names"),
    [
        (
            "sgd(lr = 0.1, momentum = 0.9, weight_decay = 0.01)",
            ["weight_decay", "velocity", "momentum", "lr"],
        ),
        ("adam(weight_decay = 0.01)", ["weight_decay", "step_size", "root_correction", "eps"]),
        ("adamw", ["weight_decay", "step_size", "root_correction"]),
        ("rmsprop", ["weight_decay", "square_avg", "buffer", "rho"]),
        ("adagrad", ["weight_decay", "sum_squares"]),
    ],
)
def test_setting_names_with_underscores_are_one_identifier(optimizer: str, names: list[str]) -> None:
    formulas = _update(optimizer)
    identifiers = {name for m in formulas for name in _identifiers(m)}
    for markup in formulas:
        _check_mathml_only(markup)
        assert _letters_apart(markup) == []
    for name in names:
        assert name in identifiers, (name, identifiers)
    # weight_decay is a name, not "weight" with the subscript "decay".
    subscripts = {s for m in formulas for s in _subscripts(m)}
    assert not {("weight", "decay"), ("step", "size"), ("square", "avg"), ("sum", "squares")} & subscripts


def test_numbered_settings_keep_their_subscript() -> None:
    formulas = _update("adam")
    assert ("beta", "1") in {s for m in formulas for s in _subscripts(m)}


def test_a_models_own_optimizer_names(shown: dict[str, list[str]]) -> None:
    identifiers = {name for m in shown["momentum"] for name in _identifiers(m)}
    assert {"past_velocity", "learning_rate", "velocity", "momentum"} <= identifiers


def test_a_schedule_keeps_numbers_apart_and_min_a_function() -> None:
    formulas = _update("sgd(lr = 0.05 * warmup(step, 100) * step_decay(epoch, 3, 0.5))")
    lr = next(m for m in formulas if _identifiers(m)[:1] == ["lr"])
    tree = _tree(lr)
    assert "min" in _identifiers(lr) and not any(e.text == "min" for e in tree.iter(NS + "mo"))
    # 0.05 ⋅ 0.5^⌊epoch/3⌋, not 0.050.5^⌊epoch/3⌋: no number right after a number.
    for parent in tree.iter():
        children = list(parent)
        for a, b in itertools.pairwise(children):
            assert not (_local(a) == "mn" and _leading(b) == "mn"), lr
    assert "\u22c5" in [e.text for e in tree.iter(NS + "mo")]


def _leading(element: ET.Element) -> str:
    """The first token element that is written of ``element`` (a script's base comes first)."""
    while _local(element) not in TOKENS and len(element):
        element = element[0]
    return _local(element)


# --- values plugged in


def _bracketed_tables(markup: str) -> list[ET.Element]:
    """The elements with a table and a bracket among their children."""
    return [
        e
        for e in _tree(markup).iter()
        if any(_local(c) == "mtable" for c in e)
        and any(_local(c) == "mo" and c.text in ("[", "]") for c in e)
    ]


@pytest.mark.parametrize(
    "value",
    [
        np.arange(3.0),
        np.arange(4.0).reshape(2, 2),
        np.linspace(-1, 1, 100).reshape(10, 10),
        np.ones((2, 3, 4)),
    ],
)
def test_matrix_brackets_stretch_around_the_table_alone(value: np.ndarray) -> None:
    lhs, rhs = sympy.Symbol("h1", real=True), sympy.Symbol("z1", real=True)
    markup = mathml(lhs, rhs, "=", [(nt.latex(sympy.Symbol("W1", real=True)), matrix_latex(value))])
    _check_mathml_only(markup)
    rows = _bracketed_tables(markup)
    assert len(rows) == 1
    left, table, right = list(rows[0])
    assert (_local(left), _local(table), _local(right)) == ("mo", "mtable", "mo")
    assert (left.text, right.text) == ("[", "]")
    for mo, form in ((left, "prefix"), (right, "postfix")):
        assert mo.get("stretchy") == "true" and mo.get("fence") == "true" and mo.get("form") == form


def test_a_number_has_no_brackets() -> None:
    markup = mathml(
        sympy.Symbol("c", real=True), sympy.Symbol("d", real=True), "=", [("c", matrix_latex(2.5))]
    )
    _check_mathml_only(markup)
    assert _bracketed_tables(markup) == []


def test_plugged_rows_are_left_aligned_and_name_settings_and_gradients_whole() -> None:
    lhs = nt.Grad(sympy.Symbol("W1", real=True))
    rows = [
        (nt.latex(sympy.Symbol("\u2202L/\u2202W1", real=True)), matrix_latex(np.ones((2, 2)))),
        (nt.latex(sympy.Symbol("weight_decay", real=True)), "0.01"),
        ("t", "3"),
    ]
    markup = mathml(lhs, sympy.Symbol("g", real=True), "=", rows)
    _check_mathml_only(markup)
    tree = _tree(markup)
    assert "weight_decay" in _identifiers(markup)
    assert len(list(tree.iter(NS + "mfrac"))) == 2  # the equation's ∂L/∂W₁ and the row's
    assert all(e.get("style") == "text-align: left" for e in tree.iter(NS + "mtd") if e.get("columnalign"))
    assert "first example" in "".join(tree.itertext()).replace("\xa0", " ")


def test_a_derivatives_prime_follows_the_name() -> None:
    u = sympy.Symbol("u", real=True)
    markup = equation_mathml(nt.Deriv(sympy.Symbol("relu"), u), sympy.Function("step")(u))
    _check_mathml_only(markup)
    assert _identifiers(markup)[0] == "relu"
    assert "\u2032" in [e.text for e in _tree(markup).iter(NS + "mo")]


# --- what a model names cannot become markup


def test_odd_identifiers_give_mathml_and_nothing_else() -> None:
    model = read_model(ODD)
    formulas = _formulas(model)
    assert len(formulas) > 10
    for markup in formulas:
        _check_mathml_only(markup)
        assert _letters_apart(markup) == []
    identifiers = {name for m in formulas for name in _identifiers(m)}
    assert {"script", "hidden_out", "on__load", "text_mathrm", "lr_href", "style_", "gt_"} <= identifiers


def test_text_that_is_not_xml_is_shown_escaped() -> None:
    """latex2mathml copies \\text{} verbatim; what does not parse as XML is shown as text, never as markup."""
    x = sympy.Symbol("x", real=True)
    markup = mathml(x, x, "=", [("x", r"\text{<script>alert(1)</script>}"), ("y", r"\text{a & b}")])
    assert "<script" not in markup.lower()
    root = _tree(markup)
    assert [_local(e) for e in root] == ["merror"]
    assert "<script>" in "".join(root.itertext())
