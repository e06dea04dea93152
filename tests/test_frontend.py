"""Names, function expansion, shapes and the graph they produce."""

from __future__ import annotations

import pytest
import sympy

from dlc.errors import DlcError
from dlc.frontend import load, load_source
from dlc.graph import nodes as g
from dlc.graph.printer import format_graph
from dlc.graph.scalar import element_symbol, sigmoid

from .conftest import EXAMPLES, ROOT

HEADER = """
input x : [4]
target y : [3]
param W : [3, 4] = glorot
param b : [3] = zeros
"""


def graph_of(body: str) -> g.Node:
    return load_source(HEADER + body).graph  # type: ignore[return-value]


def node_of(expr: str) -> g.Node:
    graph = load_source(HEADER + f"output {expr}\nloss mse(W @ x + b, y)").graph
    return graph.outputs["output"]


@pytest.mark.parametrize(
    ("expr", "shape", "batched"),
    [
        ("W @ x", (3,), True),
        ("W @ x + b", (3,), True),
        ("transpose(W) @ b", (4,), False),
        ("b @ W", (4,), False),
        ("W @ transpose(W)", (3, 3), False),
        ("x @ x", (), True),
        ("sum(W)", (), False),
        ("sum(W, 0)", (4,), False),
        ("mean(W, axis = -1)", (3,), False),
        ("softmax(W @ x)", (3,), True),
        ("logsumexp(W @ x)", (), True),
        ("concat(b, W @ x)", (6,), True),
        ("W * 2 + 1", (3, 4), False),
        ("W + x", (3, 4), True),
        ("mse(W @ x, b)", (), True),  # an output may not read the target y
    ],
)
def test_shapes_are_inferred_per_example(expr: str, shape: tuple[int, ...], batched: bool) -> None:
    node = node_of(expr)
    assert node.shape == shape
    assert node.batched is batched


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("W @ b", "cannot apply @ to [3, 4] and [3]: inner dimensions 4 and 3 differ"),
        ("x @ W", "cannot apply @ to [4] and [3, 4]"),
        ("b + x", "cannot apply + to [3] and [4]"),
        ("transpose(b)", "transpose needs a matrix, not [3]"),
        ("sum(W, 2)", "axis 2 is out of range for [3, 4]"),
        ("mse(x, y)", "mse needs a prediction and a target of one shape, not [4] and [3]"),
        ("concat(W, b)", "cannot concat [3, 4] and [3]"),
        ("sqrt(-1) * b", "not a finite real number"),
    ],
)
def test_shape_errors_name_both_shapes(expr: str, message: str) -> None:
    with pytest.raises(DlcError) as info:
        node_of(expr)
    assert message in info.value.message
    assert info.value.span is not None


def test_the_lecture_composition_is_literal() -> None:
    graph = load(ROOT / "examples" / "seed_chain.dlc").graph
    matmuls = [n for n in graph.nodes() if isinstance(n, g.MatMul)]
    # f(W1, W2, W3) is called twice (output and loss) but expanded once.
    assert [m.inputs[0].name for m in matmuls] == ["W3", "W2", "W1"]  # type: ignore[attr-defined]
    assert [p.name for p in graph.params] == ["W3", "W2", "W1"]
    assert graph.loss.shape == () and not graph.loss.batched


def test_user_activation_is_fused_into_one_sympy_body() -> None:
    graph = load(ROOT / "examples" / "seed_chain.dlc").graph
    x0 = element_symbol(0)
    bodies = [n.expr for n in graph.nodes() if isinstance(n, g.Elementwise)]
    assert x0 * sigmoid(x0) in bodies  # swish(z) = z * sigmoid(z), one node


def test_fusion_merges_a_run_but_not_across_a_broadcast() -> None:
    graph = load_source(
        HEADER
        + """
        h = tanh(W @ x + b) * 2 - 1
        s = exp(b) + 1
        output h + s
        loss mse(h, y)
        """
    ).graph
    ew = [n for n in graph.nodes() if isinstance(n, g.Elementwise)]
    # tanh(. + b) * 2 - 1 is one node; exp(b) + 1 stays apart (it is per-parameter,
    # [3], while h is per-example, [B, 3]); h + s is the output.
    exprs = {str(n.expr) for n in ew}
    assert "2*tanh(x0 + x1) - 1" in exprs
    assert "exp(x0) + 1" in exprs
    assert len(ew) == 3


def test_equal_subexpressions_are_shared() -> None:
    graph = load_source(HEADER + "output tanh(W @ x) + tanh(W @ x)\nloss mse(W @ x, y)").graph
    assert sum(isinstance(n, g.MatMul) for n in graph.nodes()) == 1


def test_bce_of_sigmoid_becomes_the_logit_form() -> None:
    graph = load_source(
        HEADER.replace("[3]", "[1]").replace("[3, 4]", "[1, 4]") + "loss bce(sigmoid(W @ x + b), y)"
    ).graph
    losses = [n for n in graph.nodes() if isinstance(n, g.Loss)]
    assert [n.kind for n in losses] == ["bce_logits"]


def test_functions_take_keyword_arguments_and_see_globals() -> None:
    graph = load_source(
        HEADER + "layer(M, v) = tanh(M @ v + b)\noutput layer(v = x, M = W)\nloss mse(layer(W, x), y)"
    ).graph
    assert graph.outputs["output"].shape == (3,)


def test_values_may_be_defined_after_use() -> None:
    graph = load_source(HEADER + "loss mse(z, y)\nz = W @ x + b").graph
    assert graph.loss.shape == ()


def test_a_loss_without_data_is_not_averaged_over_a_batch() -> None:
    graph = load_source("param w : [] = constant(2)\nloss (w ** 2 - 1) ** 2").graph
    assert not isinstance(graph.loss, g.Reduce)
    assert graph.inputs == ()


def test_warnings_for_unused_definitions() -> None:
    model = load_source(HEADER + "param V : [2] = zeros\nunused(a) = a\nloss mse(W @ x + b, y)")
    messages = [w.message for w in model.warnings]
    assert "parameter 'V' does not affect the loss" in messages
    assert "'unused' is defined but never used" in messages


def test_train_settings_and_defaults() -> None:
    graph = load_source(
        HEADER
        + "loss mse(W @ x + b, y)\n"
        + "train { optimizer = sgd(lr = 0.5, nesterov = true, momentum = 0.9) epochs = 3 }"
    ).graph
    t = graph.train
    settings = {k: float(v) for k, v in t.optimizer.settings}
    assert (settings["lr"], settings["momentum"], settings["nesterov"]) == (0.5, 0.9, 1.0)
    assert (t.optimizer.name, t.epochs, t.batch_size, t.seed) == ("sgd", 3, 32, 0)


def test_initializers_are_recorded() -> None:
    graph = load_source("param w : [2] = normal(0.1)\nparam V : [2, 2] = he\nloss sum(V @ w)").graph
    assert [str(p.init) for p in graph.params] == ["normal(0.1)", "he"]


def test_numbers_stay_exact() -> None:
    node = node_of("W * 0.1")
    assert isinstance(node, g.Elementwise)
    assert node.expr == element_symbol(0) * sympy.Rational(1, 10)


def test_expansion_is_not_exponential() -> None:
    # Each level calls the one below twice: 2**40 calls if expanded naively.
    levels = ["f0(v) = tanh(v)"] + [f"f{i}(v) = f{i - 1}(v) + f{i - 1}(v)" for i in range(1, 41)]
    graph = load_source(HEADER + "\n".join(levels) + "\nloss mse(f40(W @ x), y)").graph
    assert len(graph.nodes()) < 200


def test_deep_function_chains_are_an_error_not_a_crash() -> None:
    levels = ["f0(v) = v"] + [f"f{i}(v) = f{i - 1}(v) + 1" for i in range(1, 2000)]
    with pytest.raises(DlcError, match="more than 300 levels"):
        load_source(HEADER + "\n".join(levels) + "\nloss mse(f1999(W @ x), y)")


def test_huge_shapes_are_refused_before_allocating() -> None:
    with pytest.raises(DlcError, match="more than 1e"):
        load_source("param W : [100000, 100000] = zeros\nloss sum(W)")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_check_and_print(path: object) -> None:
    model = load(path)  # type: ignore[arg-type]
    assert model.warnings == ()
    text = format_graph(model.graph)
    assert text.startswith("model ")
    assert "loss" in text


def test_nested_activations_print_and_differentiate() -> None:
    # Renaming symbols for printing once sent SymPy's assumptions into exponential work.
    from dlc.grad.formulas import derive

    graph = load_source(HEADER + "loss mse(" + "tanh(" * 60 + "W @ x" + ")" * 60 + ", y)").graph
    assert "tanh(tanh(" in format_graph(graph)
    assert "∂L/∂W" in derive(graph).text()


def test_names_are_checked_in_unused_definitions_too() -> None:
    with pytest.raises(DlcError, match="undefined name 'hiden'"):
        load_source(HEADER + "probe = sum(hiden)\nloss mse(W @ x, y)")
    with pytest.raises(DlcError, match="takes 1 argument, but 2 were given"):
        load_source(HEADER + "unused(v) = tanh(v, v)\nloss mse(W @ x, y)")
