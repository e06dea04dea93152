"""The grammar and the AST builder: precedence, spans, limits."""

from __future__ import annotations

import pytest

from dlc.errors import DlcError
from dlc.frontend import ast
from dlc.frontend.parser import MAX_DEPTH, parse


def expr_of(text: str) -> ast.Expr:
    (stmt,) = parse(f"h = {text}").statements
    assert isinstance(stmt, ast.LetDef)
    return stmt.body


def show(e: ast.Expr) -> str:
    """Fully parenthesised form, to read precedence off."""
    if isinstance(e, ast.BinOp):
        return f"({show(e.left)} {e.op} {show(e.right)})"
    if isinstance(e, ast.Neg):
        return f"(-{show(e.operand)})"
    if isinstance(e, ast.Call):
        inner = [show(a) for a in e.args] + [f"{k.ident.text}={show(k.value)}" for k in e.keywords]
        return f"{e.func.text}({', '.join(inner)})"
    if isinstance(e, ast.Name):
        return e.ident.text
    return e.text


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("a + b * c", "(a + (b * c))"),
        ("a - b - c", "((a - b) - c)"),
        ("W @ x + b", "((W @ x) + b)"),
        ("a * b @ c", "((a * b) @ c)"),
        ("-x ** 2", "(-(x ** 2))"),
        ("x ^ 2 ^ 3", "(x ** (2 ** 3))"),
        ("2 ** -x", "(2 ** (-x))"),
        ("(a + b) * c", "((a + b) * c)"),
        ("f(a, g(b), k = 1)", "f(a, g(b), k=1)"),
        ("1.5e-3 * .5", "(1.5e-3 * .5)"),
    ],
)
def test_precedence_follows_python(text: str, tree: str) -> None:
    assert show(expr_of(text)) == tree


def test_spans_point_at_the_source() -> None:
    module = parse("# comment\nparam W : [2, 3] = normal(0.5)\nh = W @ x\n")
    param, let = module.statements
    assert isinstance(param, ast.ParamDecl) and isinstance(let, ast.LetDef)
    assert (param.name.span.line, param.name.span.column) == (2, 7)
    assert param.shape.dims == (2, 3)
    assert param.init.args == (0.5,)
    assert isinstance(let.body, ast.BinOp)
    assert (let.body.op_span.line, let.body.op_span.column) == (3, 7)
    assert (let.body.span.column, let.body.span.end_column) == (5, 10)


def test_statements_may_span_lines() -> None:
    module = parse("loss mse(\n  a,\n  b)\noutput a")
    assert [type(s) for s in module.statements] == [ast.LossStmt, ast.OutputStmt]


def test_constant_arrays_and_negative_numbers() -> None:
    (stmt,) = parse("const M = [[1, -2], [3.5, 4e1]]").statements
    assert isinstance(stmt, ast.ConstDecl)
    rows = stmt.value.value
    assert isinstance(rows, tuple)
    assert [[c.value for c in r.value] for r in rows] == [[1.0, -2.0], [3.5, 40.0]]  # type: ignore[union-attr]


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    deep = "h = " + "-" * 10_000 + "x"
    with pytest.raises(DlcError, match="nested more than"):
        parse(deep)
    calls = "h = " + "f(" * 10_000 + "x" + ")" * 10_000
    with pytest.raises(DlcError, match="nested more than"):
        parse(calls)
    assert parse("h = " + "-" * (MAX_DEPTH - 1) + "x")


@pytest.mark.parametrize(
    ("source", "line", "column", "message"),
    [
        ("model", 1, 6, "unexpected end of file; expected a name"),
        ("input x : [4", 1, 13, "unexpected end of file"),
        ("param W : [0] = zeros", 1, 12, "shape dimension '0'"),
        ("h = x $ 3", 1, 7, "unexpected character '$'"),
        ("input = 3", 1, 7, "unexpected '='"),
        ("param input : [2] = zeros", 1, 7, "unexpected"),
        ("h = 1e999", 1, 5, "too large"),
        ("h = f(a = 1, 2)", 1, 14, "positional argument after a keyword"),
        ("h = x\x00", 1, 6, "control character"),
        ("h = " + "a" * 65, 1, 5, "longer than 64"),
    ],
)
def test_syntax_errors_have_positions(source: str, line: int, column: int, message: str) -> None:
    with pytest.raises(DlcError) as info:
        parse(source)
    err = info.value
    assert message in err.message
    assert err.span is not None
    assert (err.span.line, err.span.column) == (line, column)


def test_keyword_as_name_gets_a_hint() -> None:
    with pytest.raises(DlcError) as info:
        parse("param loss : [2] = zeros")
    assert info.value.hint is not None and "keyword" in info.value.hint


def test_a_huge_dimension_is_an_error_not_a_crash() -> None:
    with pytest.raises(DlcError, match="too large"):
        parse("input x : [" + "9" * 5000 + "]")


def test_parenthesised_expressions_span_their_brackets() -> None:
    e = expr_of("(a + b) * c")
    assert isinstance(e, ast.BinOp)
    assert (e.left.span.column, e.left.span.end_column) == (5, 12)


def test_byte_order_mark_is_skipped() -> None:
    from dlc.frontend import load_source

    assert load_source("\ufeffparam w : [] = zeros\nloss w * w").graph.params
