"""Per-line times of dlc's generated training step next to the hand-written NumPy step.

    python -m benchmarks.lines [--size small] [--dtype float32] [--steps N]

Instruments every statement (including those inside loops and ifs) of dlc's
generated ``train_step`` and of what it calls (``_scalars``, ``_step``,
``_value_and_grad``, ``_update``), and of ``HandNumpy.step``, with a clock
read, runs both for ``--steps`` steps from the same state, and prints the
time per step spent on each source line, slowest first, with the minor page
faults it caused (fresh memory from the OS, touched for the first time). The
clock reads cost about 1 µs per line, the same for both sides.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import resource
import textwrap
import time
from collections import defaultdict

from benchmarks.peers import Dlc, HandNumpy
from benchmarks.spec import SIZES, load_spec, start_state

_MARK = "_F[{i}] += _mf() - _f[0]; _T[{i}] += _pc() - _t[0]; _f[0] = _mf(); _t[0] = _pc()"


class _Instrument(ast.NodeTransformer):
    """After every statement: charge the time since the last mark to that statement's line."""

    def __init__(self, lines: dict[int, str], source: list[str]) -> None:
        self.lines, self.source = lines, source

    def _body(self, body: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for stmt in body:
            self.visit(stmt)
            self.lines[stmt.lineno] = self.source[stmt.lineno - 1].strip()
            mark = ast.parse(_MARK.format(i=stmt.lineno)).body
            if isinstance(stmt, ast.Return) and stmt.value is not None:
                out.append(ast.Assign(targets=[ast.Name("_ret", ast.Store())], value=stmt.value, lineno=0))
                out += mark
                out.append(ast.Return(ast.Name("_ret", ast.Load())))
            else:
                out += [stmt, *mark]
        return out

    def generic_visit(self, node: ast.AST) -> ast.AST:
        for name in ("body", "orelse"):
            if isinstance(getattr(node, name, None), list) and not isinstance(node, ast.Module | ast.If):
                setattr(node, name, self._body(getattr(node, name)))
        if isinstance(node, ast.If):
            node.body = self._body(node.body)
            node.orelse = self._body(node.orelse) if node.orelse else []
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.body = [*ast.parse("_f[0] = _mf(); _t[0] = _pc()").body, *self._body(node.body)]
        return node


def instrument(
    source: str, functions: set[str], namespace: dict, first_line: int = 1
) -> tuple[dict[int, float], dict[int, int], dict[int, str]]:
    """Execute ``source`` with ``functions`` instrumented; returns (times, minor page faults, line texts).

    Line numbers are reported as if ``source`` started at ``first_line``.
    """
    tree = ast.parse(source)
    ast.increment_lineno(tree, first_line - 1)
    source = "\n" * (first_line - 1) + source
    lines: dict[int, str] = {}
    inst = _Instrument(lines, source.splitlines())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in functions:
            inst.visit_FunctionDef(node)
    ast.fix_missing_locations(tree)
    times: dict[int, float] = defaultdict(float)
    faults: dict[int, int] = defaultdict(int)
    namespace.update(_T=times, _t=[0.0], _pc=time.perf_counter, _F=faults, _f=[0], _mf=minor_faults)
    exec(compile(tree, "<instrumented>", "exec"), namespace)  # dlc's own output and this package's code
    return times, faults, lines


def minor_faults() -> int:
    """Page faults served without I/O so far: each is a page of fresh memory touched for the first time."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def profile(size: str, dtype: str, steps: int) -> tuple[list, list]:
    spec = load_spec(size)
    params, X, Y = start_state(spec, dtype)

    dlc = Dlc(spec, dtype)
    dlc.build()
    ns: dict = {}
    dlc_times, dlc_faults, dlc_lines = instrument(
        dlc.mod.__dlc_source__,
        {"value_and_grad", "_value_and_grad", "train_step", "_step", "_update", "_scalars"},
        ns,
    )
    dlc.mod = type(dlc.mod)("dlc_instrumented")
    dlc.mod.__dict__.update(ns)

    hand = HandNumpy(spec, dtype)
    src_lines, first = inspect.getsourcelines(HandNumpy.step)
    hns: dict = {"np": __import__("numpy")}
    hand_times, hand_faults, hand_lines = instrument(
        textwrap.dedent("".join(src_lines)), {"step"}, hns, first
    )
    hand.step = lambda: hns["step"](hand)  # type: ignore[method-assign]

    results = []
    sides = ((dlc, dlc_times, dlc_faults, dlc_lines), (hand, hand_times, hand_faults, hand_lines))
    for peer, times, faults, lines in sides:
        peer.load(params, X, Y)
        for _ in range(3):
            peer.step()
        times.clear()
        faults.clear()
        for _ in range(steps):
            peer.step()
        rows = sorted(
            ((t / steps, faults[ln] / steps, ln, lines[ln]) for ln, t in times.items()), reverse=True
        )
        results.append(rows)
    return results[0], results[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.lines", description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="small", choices=SIZES)
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--steps", type=int, default=0, help="default: about 2 s worth")
    args = ap.parse_args(argv)
    steps = args.steps or {"tiny": 5000, "small": 3000, "medium": 500, "large": 50}[args.size]
    dlc_rows, hand_rows = profile(args.size, args.dtype, steps)
    titles = (f"dlc generated module (dlc compile {load_spec(args.size).path.name} --dtype {args.dtype})",
              "NumPy by hand (benchmarks/peers.py, HandNumpy.step)")  # fmt: skip
    for title, rows in zip(titles, (dlc_rows, hand_rows), strict=True):
        total, faults = sum(r[0] for r in rows), sum(r[1] for r in rows)
        print(
            f"\n{title}\n{args.size} {args.dtype}: {total * 1e6:.1f} µs and {faults:.0f} minor page faults "
            "per step (instrumented)"
        )
        for t, f, ln, text in rows:
            print(f"  {t * 1e6:9.2f} µs {100 * t / total:5.1f}% {f:7.1f} faults  line {ln:4d}  {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
