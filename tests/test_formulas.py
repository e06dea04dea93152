"""Derived formulas: readable, named, one per parameter; LaTeX that parses as math."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sympy

from dlc.cli import main
from dlc.frontend import load, load_source
from dlc.grad import differentiate
from dlc.grad.formulas import derive
from dlc.graph.stats import stats

from .conftest import EXAMPLES, ROOT

SEED_CHAIN = ROOT / "examples" / "seed_chain.dlc"


def test_the_chain_rule_runs_back_through_a_b_c() -> None:
    d = derive(load(SEED_CHAIN).graph)
    lines = d.text().splitlines()

    def has(formula: str) -> bool:
        return any(line.strip().startswith(formula) for line in lines)

    # forward: c, then b, then a
    assert has("z₁ = W₃ x") and has("h₁ = tanh(z₁)") and has("z₃ = W₁ h₂")
    # backward: the output layer's delta, then back through b (swish) and c (tanh)
    assert has("δ₃ = (softmax(z₃) - y)/B")
    assert has("δ₂ = (W₁ᵀ δ₃) ⊙ (")
    assert has("δ₁ = (W₂ᵀ δ₂) ⊙ (1 - h₁²)")  # tanh' written with the layer's output
    assert has("∂L/∂W₃ = Σ_b (δ₁ xᵀ)")
    assert has("∂L/∂W₁ = Σ_b (δ₃ h₂ᵀ)")
    assert has("swish'(z) = ")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_parameter_gets_a_formula(path: Path) -> None:
    graph = load(path).graph
    d = derive(graph)
    assert set(d.gradients) == {p.name for p in graph.params}
    for eq in (*d.forward, *d.backward, *d.gradients.values(), *d.derivatives):
        assert isinstance(eq.rhs, sympy.Basic)
        assert eq.text() and eq.latex()
    # Named terms instead of repetition: no gradient formula nests a matrix product
    # inside another elementwise expansion of a forward value.
    for eq in d.gradients.values():
        assert "tanh" not in eq.text() and "σ" not in eq.text()


def balanced_latex(s: str) -> bool:
    depth = 0
    for ch in re.sub(r"\\[{}]", "", s):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0 and s.count(r"\left") == s.count(r"\right")


KNOWN_COMMANDS = {
    "left", "right", "frac", "sum", "odot", "partial", "sigma", "delta", "ell", "tanh",
    "operatorname", "mathrm", "hat", "log", "exp", "sin", "cos", "sqrt", "begin", "end",
    "cdot", "alpha", "_",
    "\\",  # a double backslash ends a row of an aligned block
}  # fmt: skip


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_latex_is_well_formed(path: Path) -> None:
    d = derive(load(path).graph)
    tex = d.latex()
    assert balanced_latex(tex)
    commands = set(re.findall(r"\\([A-Za-z]+|.)", tex))
    assert commands <= KNOWN_COMMANDS, commands - KNOWN_COMMANDS
    assert d._repr_latex_().startswith("$$")
    for eq in d.gradients.values():
        assert eq._repr_latex_().startswith("$$") and balanced_latex(eq.latex())


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_latex_parses_with_mathtext(path: Path) -> None:
    mathtext = pytest.importorskip("matplotlib.mathtext")
    parser = mathtext.MathTextParser("path")
    d = derive(load(path).graph)
    for eq in (*d.forward, *d.backward, *d.gradients.values(), *d.derivatives):
        parser.parse(f"${eq.latex()}$")


def test_user_and_built_in_derivatives() -> None:
    graph = load_source(
        "input x : [2]\ntarget y : [2]\nparam W : [2, 2] = glorot\n"
        "mish(z) = z * tanh(softplus(z))\nloss mse(relu(W @ x) + mish(W @ x), y)"
    ).graph
    d = derive(graph)
    text = {eq.text().split(" = ")[0]: eq.text() for eq in d.derivatives}
    assert text["relu'(u)"] == "relu'(u) = step(u)"
    assert text["tanh'(u)"] == "tanh'(u) = 1 - tanh(u)²"
    assert "mish'(z)" in text


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_gradients_cost_at_most_three_forward_passes(path: Path) -> None:
    program = differentiate(load(path).graph)
    forward, total = stats(program.graph.nodes()), stats(program.nodes())
    assert 1 < total.flops / forward.flops <= 3.0


def test_cli_grad_formats(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["grad", str(SEED_CHAIN)]) == 0
    assert "∂L/∂W₂" in capsys.readouterr().out
    assert main(["grad", str(SEED_CHAIN), "--format", "latex", "--wrt", "W2"]) == 0
    out = capsys.readouterr().out
    assert r"\frac{\partial L}{\partial W_{2}}" in out and r"\partial W_{1}}" not in out
    assert main(["grad", str(SEED_CHAIN), "--format", "markdown", "--stats"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Gradients of `seed_chain`") and "| $" in out
    assert "gradients cost" in out
    assert main(["grad", str(SEED_CHAIN), "--wrt", "W9"]) == 2
    assert "not a parameter" in capsys.readouterr().err


def test_cli_check_passes_and_fails(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["check", str(SEED_CHAIN)]) == 0
    assert "passed" in capsys.readouterr().out
    # Break the tanh rule on purpose: the check must notice and exit 1.
    from dlc.grad import rules
    from dlc.graph.nodes import Elementwise

    original = rules.VJP[Elementwise]

    def wrong(node, g, i, b):  # type: ignore[no-untyped-def]
        return rules.ew(b, lambda c: 1.1 * c, original(node, g, i, b))

    monkeypatch.setitem(rules.VJP, Elementwise, wrong)
    assert main(["check", str(SEED_CHAIN)]) == 1
    assert "FAILED" in capsys.readouterr().out
