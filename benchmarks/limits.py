"""Times of large and deep inputs, start to result or to error: the times tests do not assert.

    python -m benchmarks.limits [--quick]

``tests/test_limits.py`` checks that each of these inputs gives the right
result or a clear error, and counts what it can (bytes, calls); how long
each takes depends on the machine and its neighbours, so it is measured
here, one case at a time in this process, and printed as a table with the
bound the project aims at (seconds on a 2-core machine). ``--quick`` uses
inputs a tenth the size.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from dlc.compiler import compile_source, load_module
from dlc.errors import DlcError
from dlc.frontend import load_source


def _parameters(n: int) -> str:
    source = "input x : [1]\n" + "".join(f"param p{i} : [1] = zeros\n" for i in range(n))
    return source + "loss sum((concat(" + ", ".join(f"p{i}" for i in range(n)) + ") - x) ** 2)\n"


def _statements_on_one_line(n: int) -> str:
    line = "param w : [2] = zeros input x : [2] " + " ".join(f"v{i} = w * {i} + x" for i in range(n))
    return line + f" loss sum(v{n - 1} ** 2) + sum(v17)"


def _function_chain(n: int) -> str:
    body = "".join(f"f{i}(a) = f{i - 1}(a) + 1\n" for i in range(1, n))
    return f"param w : [] = zeros\nf0(a) = a * 2\n{body}loss f{n - 1}(w) ** 2\n"


def _value_chain(n: int) -> str:
    body = "".join(f"a{i} = a{i - 1} * 1.5 + w\n" for i in range(1, n))
    return f"param w : [] = zeros\na0 = w\n{body}loss a{n - 1} ** 2\n"


def _long_line_with_a_mistake(n: int) -> str:
    return "param w : [1] = zeros " + " ".join(f"a{i} = w * {i}" for i in range(n)) + " loss sum(w) +"


def _compile_and_run(source: str) -> Any:
    module = load_module(compile_source(load_source(source, "limits.dlc")), "limits")
    return module.init_params(0)


#: name -> (make the input from a size, what to run on it, bound in seconds at full size).
CASES: dict[str, tuple[Callable[[int], str], Callable[[str], Any], float]] = {
    "N parameters, compiled": (_parameters, _compile_and_run, 20.0),
    "N statements on one line, compiled": (_statements_on_one_line, _compile_and_run, 20.0),
    "N chained functions, refused": (_function_chain, lambda s: load_source(s, "c.dlc"), 5.0),
    "N chained values, checked": (_value_chain, lambda s: load_source(s, "c.dlc"), 20.0),
    "N statements on a line with a mistake at its end": (
        _long_line_with_a_mistake,
        lambda s: load_source(s, "line.dlc"),
        20.0,
    ),
}


def measure(size: int) -> list[tuple[str, str, float, float]]:
    """(case, outcome, seconds, bound) for each case at ``size``."""
    rows = []
    for name, (make, run, bound) in CASES.items():
        source = make(size)
        began = time.perf_counter()
        try:
            run(source)
            outcome = "ok"
        except DlcError as err:
            outcome = "error: " + err.message[:50]
        rows.append((name, outcome, time.perf_counter() - began, bound))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="inputs a tenth the size")
    args = parser.parse_args()
    size = 1_000 if args.quick else 10_000
    print(f"| case (N = {size:,}) | outcome | seconds | bound (s) |\n| --- | --- | ---: | ---: |")
    for name, outcome, seconds, bound in measure(size):
        print(f"| {name} | {outcome} | {seconds:.2f} | {bound:g} |")


if __name__ == "__main__":
    main()
