"""The compile time of each phase on inputs that swell: where a model's compile time goes as it grows.

    python -m benchmarks.compile_time [--quick] [--llvm]

Each case is made at a few sizes and compiled once; the time of every phase
is taken by wrapping the function that does it, so the phases are those of
an ordinary compile:

- parse: text -> AST (``dlc.frontend.parse``)
- lower: names, function expansion, shapes -> graph (the rest of ``load_source``)
- fuse: elementwise fusion of the forward graph (``dlc.frontend.fuse``)
- grad: the reverse sweep (``dlc.grad.backward``)
- gfuse: fusion of the forward and gradient graphs together (``dlc.grad.fuse_nodes``)
- formulas: the derivation printed into the module's docstring (``derive``)
- numpy: the NumPy module's text, formulas excluded
- llvm-ir: the LLVM module's text, formulas excluded (with ``--llvm``)
- llvm-jit: LLVM compiling that IR to machine code, and the first call (with ``--llvm``)

With ``--llvm`` the model is compiled for both backends, each from the start,
so grad, gfuse and formulas are the sum of the two compiles. A case that dlc
refuses shows the error instead of times; a case past the
budget is not run at larger sizes. Tests count what these cases build
(``tests/test_compile_growth.py``); times belong here.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

PHASES = ("parse", "lower", "fuse", "grad", "gfuse", "formulas", "numpy", "llvm-ir", "llvm-jit")


def swell_functions(levels: int) -> str:
    """g_i(u) = g_{i-1}(sin(u)) + g_{i-1}(cos(u)): 2^levels distinct compositions."""
    fns = "g0(u) = u * u\n" + "".join(
        f"g{i}(u) = g{i - 1}(sin(u)) + g{i - 1}(cos(u))\n" for i in range(1, levels + 1)
    )
    return f"param w : [] = constant(0.5)\n{fns}loss g{levels}(w)\n"


def parameter_tree(n: int) -> str:
    """n scalar parameters summed pairwise through a tree of named values."""
    lines = [f"param p{i} : [] = constant({(i % 7) / 10})" for i in range(n)]
    level, names = 0, [f"p{i}" for i in range(n)]
    while len(names) > 1:
        pairs = [names[k : k + 2] for k in range(0, len(names), 2)]
        names = []
        for j, pair in enumerate(pairs):
            lines.append(f"s{level}_{j} = {' + '.join(pair)}")
            names.append(f"s{level}_{j}")
        level += 1
    return "\n".join(lines) + f"\nloss {names[0]} ** 2\n"


def parameter_product(n: int) -> str:
    """A product of n scalar parameters, written as one expression."""
    params = "".join(f"param p{i} : [] = constant(1.0{i % 10})\n" for i in range(n))
    return params + "loss " + " * ".join(f"p{i}" for i in range(n)) + "\n"


def concat_copies(n: int) -> str:
    """sum(concat(w, ..., w)) with n copies of one parameter."""
    return "param w : [2] = ones\nloss sum(concat(" + ", ".join(["w"] * n) + "))\n"


def named_chain(n: int) -> str:
    """n named layers h_i = tanh(W_i @ h_{i-1}), each on its own line."""
    lines = ["input x : [3]", "target y : [3]"]
    lines += [f"param W{i} : [3, 3] = glorot" for i in range(1, n + 1)]
    lines += [f"h{i} = tanh(W{i} @ {f'h{i - 1}' if i > 1 else 'x'})" for i in range(1, n + 1)]
    return "\n".join(lines) + f"\nloss mse(h{n}, y)\n"


#: name -> (model from a size, sizes, quick sizes)
CASES: dict[str, tuple[Callable[[int], str], tuple[int, ...], tuple[int, ...]]] = {
    "g_i(u) = g_{i-1}(sin u) + g_{i-1}(cos u), levels": (swell_functions, (6, 8, 10, 11, 12), (4, 6)),
    "N parameters summed through a tree": (parameter_tree, (500, 2_000, 8_000), (100, 400)),
    "a product of N parameters": (parameter_product, (50, 100, 200), (20, 50)),
    "sum(concat(w, ..., w)), N copies": (concat_copies, (1_000, 4_000, 10_000), (200, 800)),
    "N named layers in a chain": (named_chain, (50, 200), (20, 50)),
}


class Phases:
    """Seconds per phase, taken by wrapping the functions that do each (outermost call only)."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.depth = 0

    def wrap(self, owner: Any, attr: str, phase: str) -> contextlib.AbstractContextManager[None]:
        original = getattr(owner, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - began

        @contextlib.contextmanager
        def patched() -> Iterator[None]:
            setattr(owner, attr, timed)
            try:
                yield
            finally:
                setattr(owner, attr, original)

        return patched()


def compile_once(source: str, llvm: bool) -> dict[str, float]:
    """Compile ``source`` with both backends (LLVM if asked) and return the seconds of each phase."""
    import dlc.frontend as frontend
    import dlc.grad as grad
    import dlc.grad.formulas as formulas
    from dlc.compiler import compile_source, load_module

    phases = Phases()
    with contextlib.ExitStack() as stack:
        for owner, attr, phase in (
            (frontend, "parse", "parse"),
            (frontend, "fuse", "fuse"),
            (grad, "backward", "grad"),
            (grad, "fuse_nodes", "gfuse"),
            (formulas, "derive", "formulas"),
        ):
            stack.enter_context(phases.wrap(owner, attr, phase))
        began = time.perf_counter()
        model = frontend.load_source(source, "swell.dlc")
        s = phases.seconds
        s["lower"] = time.perf_counter() - began - s["parse"] - s["fuse"]
        before = sum(s.values())
        began = time.perf_counter()
        compile_source(model)
        s["numpy"] = time.perf_counter() - began - (sum(s.values()) - before)
        if llvm:
            before = sum(s.values())
            began = time.perf_counter()
            text = compile_source(model, backend="llvm")
            s["llvm-ir"] = time.perf_counter() - began - (sum(s.values()) - before)
            began = time.perf_counter()
            module = load_module(text, "swell")
            leaves = (model.graph.inputs, model.graph.targets)
            X, Y = (np.zeros((1, *group[0].shape)) if group else None for group in leaves)
            module.loss(module.init_params(0), X, Y)
            s["llvm-jit"] = time.perf_counter() - began
    return phases.seconds


def measure(quick: bool, llvm: bool, budget: float) -> list[tuple[str, int, str, dict[str, float]]]:
    """(case, size, outcome, seconds per phase) for every case and size within ``budget`` seconds."""
    from dlc.errors import DlcError

    rows = []
    for name, (make, sizes, quick_sizes) in CASES.items():
        for size in quick_sizes if quick else sizes:
            began = time.perf_counter()
            try:
                seconds, outcome = compile_once(make(size), llvm), "ok"
            except DlcError as err:
                seconds, outcome = {}, "refused: " + err.message[:70]
            rows.append((name, size, outcome, seconds))
            if time.perf_counter() - began > budget:
                break
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small sizes only")
    parser.add_argument("--llvm", action="store_true", help="also the LLVM backend (IR and JIT)")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds past which a case stops")
    parser.add_argument("--write", metavar="FILE.md", help="also write the table to this file")
    args = parser.parse_args()
    os.environ.setdefault("DLC_CACHE_DIR", tempfile.mkdtemp(prefix="dlc-bench-"))
    shown = [p for p in PHASES if args.llvm or not p.startswith("llvm")]
    lines = ["| case | N | " + " | ".join(shown) + " | total |"]
    lines.append("| --- | ---: | " + " | ".join("---:" for _ in shown) + " | ---: |")
    print("\n".join(lines), flush=True)
    for name, size, outcome, seconds in measure(args.quick, args.llvm, args.budget):
        if outcome != "ok":
            lines.append(f"| {name} | {size:,} | {outcome} |")
        else:
            cells = " | ".join(f"{seconds[p]:.2f}" for p in shown)
            lines.append(f"| {name} | {size:,} | {cells} | {sum(seconds.values()):.2f} |")
        print(lines[-1], flush=True)
    if args.write:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        head = [
            "# dlc compile-time benchmark",
            "",
            f"Written by `python -m benchmarks.compile_time` on {when} ({os.cpu_count()} logical cores). "
            "Do not edit by hand. Seconds per phase; the phases are described in the script's docstring.",
            "",
        ]
        with open(args.write, "w", encoding="utf-8") as out:
            out.write("\n".join([*head, *lines]) + "\n")


if __name__ == "__main__":
    main()
