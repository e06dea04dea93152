"""Hints for the habits users bring: close names only, user-facing op names, and shapes.

Each case is a small model, the message it must get, where (line:col), the
hint that must appear and the misleading hints that must not. Front end only.
"""

from __future__ import annotations

import pytest

from dlc.errors import DlcError
from dlc.frontend import load_source
from dlc.frontend.builtins import BUILTINS
from dlc.frontend.hints import FOREIGN, closest
from dlc.graph import nodes
from dlc.graph import ops as g
from dlc.graph.printer import LOSS_NAMES

#: Names a lookalike foreign function would be taken for.
MATHS = ["relu", "tanh", "sigmoid", "sin", "cos", "exp", "log", "mse", "sum", "mean", "sqrt", "abs"]
HEAD = "input x : [2]\ntarget y : [1]\nparam W : [1, 2] = glorot\n"


def error_of(source: str) -> DlcError:
    with pytest.raises(DlcError) as info:
        load_source(source)
    return info.value


def check(
    source: str,
    where: tuple[int, int],
    message: str,
    hint: str | None = None,
    absent: tuple[str, ...] = (),
) -> DlcError:
    """The model is refused at ``where`` with ``message``, ``hint`` and none of ``absent``."""
    err = error_of(source)
    assert err.span is not None
    assert (err.span.line, err.span.column) == where, err.render()
    assert message in err.message, err.render()
    shown = err.render().splitlines()
    assert shown[0].startswith(f"<model>:{where[0]}:{where[1]}: error: ")
    assert shown[1] == "    " + source.split("\n")[where[0] - 1]
    assert shown[2].index("^") == 4 + where[1] - 1
    if hint is None:
        assert err.hint is None or "did you mean" not in err.hint, err.render()
    else:
        assert err.hint is not None and hint in err.hint, err.render()
    for text in absent:
        assert text not in err.render(), err.render()
    return err


# ------------------------------------------------------------- suggestions


@pytest.mark.parametrize(
    ("name", "candidates", "want"),
    [
        ("sigmod", BUILTINS, "sigmoid"),
        ("tahn", BUILTINS, "tanh"),
        ("softmax_crossentropy", BUILTINS, "softmax_cross_entropy"),
        ("Relu", BUILTINS, "relu"),
        ("W3", ["W1", "W2", "x"], "W2"),
        ("b", ["x", "y", "W1", "b1"], "b1"),
        ("xx", ["x", "y", "W"], "x"),
        ("adma", ["sgd", "adam", "adamw"], "adam"),
        ("zero", ["zeros", "ones", "he"], "zeros"),
        ("spirals", ["xor", "spiral", "moons"], "spiral"),
        # not close: no suggestion
        ("z", ["x", "y", "W"], None),
        ("xavier", ["zeros", "ones", "constant", "normal", "uniform", "glorot", "he"], None),
        ("mean_squared_error", BUILTINS, None),
        # functions from other frameworks, not misspellings of dlc's
        ("min", MATHS, None),
        ("max", MATHS, None),
        ("tan", MATHS, None),
        ("gelu", MATHS, None),
        ("sign", MATHS, None),
        ("cosh", MATHS, None),
        ("where", ["here", "w"], None),
        ("reshape", ["shape"], None),
        ("exp2", MATHS, None),
    ],
)
def test_closest_suggests_only_close_names(name: str, candidates: list[str], want: str | None) -> None:
    assert closest(name, candidates) == want


def test_foreign_names_are_function_names() -> None:
    assert all(name.isidentifier() and name.islower() for name in FOREIGN)
    assert {"min", "max", "tan", "gelu", "where", "reshape"} <= FOREIGN


@pytest.mark.parametrize("name", ["tan", "gelu", "cosh", "sign", "argmax", "log2"])
def test_a_function_from_elsewhere_gets_no_lookalike(name: str) -> None:
    check(
        HEAD + f"loss mse({name}(W @ x), y)\n",
        (4, 10),
        f"unknown function '{name}'",
        absent=("did you mean",),
    )


def test_a_misspelt_function_is_still_suggested() -> None:
    check(
        HEAD + "loss mse(sigmod(W @ x), y)\n", (4, 10), "unknown function 'sigmod'", "did you mean sigmoid?"
    )


def test_a_misspelt_layer_gets_its_neighbour() -> None:
    source = (
        "input x : [2]\ntarget y : [1]\nparam W1 : [8, 2] = glorot\nparam W2 : [1, 8] = glorot\n"
        "loss mse(W3 @ tanh(W1 @ x), y)\n"
    )
    check(source, (5, 10), "undefined name 'W3'", "did you mean W2?", absent=("W1?",))


def test_a_name_unlike_any_gets_no_suggestion() -> None:
    check(HEAD + "loss mse(W @ z, y)\n", (4, 14), "undefined name 'z'", absent=("did you mean",))


def test_initializer_suggestion() -> None:
    check(
        HEAD.replace("glorot", "zero") + "loss mse(W @ x, y)\n",
        (3, 20),
        "unknown initializer",
        "did you mean zeros?",
    )


@pytest.mark.parametrize(
    ("setting", "message", "hint"),
    [
        ("optimiser = adam", "unknown training setting 'optimiser'", "did you mean optimizer?"),
        ("batchsize = 8", "unknown training setting 'batchsize'", "did you mean batch_size?"),
        ("optimizer = Adam", "unknown optimizer 'Adam'", "did you mean adam?"),
        ("optimizer = rmsprob", "unknown optimizer 'rmsprob'", "did you mean rmsprop?"),
    ],
)
def test_training_settings_suggestions(setting: str, message: str, hint: str) -> None:
    source = HEAD + f"loss mse(W @ x, y)\ntrain {{\n    {setting}\n}}\n"
    err = error_of(source)
    assert message in err.message and err.hint == hint, err.render()
    assert err.span is not None and err.span.line == 6


def test_an_optimizer_formula_suggests_only_close_names() -> None:
    body = "    w = w - lrr * g\n"
    source = (
        HEAD + "loss mse(W @ x, y)\noptimizer mine(lr = 0.1) {\n" + body + "}\ntrain { optimizer = mine }\n"
    )
    check(source, (6, 13), "unknown name 'lrr'", "did you mean lr?")
    source = source.replace("lrr * g", "lr * tan(g)")
    check(source, (6, 18), "'tan' cannot be used", absent=("did you mean",))


# -------------------------------------------------------- the user's names


@pytest.mark.parametrize(
    "call",
    [
        "mse(W @ x, y)",
        "bce(sigmoid(W @ x), y)",
        "bce(W @ x, y)",
        "bce_with_logits(W @ x, y)",
        "softmax_cross_entropy(W @ x, y)",
    ],
)
def test_a_loss_is_named_as_the_user_wrote_it(call: str) -> None:
    source = HEAD.replace("target y : [1]", "target y : [3]") + f"loss {call}\n"
    name = call.split("(")[0]
    err = check(source, (4, 6), f"{name} needs a prediction and a target of one shape, not [1] and [3]")
    assert not {"bce_logits", "softmax_ce"} & set(err.message.split()), err.message


@pytest.mark.parametrize("kind", sorted(LOSS_NAMES))
def test_loss_messages_never_show_an_internal_kind(kind: str) -> None:
    a, b = g.input_node("p", "input", (2,)), g.input_node("y", "target", (3,))
    with pytest.raises(nodes.ShapeError) as info:
        g.loss(kind, a, b)
    assert str(info.value).startswith(f"{LOSS_NAMES[kind]} needs")


def test_softmax_cross_entropy_of_a_scalar_names_the_function() -> None:
    source = "input x : [2]\ntarget y : []\nparam w : [2] = glorot\nloss softmax_cross_entropy(w @ x, y)\n"
    source = source.replace("glorot", "zeros")
    check(source, (4, 6), "softmax_cross_entropy needs a vector of class scores")


# ---------------------------------------------------------------- shapes

TORCH = "input x : [4]\ntarget y : [16]\nparam W : [4, 16] = glorot\n"


def test_weights_declared_in_out_get_the_transposed_shape() -> None:
    err = check(
        TORCH + "loss mse(W @ x, y)\n",
        (4, 12),
        "cannot apply @ to [4, 16] and [4]: inner dimensions 16 and 4 differ",
        "dlc writes weights as [out, in] (math orientation, W @ x): did you mean W : [16, 4]?",
    )
    (note,) = err.notes
    assert note.message == "W is declared [4, 16] here"
    assert note.span is not None and (note.span.line, note.span.column) == (3, 11)


def test_weights_in_out_inside_a_function_name_the_argument() -> None:
    source = (
        "input x : [4]\ntarget y : [16]\nparam W1 : [4, 16] = glorot\n"
        "dense(W, v) = tanh(W @ v)\nloss mse(dense(W1, x), y)\n"
    )
    err = check(source, (4, 22), "cannot apply @", "did you mean W1 : [16, 4]?")
    assert [n.message for n in err.notes] == ["W1 is declared [4, 16] here", "in this call of dense"]


def test_a_matrix_that_is_no_parameter_gets_transpose() -> None:
    source = "input A : [4, 3]\ntarget y : [3]\nparam v : [4] = zeros\nloss mse(A @ v, y)\n"
    check(source, (4, 12), "cannot apply @", "did you mean transpose(A) @ v?", absent=("A : [",))


def test_no_orientation_hint_when_the_transpose_does_not_fit() -> None:
    source = "input x : [5]\ntarget y : [3]\nparam W : [3, 4] = glorot\nloss mse(W @ x, y)\n"
    err = check(source, (4, 12), "inner dimensions 4 and 5 differ")
    assert err.hint is None and not err.notes


def test_vector_times_matrix_gets_the_math_order() -> None:
    check(
        HEAD + "loss mse(x @ W, y)\n",
        (4, 12),
        "cannot apply @ to [2] and [1, 2]",
        "(math orientation, W @ x): did you mean W @ x?",
    )


@pytest.mark.parametrize(
    ("header", "expr", "message", "hint"),
    [
        (
            "input x : [4]\ntarget y : [16]\nparam W : [4, 16] = glorot\n",
            "x * W",
            "cannot apply * to [4] and [4, 16]: shapes do not broadcast",
            "for a matrix product write x @ W",
        ),
        (
            "input x : [5]\ntarget y : [3]\nparam A : [3, 4] = glorot\nparam B : [4, 5] = glorot\n",
            "(A * B) @ x",
            "cannot apply * to [3, 4] and [4, 5]",
            "for a matrix product write A @ B",
        ),
        (
            TORCH,
            "W * x",
            "cannot apply * to [4, 16] and [4]",
            "for a matrix product declare W : [16, 4] and write W @ x",
        ),
    ],
)
def test_star_where_a_matrix_product_was_meant(header: str, expr: str, message: str, hint: str) -> None:
    line = header.count("\n") + 1
    column = len("loss mse(") + expr.index("*") + 1
    check(header + f"loss mse({expr}, y)\n", (line, column), message, hint)


@pytest.mark.parametrize(
    ("header", "expr"),
    [
        ("input x : [5]\ntarget y : [3]\nparam W : [3, 4] = glorot\n", "sum(W * x, 1)"),  # no product fits
        ("input x : [4]\ntarget y : [3]\nparam b : [3] = zeros\n", "b * x"),  # two vectors
    ],
)
def test_star_gets_no_product_hint_when_none_fits(header: str, expr: str) -> None:
    err = error_of(header + f"loss mse({expr}, y)\n")
    assert "shapes do not broadcast" in err.message
    assert err.hint is None and "@" not in err.render().split("\n", 3)[-1]


def test_star_that_broadcasts_is_not_questioned() -> None:
    # [16, 4] * [4] is a valid (if large) elementwise product: no error, and no warning either.
    source = "input x : [4]\ntarget y : []\nparam W : [16, 4] = glorot\nloss mse(sum(W * x), y)\n"
    assert load_source(source).warnings == ()


def test_other_operators_keep_their_message() -> None:
    source = "input x : [4]\ntarget y : [3]\nparam W : [3, 4] = glorot\nparam b : [4] = zeros\n"
    err = check(source + "loss mse(W @ x + b, y)\n", (5, 16), "cannot apply + to [3] and [4]")
    assert err.hint is None
