"""Compile work grows with the model, not faster: counted here, timed in benchmarks/compile_time.py.

Three ways a short model used to take minutes (issue 14):

- functions that call another twice, g_i(u) = g_{i-1}(sin u) + g_{i-1}(cos u):
  2^i distinct operations, inherent to the model; refused once the calls
  have expanded to ``MAX_EXPANDED`` operations, however many levels follow;
- a long sum or product of distinct values, fused into one body of k inputs:
  the reverse sweep takes k partial derivatives of a body of size O(k),
  so fused bodies read at most ``MAX_BODY_INPUTS`` inputs;
- printing the formulas of a sum of thousands of terms, whose print order
  SymPy finds in O(n^2): a long sum keeps its stored order.

What is counted: operations built, and the size of the bodies differentiated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sympy

from benchmarks.compile_time import concat_copies, parameter_product, parameter_tree, swell_functions
from dlc.errors import DlcError
from dlc.frontend import load_source
from dlc.frontend.lower import MAX_EXPANDED
from dlc.grad import differentiate, rules
from dlc.grad.notation import text
from dlc.graph.graph import Builder


def operations_built(source: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, DlcError | None]:
    """How many nodes the builders are asked for while ``source`` is loaded, and the error if refused."""
    count = 0
    add = Builder.add

    def counted(self: Builder, node: Any) -> Any:
        nonlocal count
        count += 1
        return add(self, node)

    with monkeypatch.context() as m:
        m.setattr(Builder, "add", counted)
        try:
            load_source(source, "growth.dlc")
        except DlcError as err:
            return count, err
    return count, None


def test_exponential_function_expansion_is_refused_early(monkeypatch: pytest.MonkeyPatch) -> None:
    small, err = operations_built(swell_functions(8), monkeypatch)
    assert err is None
    at_15, err_15 = operations_built(swell_functions(15), monkeypatch)
    at_40, err_40 = operations_built(swell_functions(40), monkeypatch)
    for err in (err_15, err_40):
        assert err is not None and f"more than {MAX_EXPANDED:,} operations" in err.message
        assert err.span is not None and err.hint is not None
    # 2^40 operations would never end; the refusal comes after the same bounded work.
    assert at_40 < 1.5 * at_15 < 10 * MAX_EXPANDED, (at_15, at_40)
    assert small < at_15


def differentiated_size(source: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """The total size (as trees) of the bodies whose partial derivatives the reverse sweep takes."""
    graph = load_source(source, "growth.dlc").graph
    total = 0
    partial = rules._partial

    def counted(expr: sympy.Expr, x: sympy.Symbol) -> sympy.Expr:
        nonlocal total
        total += sum(1 for _ in sympy.preorder_traversal(expr))
        return partial(expr, x)

    with monkeypatch.context() as m:
        m.setattr(rules, "_partial", counted)
        differentiate(graph)
    return total


@pytest.mark.parametrize(("make", "n"), [(parameter_tree, 100), (parameter_product, 40)])
def test_the_reverse_sweep_grows_linearly(
    make: Callable[[int], str], n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = differentiated_size(make(n), monkeypatch)
    large = differentiated_size(make(4 * n), monkeypatch)
    # Linear is 4x; one fused body of all the terms, as before, was 16x.
    assert large < 6 * small, (small, large)


def test_a_long_sum_prints_in_its_stored_order(monkeypatch: pytest.MonkeyPatch) -> None:
    ordered = []
    as_ordered_terms = sympy.Expr.as_ordered_terms

    def counted(self: sympy.Expr, *args: Any, **kwargs: Any) -> Any:
        ordered.append(len(self.args))
        return as_ordered_terms(self, *args, **kwargs)

    monkeypatch.setattr(sympy.Expr, "as_ordered_terms", counted)
    terms = [sympy.Symbol(f"w{i}") ** 2 for i in range(2000)]
    printed = text(sympy.Add(*terms) - sympy.Symbol("b"))
    assert printed.count("+") == len(terms) - 1 and printed.endswith("- b")
    assert not any(n > 64 for n in ordered), "SymPy's O(n^2) print order was used for a long sum"
    assert text(sympy.Symbol("b") - sympy.Symbol("a")) == "b - a"


def test_a_long_concat_is_a_tree_of_short_ones() -> None:
    from dlc.compiler import compile_source, load_module
    from dlc.frontend.builtins import MAX_CONCAT
    from dlc.graph.graph import topological_order
    from dlc.graph.nodes import Concat

    n = 200
    params = "".join(f"param p{i} : [1] = constant({i})\n" for i in range(n))
    source = params + "loss sum(concat(" + ", ".join(f"p{i}" for i in range(n)) + ") ** 2)\n"
    model = load_source(source, "concat.dlc")
    concats = [x for x in topological_order([model.graph.loss]) if isinstance(x, Concat)]
    assert max(len(x.inputs) for x in concats) <= MAX_CONCAT < n
    module = load_module(compile_source(model), "long_concat")
    loss, grads = module.value_and_grad(module.init_params(0), None, None)
    assert loss == sum(i * i for i in range(n))
    assert grads["p17"][0] == 34
    # n copies of one tensor: the groups are equal nodes, shared.
    copies = load_source(concat_copies(4000), "copies.dlc").graph
    assert len(topological_order([copies.loss])) < 20


def test_a_value_used_many_times_sums_its_cotangents_in_a_tree() -> None:
    from dlc.grad.backprop import MAX_SUMMED
    from dlc.graph.nodes import Elementwise

    n = 300
    terms = ", ".join(f"w * {i + 1}" for i in range(n))
    graph = load_source(f"param w : [2] = ones\nloss sum(concat({terms}))\n", "uses.dlc").graph
    program = differentiate(graph)
    widest = max(len(x.inputs) for x in program.nodes() if isinstance(x, Elementwise))
    assert widest <= MAX_SUMMED < n
