"""Number literals beyond float64: a positioned error, never a traceback or an exact big-number path.

A literal means the float64 nearest to it (every number is a float64 at run
time). One that float64 would make infinite, or round to 0 although it is not
0, is an error at the literal; a literal of thousands of digits inside the
range costs no more than a short one. Costs are counted (the size of the
exact number the graph holds), not timed.
"""

from __future__ import annotations

import pytest
import sympy

from dlc.compiler import compile_source, load_module
from dlc.errors import DlcError
from dlc.frontend import load_source
from dlc.graph import nodes
from dlc.graph.graph import topological_order

TEMPLATE = "param w : [2] = ones\nloss sum(w * {})\n"
CONST_TEMPLATE = "param w : [2] = ones\nconst c = {}\nloss sum(w * c)\n"

OUT_OF_RANGE = [
    ("1e-4300", "too small"),
    ("1e-999999", "too small"),
    ("0." + "0" * 4310 + "1", "too small"),
    ("1e400", "too large"),
    ("1" * 4310, "too large"),
    ("2" * 309, "too large"),
]


@pytest.mark.parametrize(("literal", "message"), OUT_OF_RANGE)
@pytest.mark.parametrize("template", [TEMPLATE, CONST_TEMPLATE])
def test_out_of_range_literals_are_positioned_errors(literal: str, message: str, template: str) -> None:
    source = template.format(literal)
    with pytest.raises(DlcError) as info:
        load_source(source, "m.dlc")
    err = info.value
    assert message in err.message
    assert err.span is not None
    line = source.split("\n")[err.span.line - 1]
    assert line[err.span.column - 1 :].lstrip("-").startswith(literal[:20])
    rendered = err.render()
    assert rendered.startswith(f"m.dlc:{err.span.line}:{err.span.column}: error: number '")
    assert "^" in rendered
    assert len(rendered) < 1000, "the literal is shortened in the message"


def literal_values(source: str) -> list[sympy.Expr]:
    graph = load_source(source).graph
    order = topological_order([graph.loss])
    return [e for n in order if isinstance(n, nodes.Elementwise) for e in n.expr.atoms(sympy.Rational)]


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("1." + "3" * 4310, 1.3333333333333333),
        ("0." + "0" * 300 + "25", 2.5e-301),
        ("1e-310", 1e-310),  # subnormal: not 0, so kept
        ("0.0e-999999", 0.0),
        ("0" * 4000 + "7", 7.0),
    ],
)
def test_long_literals_in_range_are_the_nearest_float(literal: str, value: float) -> None:
    values = literal_values(TEMPLATE.format(literal))
    # A float64 as an exact rational has at most ~330 digits (1e-310 is 1/10**310), not the literal's 4,310.
    assert all(v.p.bit_length() + v.q.bit_length() < 1100 for v in values), values
    module = load_module(compile_source(load_source(TEMPLATE.format(literal))), "literal_model")
    params = module.init_params(0)
    assert module.loss(params, None, None) == pytest.approx(2 * value, rel=1e-15, abs=0)
