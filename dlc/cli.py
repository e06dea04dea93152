"""The ``dlc`` command: the only place that prints and chooses exit codes.

Exit codes: 0 success, 1 a check failed, 2 bad input (model, data or flags).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from dlc.errors import DlcError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _show(args: argparse.Namespace) -> int:
    from dlc.frontend import load
    from dlc.graph.printer import format_graph

    model = load(args.model)
    _warn(model.warnings)
    print(format_graph(model.graph))
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from dlc.frontend import load
    from dlc.gradcheck import TOLERANCE, check_gradients

    model = load(args.model)
    _warn(model.warnings)
    result = check_gradients(model.graph, dtype=args.dtype, seed=args.seed)
    print(f"gradient check of {model.path} ({args.dtype} gradients, float64 finite differences)")
    for name, err in result.per_param.items():
        print(f"  d loss / d {name:<12} element by element   max relative error {err:.2e}")
    for i, err in enumerate(result.directions, 1):
        print(f"  random direction {i:<3}                         relative error {err:.2e}")
    verdict = "passed" if result.passed else "FAILED"
    print(f"{verdict}: largest relative error {result.worst:.2e} (tolerance {TOLERANCE[args.dtype]:.0e})")
    return EXIT_OK if result.passed else EXIT_FAILED


def _grad(args: argparse.Namespace) -> int:
    from dlc.frontend import load
    from dlc.grad import differentiate
    from dlc.grad.formulas import derive
    from dlc.graph.stats import stats

    model = load(args.model)
    _warn(model.warnings)
    names = [p.name for p in model.graph.params]
    if args.wrt is not None and args.wrt not in names:
        raise DlcError(
            f"'{args.wrt}' is not a parameter of {model.path}; its parameters are {', '.join(names)}"
        )
    derivation = derive(model.graph)
    render = {"text": derivation.text, "latex": derivation.latex, "markdown": derivation.markdown}
    print(render[args.format](args.wrt))
    if args.stats:
        program = differentiate(model.graph)
        forward, total = stats(program.graph.nodes()), stats(program.nodes())
        print("\nCost per example (estimated):")
        for label, s in (("forward", forward), ("forward + gradients", total)):
            ops = ", ".join(f"{k} {v}" for k, v in sorted(s.ops.items()))
            print(f"  {label:<20} {s.count:>4} ops  {s.flops:>10,} flops   ({ops})")
        print(f"  gradients cost {total.flops / max(forward.flops, 1):.2f}x the forward pass")
    return EXIT_OK


def _compile(args: argparse.Namespace) -> int:
    from dlc.compiler import compile_source
    from dlc.frontend import load

    model = load(args.model)
    _warn(model.warnings)
    source = compile_source(model, backend=args.backend, dtype=args.dtype)
    if args.output is None:
        sys.stdout.write(source)
    else:
        write_atomically(args.output, source)
        print(f"wrote {args.output} ({args.backend}, {args.dtype})", file=sys.stderr)
    return EXIT_OK


def write_atomically(path: str, text: str) -> None:
    """Write a file so that readers see the old or the new content, never a part.

    Raises:
        DlcError: if the file cannot be written.
    """
    import os
    import tempfile

    target = os.path.abspath(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".dlc-", suffix=".tmp", dir=os.path.dirname(target))
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        raise DlcError(f"cannot write {path}: {exc.strerror or exc}") from None


def _warn(warnings: Sequence[DlcError]) -> None:
    for warning in warnings:
        print(warning.render(kind="warning"), file=sys.stderr)


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "show": (_show, "check a model and print its tensor graph with shapes"),
    "grad": (_grad, "print the derived gradient formulas"),
    "check": (_check, "compare the symbolic gradients with finite differences"),
    "compile": (_compile, "write a standalone module: forward pass, gradients, training loop"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dlc",
        description="dlc: a symbolic differentiation compiler for neural networks.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.add_argument("model", metavar="MODEL", help="a model file (.dlc)")
        if name == "grad":
            cmd.add_argument("--format", choices=("text", "latex", "markdown"), default="text")
            cmd.add_argument("--wrt", metavar="NAME", help="only the gradient with respect to this parameter")
            cmd.add_argument("--stats", action="store_true", help="op counts and flops, forward vs gradients")
        if name == "compile":
            cmd.add_argument("-o", "--output", metavar="OUT.py", help="where to write it (default: stdout)")
            cmd.add_argument("--backend", choices=("numpy",), default="numpy")
            cmd.add_argument("--dtype", choices=("float64", "float32"), default="float64")
        if name == "check":
            cmd.add_argument("--dtype", choices=("float64", "float32"), default="float64")
            cmd.add_argument("--seed", type=int, default=0, help="for parameters, data and directions")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    handler, _ = COMMANDS[args.command]
    try:
        return handler(args)
    except DlcError as err:
        print(err.render(), file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("dlc: interrupted", file=sys.stderr)
        return 130
