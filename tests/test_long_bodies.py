"""Long sums and products: bounded fused bodies, generated code Python can parse, no traceback.

Python parses ``a + b + c + ...`` as a left-nested tree; a few thousand
terms in one expression exceed its parser's recursion limit, so a generated
module with one would not import. Fusion keeps bodies at most
``MAX_BODY_SIZE`` nodes, and the NumPy printer writes any longer sum or
product (a body built whole, such as a gradient summed over many uses) as a
balanced tree of brackets. Sizes and depths are counted, not timed.
"""

from __future__ import annotations

import ast

import numpy as np
import pytest
import sympy

from dlc import cli
from dlc.backends.numpy.printer import print_body
from dlc.compiler import compile_source, load_module
from dlc.frontend import load_source
from dlc.graph.fuse import MAX_BODY_SIZE
from dlc.graph.graph import topological_order
from dlc.graph.nodes import Elementwise
from dlc.graph.scalar import element_symbol

TERMS = 3000


def depth(tree: ast.AST) -> int:
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((child, d + 1) for child in ast.iter_child_nodes(node))
    return deepest


@pytest.mark.parametrize("combine", [sympy.Add, sympy.Mul])
def test_a_long_body_prints_as_code_python_parses(combine: type) -> None:
    xs = [element_symbol(i) for i in range(TERMS)]
    body = combine(
        *(sympy.sin(x) * (i % 7 + 1) if combine is sympy.Add else sympy.cos(x) for i, x in enumerate(xs))
    )
    names = [f"a[{i}]" for i in range(TERMS)]
    lines, expr, _ = print_body(body, names, "t")
    assert not lines
    tree = ast.parse(expr, mode="eval")  # a RecursionError when printed flat
    assert depth(tree) < 100
    a = np.linspace(-1, 1, TERMS)
    weights = np.arange(TERMS) % 7 + 1
    want = np.sum(weights * np.sin(a)) if combine is sympy.Add else np.prod(np.cos(a))
    assert eval(compile(tree, "<body>", "eval"), {"np": np, "a": a}) == pytest.approx(want, rel=1e-12)


def long_sum(n: int, per_value: int = 100) -> str:
    """A sum of n terms w_i * x in named values of ``per_value`` terms (a flat sum nests a level a term)."""
    params = "".join(f"param w{i} : [] = constant({i / n})\n" for i in range(n))
    values = [
        f"a{k} = " + " + ".join(f"w{i} * x" for i in range(k, min(k + per_value, n))) + "\n"
        for k in range(0, n, per_value)
    ]
    total = " + ".join(f"a{k}" for k in range(0, n, per_value))
    return "input x : [2]\ntarget y : [2]\n" + params + "".join(values) + f"loss mse({total}, y)\n"


def test_fused_bodies_stay_bounded_and_the_module_runs() -> None:
    n = 300
    model = load_source(long_sum(n))
    sizes = [
        sum(1 for _ in sympy.preorder_traversal(node.expr))
        for node in topological_order([model.graph.loss])
        if isinstance(node, Elementwise)
    ]
    assert max(sizes) <= MAX_BODY_SIZE < sum(sizes), sizes
    module = load_module(compile_source(model), "long_sum")
    X, Y = np.array([[1.0, 2.0]]), np.zeros((1, 2))
    params = module.init_params(0)
    loss, grads = module.value_and_grad(params, X, Y)
    total = sum(i / n for i in range(n))
    assert loss == pytest.approx(np.mean((total * X) ** 2), rel=1e-12)
    assert grads["w7"] == pytest.approx(np.mean(2 * total * X * X), rel=1e-12)


def test_a_recursion_error_is_a_message_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    def too_deep(args: object) -> int:
        raise RecursionError("maximum recursion depth exceeded during compilation")

    monkeypatch.setitem(cli.COMMANDS, "compile", (too_deep, cli.COMMANDS["compile"][1]))
    assert cli.main(["compile", "model.dlc"]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("dlc: error: the model is too large to compile")
    assert "Traceback" not in err
