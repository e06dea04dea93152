"""The ``dlc`` command: the only place that prints and chooses exit codes.

Exit codes: 0 success, 1 a check failed or training did not end well
(diverged, or the parameters could not go where asked), 2 bad input (model,
data, files or flags; one ``error:`` line, and a hint where one helps), 130
interrupted, 141 the reader of the output went away (``dlc show M | head -1``:
nothing more is printed, as for any Unix filter).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from dlc.errors import DlcError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141
#: Whole-number flags go up to 2^31, as whole-number settings in a model file do.
MAX_WHOLE = 2**31


def _load(path: str) -> Any:
    """The checked model in the regular file ``path`` (never a FIFO or a device)."""
    from dlc.compiler import read_model

    model = read_model(Path(path))
    _warn(model.warnings)
    return model


def _show(args: argparse.Namespace) -> int:
    from dlc.graph.printer import format_graph

    print(format_graph(_load(args.model).graph))
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from dlc.gradcheck import TOLERANCE, check_gradients, check_hessian

    model = _load(args.model)
    result = check_gradients(model.graph, dtype=args.dtype, seed=args.seed)
    print(f"gradient check of {model.path} ({args.dtype} gradients, float64 finite differences)")
    for name, err in result.per_param.items():
        count, size = result.checked[name]
        which = (
            f"all {size} element{'s' * (size != 1)}"
            if count == size
            else f"{count} of {size} elements, at random"
        )
        print(f"  d loss / d {name:<12} {which:<32} max relative error {err:.2e}")
    for i, err in enumerate(result.directions, 1):
        print(f"  random direction {i:<3} (all parameters together)           relative error {err:.2e}")
    passed = _verdict(result, TOLERANCE[args.dtype], "a gradient")
    if args.hessian:
        second = check_hessian(model.graph, seed=args.seed)
        print(f"Hessian check of {model.path} (H v against float64 differences of the gradient along v)")
        for name, err in second.per_param.items():
            over = f"over {len(second.directions)} random directions v"
            print(f"  (H v) for {name:<13} {over:<31} max relative error {err:.2e}")
        passed = _verdict(second, TOLERANCE["float64"], "a Hessian-vector product") and passed
    return EXIT_OK if passed else EXIT_FAILED


def _verdict(result: Any, tolerance: float, what: str) -> bool:
    print(f"{'passed' if result.passed else 'FAILED'}: largest relative error {result.worst:.2e} "
          f"(tolerance {tolerance:.0e})")  # fmt: skip
    if math.isnan(result.worst):
        print(f"  the loss or {what} is not finite at the checked point (nan): nothing could be compared")
    return bool(result.passed)


def _grad(args: argparse.Namespace) -> int:
    from dlc.grad import differentiate
    from dlc.grad.formulas import derive
    from dlc.graph.stats import stats

    model = _load(args.model)
    names = [p.name for p in model.graph.params]
    if args.wrt is not None and args.wrt not in names:
        raise DlcError(
            f"'{args.wrt}' is not a parameter of {model.path}; its parameters are {', '.join(names)}"
        )
    derivation = derive(model.graph)
    render = {"text": derivation.text, "latex": derivation.latex, "markdown": derivation.markdown}
    print(render[args.format](args.wrt))
    optimizer = model.graph.train.optimizer
    if optimizer is not None and args.format == "text":
        from dlc.backends.common import update_lines

        print(f"\nUpdate, {optimizer.call} (every element w of every parameter, g its gradient):")
        print("\n".join(f"  {line}" for line in update_lines(optimizer)))
    if args.stats:
        program = differentiate(model.graph)
        forward, total = stats(program.graph.nodes()), stats(program.nodes())
        print("\nCost per example (estimated):")
        for label, s in (("forward", forward), ("forward + gradients", total)):
            ops = ", ".join(f"{k} {v}" for k, v in sorted(s.ops.items()))
            print(f"  {label:<20} {s.count:>4} ops  {s.flops:>10,} flops   ({ops})")
        print(f"  gradients cost {total.flops / max(forward.flops, 1):.2f}x the forward pass")
    return EXIT_OK


def _refuse_overwrite(output: str, flag: str, inputs: Sequence[tuple[str, str | None]]) -> None:
    """An output file must not be one of the command's inputs."""
    from dlc.files import same_file

    for what, path in inputs:
        if path is not None and not path.startswith("builtin:") and same_file(output, path):
            raise DlcError(f"{flag} {output} would overwrite {what}, {path}")


def _compile(args: argparse.Namespace) -> int:
    from dlc.atomic import write_text
    from dlc.compiler import compile_source

    model = _load(args.model)
    if args.output is not None:
        _refuse_overwrite(args.output, "-o", [("the model file", args.model)])
    source = compile_source(model, backend=args.backend, dtype=args.dtype, hvp=args.hvp)
    if args.output is None:
        sys.stdout.write(source)
    else:
        write_text(args.output, source)
        print(f"wrote {args.output} ({args.backend}, {args.dtype})", file=sys.stderr)
    return EXIT_OK


def _train(args: argparse.Namespace) -> int:
    from dlc.train.outputs import history_path
    from dlc.train.progress import Progress
    from dlc.train.run import Options, train

    model = _load(args.model)
    save = Path(args.save) if args.save else Path(Path(args.model).stem + ".npz")
    options = Options(
        data=args.data, epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
        momentum=args.momentum, nesterov=args.nesterov, seed=args.seed, backend=args.backend,
        dtype=args.dtype, val_split=args.val_split, save=save,
        resume=Path(args.resume) if args.resume else None, checkpoint_every=args.checkpoint_every,
        history=history_path(save), others=(("--plot", Path(args.plot)),) if args.plot else (),
    )  # fmt: skip
    progress = Progress(sys.stderr, enabled=not args.quiet and not args.json and sys.stderr.isatty())
    result = train(model, options, progress)
    _train_report(args, model, result, save)
    if result.diverged:
        return EXIT_FAILED
    return EXIT_INTERRUPTED if result.interrupted else (EXIT_FAILED if result.problems else EXIT_OK)


def _train_report(args: argparse.Namespace, model: Any, result: Any, save: Path) -> None:
    from dlc.train import report

    whole = [*result.earlier, *result.history]
    if args.plot and whole:
        report.plot(Path(args.plot), whole, model.graph.name)
    if result.note:
        print(f"dlc: warning: {result.note}", file=sys.stderr)
    if not args.json:
        print(report.summary_line(result))
        if result.saved is not None and not result.diverged:
            history = f"   history: {result.saved_history}" if result.saved_history else ""
            print(f"parameters: {result.saved}{history}" + (f"   plot: {args.plot}" if args.plot else ""))
    if not result.history and result.first >= result.settings.epochs:
        print(f"dlc: note: {args.resume} is at epoch {result.first} already, and --epochs is "
              f"{result.settings.epochs}: there was nothing to train", file=sys.stderr)  # fmt: skip
    _trouble_report(result, save, args.lr)
    if args.json:
        print(report.to_json(result))


def _trouble_report(result: Any, save: Path, lr_flag: float | None = None) -> None:
    """What went wrong: writes that failed, divergence, an interrupt."""
    for problem in result.problems:
        print(f"dlc: error: {problem}", file=sys.stderr)
    if result.problems and result.saved is not None:
        print(f"dlc: the trained parameters are in {result.saved} instead", file=sys.stderr)
    if result.diverged:
        print(f"dlc: error: training diverged at {result.diverged}", file=sys.stderr)
        last = result.first + len(result.history)
        kept = f"the parameters of its last finite epoch ({last}) are in {result.saved}"
        where = kept if result.saved else "no epoch of this run finished"
        print(f"dlc: {save} and its history are as they were before this run; {where}", file=sys.stderr)
        print(f"hint: {_lower_the_rate(result.settings, lr_flag)}", file=sys.stderr)
    if result.interrupted:
        done = f"parameters of the last whole epoch are in {save} (--resume {save})"
        print(f"dlc: interrupted; {done if result.saved else 'no epoch finished; nothing saved'}",
              file=sys.stderr)  # fmt: skip


def _lower_the_rate(settings: Any, lr_flag: float | None) -> str:
    optimizer = settings.optimizer
    lr = dict(optimizer.settings).get("lr") if optimizer is not None else None
    if lr_flag is not None:
        lr = lr_flag
    elif lr is None or lr.free_symbols:
        return "lower the learning rate"
    return f"lower the learning rate (it was {float(lr):g}; try --lr {float(lr) / 10:g})"


def _predict(args: argparse.Namespace) -> int:
    from dlc.atomic import write_text
    from dlc.compiler import compile_source, load_module
    from dlc.train import checkpoint
    from dlc.train.arrays import count
    from dlc.train.data import load_inputs
    from dlc.train.predict import predictions_csv

    model = _load(args.model)
    graph = model.graph
    if not graph.outputs:
        raise DlcError(f"{model.path} declares no output to predict", hint="add a line 'output EXPR'")
    if args.output:
        inputs = [("the model file", args.model), ("the parameters", args.params), ("the data", args.data)]
        _refuse_overwrite(args.output, "-o", inputs)
    state = checkpoint.load(args.params, graph, "float64")
    if state.note:
        print(f"dlc: warning: {state.note}", file=sys.stderr)
    X = load_inputs(args.data, graph)
    module = load_module(compile_source(model), f"dlc_{graph.name}")
    text = predictions_csv(graph, module.predict(state.params, X))
    if args.output:
        write_text(args.output, text)
        print(f"wrote {count(X)} predictions to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _sweep(args: argparse.Namespace) -> int:
    from dlc.sweeps.sweep import SweepOptions, run_sweep

    model = _load(args.model)
    out = Path(args.out) if args.out else Path(Path(args.model).stem + "-sweep")
    if args.plot:  # the plot's file, and matplotlib, are checked before any run
        _refuse_overwrite(args.plot, "--plot", [("the model file", args.model), ("the data", args.data)])
        from dlc.atomic import check_writable
        from dlc.train.report import pyplot

        check_writable(args.plot, "the plot")
        pyplot()
    options = SweepOptions(
        sets=tuple(args.set), seeds=args.seeds, data=args.data, epochs=args.epochs,
        batch_size=args.batch_size, backend=args.backend, dtype=args.dtype, val_split=args.val_split,
        workers=args.workers, ray=args.ray, out=out, resume=args.resume,
    )  # fmt: skip
    outcome = run_sweep(model, options, None if args.quiet else _SweepProgress())
    _sweep_report(args, model, outcome)
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if outcome.failed else EXIT_OK


def _play(args: argparse.Namespace) -> int:
    from dlc.playground.run import PlayOptions, serve

    model = _load(args.model)
    options = PlayOptions(data=args.data, backend=args.backend, dtype=args.dtype, val_split=args.val_split,
                          port=args.port)  # fmt: skip

    def ready(url: str) -> None:
        print(f"dlc play: {url}", flush=True)
        _say("training runs when the page says play; Ctrl-C stops the server")
        if not args.no_browser:
            import webbrowser

            with contextlib.suppress(Exception):
                webbrowser.open(url)

    try:
        serve(model, options, ready)
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_OK


class _SweepProgress:
    """One line on stderr per finished run."""

    def begin(self, total: int, earlier: int, executor: str) -> None:
        resumed = f", {earlier} finished before" if earlier else ""
        _say(f"{total} run{'s' * (total != 1)}{resumed}, on {executor}")

    def started(self, job: Any, attempt: int, pid: int) -> None:
        if attempt > 1:
            _say(f"  retrying {job.key}: its worker died")

    def finished(self, record: dict[str, Any], done: int, total: int) -> None:
        if record["status"] != "ok":
            what = f"{record['status']}: {(record.get('message') or '').partition(chr(10))[0]}"
        elif record.get("final_loss") is not None:
            what = f"final loss {record['final_loss']:.4g}"
        else:
            what = "done"
        _say(f"[{done}/{total}] {record['key']}: {what} ({record.get('seconds', 0):.2f} s)")


def _sweep_report(args: argparse.Namespace, model: Any, outcome: Any) -> None:
    from dlc.sweeps import results

    print(results.format_table(outcome.rows, outcome.names))
    folder = outcome.folder
    if outcome.best is not None:
        by = "validation" if any(r.stats.get("val_loss") for r in outcome.rows) else "final"
        chosen = ", ".join(f"{n} = {v}" for n, v in outcome.best.config) or "the only configuration"
        print(f"\nbest ({by} loss, mean over seeds): {chosen}")
        print(outcome.block, end="")
    elif not outcome.interrupted:
        print("\nno configuration had all its runs train to the end")
    for record in outcome.records:
        if record["status"] in ("error", "died") and record.get("message"):
            _say(f"dlc: error: run {record['key']}: {record['message'].splitlines()[0]}")
    if args.plot and outcome.records:
        from dlc.sweeps.plot import plot

        histories = {
            r["key"]: _history(folder / r["history_file"]) for r in outcome.records if r.get("history_file")
        }
        plot(Path(args.plot), outcome.rows, outcome.names, histories, model.graph.name)
    files = [f"{folder}/summary.csv", f"{folder}/runs.csv"] + (
        [f"{folder}/best.dlc"] if outcome.block else []
    )
    if args.plot and outcome.records:
        files.append(args.plot)
    print(f"\nwritten: {', '.join(files)}, histories in {folder}/histories/")
    if outcome.interrupted:
        finished = outcome.earlier + outcome.ran
        _say(f"dlc: interrupted: {finished} of {outcome.total} runs finished and are kept in {folder}; "
             "add --resume to run the others")  # fmt: skip


def _history(path: Path) -> list[list[Any]]:
    """A run's history CSV as rows of numbers (epoch, loss, ...)."""
    from dlc.train import history

    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)[1:]
    except OSError:
        return []
    for line in lines:
        epoch = history.parse(line)
        if epoch is not None:
            rows.append([epoch.epoch, epoch.loss])
    return rows


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
    "sweep": (_sweep, "train over a grid of settings and seeds, on local workers or a Ray cluster"),
    "play": (_play, "a live page in the browser: the model trains, with its formulas beside it"),
}


def whole(low: int) -> Callable[[str], int]:
    """An argparse type: a whole number (digits only) from ``low`` to 2^31."""

    def parse(text: str) -> int:
        digits = text.strip().removeprefix("-").removeprefix("+")
        value = int(text) if digits.isdigit() and len(digits) < 30 else None
        if value is None or not low <= value <= MAX_WHOLE:
            raise argparse.ArgumentTypeError(f"must be a whole number from {low} to 2^31, not {text}")
        return value

    return parse


def finite(text: str) -> float:
    """An argparse type: a finite number."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def _train_flags(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--data", metavar="PATH", help="FILE.csv, FILE.npz or builtin:NAME (default: the model's)"
    )
    cmd.add_argument("--epochs", type=whole(0), metavar="N")
    cmd.add_argument("--batch-size", type=whole(1), metavar="N")
    cmd.add_argument(
        "--optimizer", metavar="CALL", help="the optimizer, as in the train block: 'adam(lr = 3e-4)'"
    )
    cmd.add_argument("--lr", type=finite, help="the optimizer's learning rate")
    cmd.add_argument("--momentum", type=finite, help="sgd's or rmsprop's momentum")
    cmd.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None)
    cmd.add_argument(
        "--seed", type=whole(0), metavar="N", help="for initial parameters, shuffling, the split"
    )
    cmd.add_argument("--backend", choices=("numpy", "llvm"), default="numpy")
    cmd.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    cmd.add_argument(
        "--val-split", type=finite, default=0.0, metavar="F", help="fraction held out for validation"
    )
    cmd.add_argument("--save", metavar="PARAMS.npz", help="where the parameters go (default: MODEL.npz here)")
    cmd.add_argument("--resume", metavar="PARAMS.npz", help="continue from a checkpoint")
    cmd.add_argument(
        "--checkpoint-every", type=whole(0), default=0, metavar="N", help="also save every N epochs"
    )
    cmd.add_argument("--plot", metavar="LOSS.png", help="plot the loss (and accuracy) per epoch")
    cmd.add_argument("--json", action="store_true", help="end with one JSON line summing up the run")
    cmd.add_argument("--quiet", action="store_true", help="no progress bar")


def _sweep_flags(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--set", action="append", default=[], metavar="'NAME = V1, V2, ...'",
                     help="a setting and its values, in the model's syntax: 'lr = 0.01, 0.1', "
                     "'optimizer = adam(lr = 1e-3), sgd(lr = 0.1)' (repeat for a grid)")  # fmt: skip
    cmd.add_argument("--seeds", type=whole(1), default=1, metavar="N",
                     help="runs per configuration, seeds s .. s+N-1 from the model's seed s")  # fmt: skip
    cmd.add_argument(
        "--data", metavar="PATH", help="FILE.csv, FILE.npz or builtin:NAME (default: the model's)"
    )
    cmd.add_argument("--epochs", type=whole(0), metavar="N")
    cmd.add_argument("--batch-size", type=whole(1), metavar="N")
    cmd.add_argument("--backend", choices=("numpy", "llvm"), default="numpy")
    cmd.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    cmd.add_argument(
        "--val-split", type=finite, default=0.0, metavar="F", help="fraction held out for validation"
    )
    cmd.add_argument(
        "--workers", type=whole(1), metavar="N", help="local worker processes (default: one per core)"
    )
    cmd.add_argument("--ray", metavar="ADDRESS", help="run on a Ray cluster: its address, auto, or local")
    cmd.add_argument("--out", metavar="DIR", help="the sweep's folder (default: MODEL-sweep here)")
    cmd.add_argument("--resume", action="store_true", help="skip the runs finished in --out; run the others")
    cmd.add_argument("--plot", metavar="SWEEP.png", help="every run's loss, and a heat map over a 2-D grid")
    cmd.add_argument("--quiet", action="store_true", help="no line per run")


def _port(text: str) -> int:
    """An argparse type: a TCP port, 0 to 65535."""
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 5 or int(digits) > 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 0 to 65535 (0: any free one), not {text}")
    return int(digits)


def _play_flags(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--data", metavar="PATH", help="FILE.csv, FILE.npz or builtin:NAME (default: the model's)"
    )
    cmd.add_argument("--backend", choices=("numpy", "llvm"), default="numpy")
    cmd.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    cmd.add_argument(
        "--val-split", type=finite, default=0.0, metavar="F", help="fraction held out for validation"
    )
    cmd.add_argument("--port", type=_port, default=8765, metavar="N",
                     help="the port on 127.0.0.1 (default 8765; 0: any free port)")  # fmt: skip
    cmd.add_argument("--no-browser", action="store_true", help="do not open a browser; print the address")


class _Parser(argparse.ArgumentParser):
    """argparse, with a mistake on the command line said in one line (and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        _say(f"{self.prog}: error: {message} (see {self.prog} --help)")
        raise SystemExit(EXIT_BAD_INPUT)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"dlc {version('dlc')}"
    except PackageNotFoundError:
        return "dlc (version unknown: not installed)"


def _command_flags(name: str, cmd: argparse.ArgumentParser) -> None:
    if name == "grad":
        cmd.add_argument("--format", choices=("text", "latex", "markdown"), default="text")
        cmd.add_argument("--wrt", metavar="NAME", help="only the gradient with respect to this parameter")
        cmd.add_argument("--stats", action="store_true", help="op counts and flops, forward vs gradients")
    if name == "compile":
        cmd.add_argument("-o", "--output", metavar="OUT.py", help="where to write it (default: stdout)")
        cmd.add_argument("--backend", choices=("numpy", "llvm"), default="numpy")
        cmd.add_argument("--dtype", choices=("float64", "float32"), default="float64")
        cmd.add_argument("--hvp", action="store_true", help="also compile hvp(params, X, Y, v): H v")
    if name == "train":
        _train_flags(cmd)
    if name == "sweep":
        _sweep_flags(cmd)
    if name == "play":
        _play_flags(cmd)
    if name == "predict":
        cmd.add_argument("--params", required=True, metavar="PARAMS.npz", help="trained parameters")
        cmd.add_argument("--data", required=True, metavar="X.csv", help="inputs (.csv or .npz)")
        cmd.add_argument("-o", "--output", metavar="OUT.csv", help="where to write (default: stdout)")
    if name == "check":
        cmd.add_argument("--dtype", choices=("float64", "float32"), default="float64")
        cmd.add_argument(
            "--seed", type=whole(0), default=0, metavar="N", help="for parameters, data, directions"
        )
        cmd.add_argument("--hessian", action="store_true", help="check Hessian-vector products too")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dlc", description="dlc: a symbolic differentiation compiler for neural networks.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (_, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.add_argument("model", metavar="MODEL", help="a model file (.dlc)")
        _command_flags(name, cmd)
    return parser


def _say(text: str) -> None:
    """A line on stderr, if anyone still reads it."""
    with contextlib.suppress(BrokenPipeError, ValueError):
        print(text, file=sys.stderr)


def _silence_stdout() -> None:
    """After a broken pipe: send what Python still wants to flush at exit nowhere."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real stdout (tests capture it)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    try:
        code = _run(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a mistake in the flags (already said)
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    handler, _ = COMMANDS[args.command]
    try:
        return handler(args)
    except DlcError as err:
        _say(err.render())
        return EXIT_BAD_INPUT
    except MemoryError:
        _say("dlc: error: out of memory")
        return EXIT_BAD_INPUT
    except RecursionError:
        # A pass dlc relies on (SymPy's, or Python's own parser on a generated module) recursed
        # past its limit; dlc's own passes are iterative or bounded, so the input is the cause.
        _say(
            "dlc: error: the model is too large to compile: an expression in it (or derived from it) "
            "nests too deeply\nhint: split long sums, products or chains of functions into named values"
        )
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _say("dlc: interrupted")
        return EXIT_INTERRUPTED
