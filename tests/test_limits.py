"""Input at and past dlc's limits: clear errors, in bounded time and memory, never a crash.

The limits are those of docs/language.md ("Limits"): 1 MiB files, 64-character
names, nesting of 256 levels within an expression and 300 through functions,
10^9 elements per tensor. Deeply nested input runs in a subprocess each, so
that a stack overflow would show as a failed test rather than end the run.

No test here asserts a time: on a shared machine a time says more about the
neighbours than about dlc. Costs are counted instead (bytes allocated, Python
calls made as an input doubles); the times of the large cases are measured
by ``python -m benchmarks.limits``. Subprocesses have generous timeouts, as
guards against a hang only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dlc.compiler import compile_source, load_module
from dlc.errors import DlcError
from dlc.frontend import load, load_source
from dlc.frontend.parser import MAX_SOURCE_BYTES

from .conftest import ROOT

DEEP = 10_000
#: Seconds after which a subprocess is taken to hang (a guard, not a measure of speed).
HANG_S = 600


def assert_positioned(err: DlcError, source: str) -> None:
    assert err.span is not None, err.render()
    lines = source.split("\n")
    assert 1 <= err.span.line <= len(lines)
    rendered = err.render()
    assert "Traceback" not in rendered
    assert len(rendered) < 2000, "a long line is shown as a window around the spot"


def measure(fn: Callable[[], Any]) -> tuple[Any, int]:
    """``fn()``'s result (or the exception it raised) and its peak traced bytes."""
    tracemalloc.start()
    try:
        result: Any = fn()
    except Exception as exc:
        result = exc
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, peak


def calls(fn: Callable[[], Any]) -> int:
    """How many functions (Python and built-in) ``fn()`` calls: a cost that a busy machine does not change."""
    count = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        fn()
    except DlcError:
        pass
    finally:
        sys.setprofile(None)
    return count


# --------------------------------------------------------------- huge shapes

HUGE = {
    "param": "param W : [100000, 100000] = zeros\nloss sum(W)\n",
    "param_just_over": "param W : [1000000001] = zeros\nloss sum(W)\n",
    "input": "input x : [40000, 40000]\nparam w : [] = zeros\nloss sum(x) * w\n",
    "target": (
        "input x : [1]\ntarget y : [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]\n"
        "param w : [] = zeros\nloss sum(y) * w + sum(x)\n"
    ),
    "rank_ten": "param W : [10, 10, 10, 10, 10, 10, 10, 10, 10, 10] = zeros\nloss sum(W)\n",
    "outer_product": "param a : [100000, 1] = zeros\nparam b : [1, 100000] = zeros\nloss sum(a * b)\n",
    "matmul": "param a : [100000, 1] = zeros\nparam b : [1, 100000] = zeros\nloss sum(a @ b)\n",
    "concat": "param a : [600000000] = zeros\nloss sum(concat(a, a))\n",
    "broadcast_in_function": (
        "param a : [50000] = zeros\nparam b : [50000, 1] = zeros\nf(u, v) = u + v\nloss sum(f(a, b))\n"
    ),
    "dimension_digits": "param W : [99999999999999999999] = zeros\nloss sum(W)\n",
}


@pytest.mark.parametrize("case", list(HUGE))
def test_huge_shape_is_an_error_before_any_allocation(case: str) -> None:
    source = HUGE[case]
    result, peak = measure(lambda: compile_source(load_source(source, "huge.dlc")))
    assert isinstance(result, DlcError), result
    assert_positioned(result, source)
    assert "1e+09 elements" in result.message or "too large" in result.message, result.message
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_largest_allowed_tensor_compiles_without_allocating() -> None:
    """10^9 elements is allowed: compiling such a model must not allocate it."""
    source = "input x : [1000000000]\nparam W : [1000000000] = zeros\nloss sum(W * x)\n"
    result, peak = measure(lambda: compile_source(load_source(source, "big.dlc")))
    assert isinstance(result, str), result
    assert peak < 50 * 2**20


# --------------------------------------------------------------- deep nesting


def _calls(n: int) -> str:
    return "param w : [] = zeros\nloss " + "tanh(" * n + "w" + ")" * n + "\n"


def _user_calls(n: int) -> str:
    return "param w : [] = zeros\nf(a) = a * 2\nloss " + "f(" * n + "w" + ")" * n + "\n"


def _function_chain(n: int) -> str:
    body = "".join(f"f{i}(a) = f{i - 1}(a) + 1\n" for i in range(1, n))
    return f"param w : [] = zeros\nf0(a) = a * 2\n{body}loss f{n - 1}(w) ** 2\n"


def _value_chain(n: int) -> str:
    body = "".join(f"a{i} = a{i - 1} * 1.5 + w\n" for i in range(1, n))
    return f"param w : [] = zeros\na0 = w\n{body}loss a{n - 1} ** 2\n"


def _reversed_value_chain(n: int) -> str:
    body = "".join(f"a{i} = a{i + 1} + 1\n" for i in range(n - 1))
    return f"loss a0 ** 2\n{body}a{n - 1} = w\nparam w : [] = zeros\n"


NESTED: dict[str, str] = {
    "parentheses": "param w : [] = zeros\nloss " + "(" * DEEP + "w" + ")" * DEEP + " ** 2\n",
    "unary_minus": "param w : [] = zeros\nloss " + "-" * DEEP + "w ** 2\n",
    "minus_in_parentheses": "param w : [] = zeros\nloss " + "(-(" * DEEP + "w" + "))" * DEEP + " ** 2\n",
    "builtin_calls": _calls(DEEP),
    "user_function_calls": _user_calls(DEEP),
    "right_nested_products": "param w : [] = zeros\nloss " + "w * (" * DEEP + "w" + ")" * DEEP + "\n",
    "long_sum": "param w : [] = zeros\nloss " + " + ".join(["w"] * DEEP) + "\n",
    "power_tower": "param w : [] = zeros\nloss " + "w ** " * DEEP + "1\n",
    "function_chain": _function_chain(DEEP),
    "named_value_chain": _value_chain(DEEP),
    "named_values_backwards": _reversed_value_chain(DEEP),
    "constant_brackets": "param w : [] = zeros\nconst c = "
    + "[" * DEEP
    + "1"
    + "]" * DEEP
    + "\nloss (w - c) ** 2\n",
    "keyword_arguments": "param w : [] = zeros\nf(a) = a\nloss " + "f(a = " * DEEP + "w" + ")" * DEEP + "\n",
}
#: Parentheses alone do not count as nesting (docs/language.md, Limits): that file may compile.
MAY_COMPILE = {"parentheses"}
#: A chain of named values is not nesting: each is lowered on its own (tests/test_named_chains.py).
MUST_COMPILE = {"named_value_chain", "named_values_backwards"}

RUN_CASE = r"""
import json, resource, sys
sys.path.insert(0, {root!r})
from tests.test_limits import NESTED
from dlc.compiler import compile_source
from dlc.errors import DlcError
from dlc.frontend import load_source
source = NESTED[sys.argv[1]]
out = {{}}
try:
    compile_source(load_source(source, "deep.dlc"))
    out["outcome"] = "compiled"
except DlcError as err:
    out.update(outcome="DlcError", message=err.message, span=None if err.span is None else repr(err.span),
               rendered=len(err.render()))
except BaseException as exc:
    out.update(outcome=type(exc).__name__, message=str(exc)[:300])
out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def nested_results() -> dict[str, dict[str, Any]]:
    """Each nested input checked in its own interpreter, two at a time."""
    results: dict[str, dict[str, Any]] = {}
    names = list(NESTED)
    script = RUN_CASE.format(root=str(ROOT))
    running: list[tuple[str, subprocess.Popen[str]]] = []
    while names or running:
        while names and len(running) < 2:
            name = names.pop(0)
            proc = subprocess.Popen(
                [sys.executable, "-c", script, name],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            running.append((name, proc))
        name, proc = running.pop(0)
        try:
            out, err = proc.communicate(timeout=HANG_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            results[name] = {"outcome": "timeout", "stderr": err[-2000:]}
            continue
        if proc.returncode != 0 or not out.strip():
            results[name] = {"outcome": f"exit {proc.returncode}", "stderr": err[-2000:]}
        else:
            results[name] = json.loads(out.strip().splitlines()[-1])
    return results


@pytest.mark.slow
@pytest.mark.parametrize("case", list(NESTED))
def test_deep_nesting_is_a_clear_error(case: str, nested_results: dict[str, dict[str, Any]]) -> None:
    r = nested_results[case]
    print(f"{case}: {r.get('outcome')}, max RSS {r.get('max_rss_mb', float('nan')):.0f} MB")
    if case in MAY_COMPILE and r["outcome"] == "compiled":
        return
    if case in MUST_COMPILE:
        assert r["outcome"] == "compiled", r
        assert r["max_rss_mb"] < 2000, r
        return
    assert r["outcome"] == "DlcError", r
    assert r["span"] is not None, r
    assert "nested" in r["message"] or "nests" in r["message"] or "dimensions" in r["message"], r
    # A chain of calls ends in one "in this call of" note per level shown (150 of them): long but bounded.
    assert r["rendered"] < (50_000 if case == "function_chain" else 2000)
    assert r["max_rss_mb"] < 2000, r


def test_function_chain_is_checked_in_linear_time() -> None:
    """10,000 chained functions took 8-16 s: the table of functions was rebuilt at each look-up
    (fixed in b327dcb). Twice the functions must cost about twice the calls, not four times."""
    small, large = (calls(lambda n=n: load_source(_function_chain(n), "chain.dlc")) for n in (2000, 4000))
    assert large < 2.5 * small, (small, large)


# --------------------------------------------------------------- file size


def test_file_just_over_the_limit_is_refused_quickly(tmp_path: Path) -> None:
    model = "param w : [] = zeros\nloss w ** 2\n"
    text = model + "#" + "x" * (MAX_SOURCE_BYTES - len(model)) + "\n"
    assert len(text.encode()) == MAX_SOURCE_BYTES + 2
    path = tmp_path / "big.dlc"
    path.write_text(text)
    result, peak = measure(lambda: load(path))
    assert isinstance(result, DlcError), result
    assert "larger than 1 MiB" in result.message
    assert peak < MAX_SOURCE_BYTES // 4, "the file is refused before it is read"
    result, peak = measure(lambda: load_source(text, "big.dlc"))
    assert isinstance(result, DlcError) and "larger than 1 MiB" in result.message
    assert peak < 4 * MAX_SOURCE_BYTES, "the text is refused before it is parsed"
    # Non-ASCII text counts in bytes: half a million two-byte characters is over the limit too.
    wide = model + "#" + "é" * (MAX_SOURCE_BYTES // 2) + "\n"
    result, _ = measure(lambda: load_source(wide, "wide.dlc"))
    assert isinstance(result, DlcError) and "larger than 1 MiB" in result.message


def test_file_at_the_limit_is_read(tmp_path: Path) -> None:
    model = "param w : [] = zeros\nloss w ** 2\n"
    text = model + "#" + "x" * (MAX_SOURCE_BYTES - len(model) - 2) + "\n"
    assert len(text.encode()) == MAX_SOURCE_BYTES
    path = tmp_path / "edge.dlc"
    path.write_text(text)
    result, _ = measure(lambda: load(path))
    assert not isinstance(result, Exception), result


def test_enormous_sparse_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.dlc"
    with open(path, "wb") as f:
        f.truncate(4 * 2**30)  # 4 GiB of zeros, on disk only as a hole
    result, peak = measure(lambda: load(path))
    assert isinstance(result, DlcError) and "larger than 1 MiB" in result.message
    assert peak < 2**20


@pytest.mark.slow
def test_command_line_refuses_a_big_file(tmp_path: Path) -> None:
    path = tmp_path / "big.dlc"
    path.write_text("param w : [] = zeros\nloss w ** 2\n#" + "x" * MAX_SOURCE_BYTES + "\n")
    run = subprocess.run(
        [sys.executable, "-m", "dlc", "show", str(path)], capture_output=True, text=True, timeout=HANG_S
    )
    assert run.returncode == 2
    assert "larger than 1 MiB" in run.stderr and "Traceback" not in run.stderr


# --------------------------------------------------------------- long lines and many statements


def test_very_long_line_with_a_mistake_at_its_end() -> None:
    line = "param w : [1] = zeros " + " ".join(f"a{i} = w * {i}" for i in range(DEEP)) + " loss sum(w) +"
    assert len(line) > 150_000
    result, _ = measure(lambda: load_source(line, "line.dlc"))
    assert isinstance(result, DlcError), result
    assert_positioned(result, line)
    assert result.span is not None and result.span.column > 150_000
    excerpt = result.render().splitlines()
    assert len(excerpt[1]) <= 110 and excerpt[2].strip() == "^", "a window around the spot, caret under it"


def test_very_long_comment_line() -> None:
    source = "param w : [] = zeros  # " + "\"\"\" ''' \\ " * 90_000 + "\nloss w ** 2\n"
    assert len(source) > 900_000
    result, _ = measure(lambda: compile_source(load_source(source, "comment.dlc")))
    assert isinstance(result, str), result


def test_long_line_of_deep_sum_is_refused() -> None:
    line = "param w : [] = zeros loss " + " + ".join(["w"] * 200_000)
    result, _ = measure(lambda: load_source(line, "sum.dlc"))
    assert isinstance(result, DlcError)
    assert_positioned(result, line)


@pytest.mark.slow
def test_ten_thousand_parameters_in_bounded_time() -> None:
    """10,000 parameter statements, all used (through one concat), on one line each."""
    n = DEEP
    source = "input x : [1]\n" + "".join(f"param p{i} : [1] = zeros\n" for i in range(n))
    source += "loss sum((concat(" + ", ".join(f"p{i}" for i in range(n)) + ") - x) ** 2)\n"
    module = load_module(compile_source(load_source(source, "many.dlc")), "many")
    params = module.init_params(0)
    value, grads = module.value_and_grad(params, np.ones((2, 1)), None)
    assert value == pytest.approx(1.0 * n) and len(grads) == n


@pytest.mark.slow
def test_ten_thousand_statements_on_one_line() -> None:
    """10,000 named values on a single line (most unused: warnings, not errors)."""
    line = "param w : [2] = zeros input x : [2] " + " ".join(f"v{i} = w * {i} + x" for i in range(DEEP))
    line += " loss sum(v9999 ** 2) + sum(v17)"
    result, _ = measure(lambda: load_source(line, "line.dlc"))
    assert not isinstance(result, Exception), result
    assert len(result.warnings) == DEEP - 2
    text, _ = measure(lambda: compile_source(result))
    assert isinstance(text, str), text


# --------------------------------------------------------------- names


@pytest.mark.parametrize("length", [65, 1000, 500_000])
def test_long_identifier_is_a_clear_error(length: int) -> None:
    name = "a" * length
    source = f"param {name} : [] = zeros\nloss {name} ** 2\n"
    result, peak = measure(lambda: load_source(source, "name.dlc"))
    assert isinstance(result, DlcError), result
    assert result.message == "name is longer than 64 characters"
    assert_positioned(result, source)
    assert result.span == result.span.__class__(1, 7, 1, 7 + length)
    assert peak < 50 * 2**20


def test_identifier_of_64_characters_is_fine() -> None:
    name = "W" + "_9" * 31 + "z"
    assert len(name) == 64
    model = load_source(f"param {name} : [2] = zeros\nloss sum({name} ** 2)\n")
    assert [p.name for p in model.graph.params] == [name]


# --------------------------------------------------------------- ranks and small files that cost much


def test_many_dimensions_of_one() -> None:
    source = "param W : [" + ", ".join(["1"] * 10_000) + "] = zeros\nloss sum(W)\n"
    result, _ = measure(lambda: compile_source(load_source(source, "rank.dlc")))
    assert isinstance(result, (str, DlcError)), result
    if isinstance(result, DlcError):
        assert_positioned(result, source)


@pytest.mark.parametrize("what", ["param", "input"])
def test_rank_over_numpy_limit_is_refused_or_runs(what: str) -> None:
    """A parameter of rank 65 (an input of rank 64, plus the batch axis) used to compile and then
    fail in NumPy, which allows 64 dimensions; dlc now allows 32 (b327dcb)."""
    dims = ", ".join(["1"] * (65 if what == "param" else 64))
    source = (
        f"param W : [{dims}] = zeros\nloss sum(W)\n"
        if what == "param"
        else f"input x : [{dims}]\nparam w : [] = zeros\nloss sum(x) * w\n"
    )
    try:
        module = load_module(compile_source(load_source(source, "rank.dlc")), "rank")
    except DlcError as err:
        assert err.span is not None
        return
    params = module.init_params(0)
    X = None if module.INPUT_SHAPE is None else np.ones((2, *module.INPUT_SHAPE))
    module.value_and_grad(params, X, None)


SMALL_BUT_COSTLY = {
    "power_tower_of_numbers": "param w : [] = zeros\nloss w * 9 ** 9 ** 9\n",
    "negative_huge_exponent": "param w : [] = zeros\nloss w * 3 ** -123456789012345678901234567890\n",
}


#: Runs ``dlc`` with a budget of function calls (Python and built-in): a cost that a busy
#: machine does not change. Over budget, it stops at once and says so.
RUN_BUDGETED = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from dlc.cli import main

class OverBudget(BaseException):
    pass

budget, count = int(sys.argv[1]), 0

def profile(frame, event, arg):
    global count
    if event in ("call", "c_call"):
        count += 1
        if count > budget:
            sys.setprofile(None)
            raise OverBudget

sys.setprofile(profile)
try:
    code = main(sys.argv[2:])
except OverBudget:
    code = "over budget"
finally:
    sys.setprofile(None)
print(json.dumps({"code": code, "calls": count}), file=sys.stderr)
"""
#: dlc show / grad of these small models make about a million calls.
CALL_BUDGET = 20_000_000


def run_budgeted(*args: str) -> tuple[dict[str, Any], str]:
    """``dlc ARGS`` under :data:`CALL_BUDGET`: its result ({"code", "calls"}) and its stderr."""
    try:
        run = subprocess.run(
            [sys.executable, "-c", RUN_BUDGETED, str(CALL_BUDGET), *args],
            capture_output=True,
            text=True,
            timeout=HANG_S,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"dlc {' '.join(args)} hangs")
    assert run.returncode == 0, run.stderr
    return json.loads(run.stderr.strip().splitlines()[-1]), run.stderr


@pytest.mark.slow
@pytest.mark.parametrize("case", list(SMALL_BUT_COSTLY))
def test_small_file_with_a_huge_constant_is_refused_quickly(case: str, tmp_path: Path) -> None:
    """9 ** 9 ** 9 (a 370-million-digit integer) used to be folded exactly by SymPy, for minutes
    and gigabytes; numbers alone are now estimated in floating point first (b327dcb)."""
    path = tmp_path / f"{case}.dlc"
    path.write_text(SMALL_BUT_COSTLY[case])
    result, stderr = run_budgeted("show", str(path))
    assert result["code"] == 2 and "Traceback" not in stderr, stderr


ROOT_MODELS = {
    "of_an_input": "loss sum(tanh(x ** (0.000000000000000000001 - 0.0008360693136790656) * x * w))\n",
    "of_a_number": "loss sum(tanh(x * w)) * pow(82738.31985814284, 6.953667965889348e-06)\n",
}


@pytest.mark.parametrize("case", list(ROOT_MODELS))
def test_power_to_a_fraction_with_a_huge_denominator(case: str, tmp_path: Path) -> None:
    """x ** (1e-21 - 0.000836...) is the 10^21-th root of a power to SymPy, whose derivative
    used to exhaust the memory, and a number to such a power was folded exactly, by factoring,
    for minutes (both found by fuzzing); such an exponent is now taken as a float."""
    source = "param w : [3] = normal(1)\ninput x : [3]\n" + ROOT_MODELS[case]
    path = tmp_path / "root.dlc"
    path.write_text(source)
    result, stderr = run_budgeted("grad", str(path))
    assert result["code"] == 0, (result, stderr)
    # The float exponent is the double nearest the written one: the gradient is right.
    module = load_module(compile_source(load_source(source, "root.dlc"), "numpy", "float64"), "root")
    params = module.init_params(0)
    X = np.random.default_rng(0).uniform(0.5, 2.0, size=(4, 3))
    _, grads = module.value_and_grad(params, X, None)
    h = 1e-6
    for k in range(3):
        step = np.zeros(3)
        step[k] = h
        up = module.loss({"w": params["w"] + step}, X, None)
        down = module.loss({"w": params["w"] - step}, X, None)
        assert grads["w"][k] == pytest.approx((up - down) / (2 * h), rel=1e-7)
