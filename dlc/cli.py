"""The ``dlc`` command: the only place that prints and chooses exit codes.

Exit codes: 0 success, 1 a check failed, 2 bad input (model, data or flags).
"""

from __future__ import annotations

import argparse
import math
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
    if math.isnan(result.worst):
        print("  the loss or a gradient is not finite at the checked point (nan): nothing could be compared")
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
    from dlc.atomic import write_text
    from dlc.compiler import compile_source
    from dlc.frontend import load

    model = load(args.model)
    _warn(model.warnings)
    source = compile_source(model, backend=args.backend, dtype=args.dtype)
    if args.output is None:
        sys.stdout.write(source)
    else:
        write_text(args.output, source)
        print(f"wrote {args.output} ({args.backend}, {args.dtype})", file=sys.stderr)
    return EXIT_OK


def _train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dlc.frontend import load
    from dlc.train import report
    from dlc.train.progress import Progress
    from dlc.train.run import Options, train

    model = load(args.model)
    _warn(model.warnings)
    save = Path(args.save) if args.save else Path(Path(args.model).stem + ".npz")
    options = Options(
        data=args.data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        momentum=args.momentum, nesterov=args.nesterov, seed=args.seed, backend=args.backend,
        dtype=args.dtype, val_split=args.val_split, save=save,
        resume=Path(args.resume) if args.resume else None, checkpoint_every=args.checkpoint_every,
    )  # fmt: skip
    progress = Progress(sys.stderr, enabled=not args.quiet and not args.json and sys.stderr.isatty())
    result = train(model, options, progress)
    history = save.with_suffix(".history.csv")
    report.save_history(history, result.history)
    if args.plot and result.history:
        report.plot(Path(args.plot), result.history, model.graph.name)
    if not args.json:
        print(report.summary_line(result))
        print(f"parameters: {save}   history: {history}" + (f"   plot: {args.plot}" if args.plot else ""))
    if result.diverged:
        print(f"dlc: error: training diverged at {result.diverged}; the last good parameters are in {save}",
              file=sys.stderr)  # fmt: skip
    if result.interrupted:
        print(
            f"dlc: interrupted; parameters of the last whole epoch are in {save} (--resume {save})",
            file=sys.stderr,
        )
    if args.json:
        print(report.to_json(result))
    return EXIT_FAILED if result.diverged else (130 if result.interrupted else EXIT_OK)


def _predict(args: argparse.Namespace) -> int:
    from dlc.atomic import write_text
    from dlc.compiler import compile_source, load_module
    from dlc.frontend import load
    from dlc.train import checkpoint
    from dlc.train.data import load_inputs
    from dlc.train.predict import predictions_csv

    model = load(args.model)
    graph = model.graph
    if graph.output is None:
        raise DlcError(f"{model.path} declares no output to predict", hint="add a line 'output EXPR'")
    params = checkpoint.load(args.params, graph, "float64").params
    X = load_inputs(args.data, graph)
    module = load_module(compile_source(model), f"dlc_{graph.name}")
    text = predictions_csv(graph, module.predict(params, X))
    if args.output:
        write_text(args.output, text)
        print(f"wrote {len(X)} predictions to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _warn(warnings: Sequence[DlcError]) -> None:
    for warning in warnings:
        print(warning.render(kind="warning"), file=sys.stderr)


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "show": (_show, "check a model and print its tensor graph with shapes"),
    "grad": (_grad, "print the derived gradient formulas"),
    "check": (_check, "compare the symbolic gradients with finite differences"),
    "compile": (_compile, "write a standalone module: forward pass, gradients, training loop"),
    "train": (_train, "train a model: data, progress, history, plot, checkpoints"),
    "predict": (_predict, "write a trained model's predictions for new inputs"),
}


def _train_flags(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--data", metavar="PATH", help="FILE.csv, FILE.npz or builtin:NAME (default: the model's)"
    )
    cmd.add_argument("--epochs", type=int)
    cmd.add_argument("--batch-size", type=int)
    cmd.add_argument("--lr", type=float, help="learning rate")
    cmd.add_argument("--momentum", type=float)
    cmd.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None)
    cmd.add_argument("--seed", type=int, help="for initial parameters, shuffling and the validation split")
    cmd.add_argument("--backend", choices=("numpy", "llvm"), default="numpy")
    cmd.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    cmd.add_argument(
        "--val-split", type=float, default=0.0, metavar="F", help="fraction held out for validation"
    )
    cmd.add_argument("--save", metavar="PARAMS.npz", help="where the parameters go (default: MODEL.npz here)")
    cmd.add_argument("--resume", metavar="PARAMS.npz", help="continue from a checkpoint")
    cmd.add_argument("--checkpoint-every", type=int, default=0, metavar="N", help="also save every N epochs")
    cmd.add_argument("--plot", metavar="LOSS.png", help="plot the loss (and accuracy) per epoch")
    cmd.add_argument("--json", action="store_true", help="end with one JSON line summing up the run")
    cmd.add_argument("--quiet", action="store_true", help="no progress bar")


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
            cmd.add_argument("--backend", choices=("numpy", "llvm"), default="numpy")
            cmd.add_argument("--dtype", choices=("float64", "float32"), default="float64")
        if name == "train":
            _train_flags(cmd)
        if name == "predict":
            cmd.add_argument("--params", required=True, metavar="PARAMS.npz", help="trained parameters")
            cmd.add_argument("--data", required=True, metavar="X.csv", help="inputs (.csv or .npz)")
            cmd.add_argument("-o", "--output", metavar="OUT.csv", help="where to write (default: stdout)")
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
