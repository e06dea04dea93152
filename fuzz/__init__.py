"""Fuzzing dlc: model files made up at random, and the rule they are judged by.

A model file is data, so whatever it holds dlc must either compile it into a
module that runs, or refuse it with a :class:`~dlc.errors.DlcError` that
points into the file (a span; only file-level problems such as a file over
the size limit may go without one). Anything else (a traceback, an error
without a position, a generated module that is not valid Python, fails to
import, or crashes on data of the right shapes, a hang) is a failure.

The generators draw from a :class:`random.Random`, so the same code serves
the hypothesis tests (``tests/test_fuzz.py``, through ``st.randoms()``) and
the long runs of ``python -m fuzz.run``:

- :class:`ModelGen`: grammar- and shape-aware models (random declarations,
  expressions over the declared names and the built-ins, random shapes);
  with ``wrong > 0`` it makes mistakes on purpose (near-valid files);
- :func:`mutate_text`: token- and character-level edits of a model;
- :func:`mutate_bytes`: byte-level edits (bad UTF-8, control characters ...);
- :func:`lark_sentence`: a random walk over the grammar itself.

:func:`check_source` and :func:`check_file` are the oracle: they return how
dlc dealt with the input or raise :class:`Failure`.
"""

from __future__ import annotations

import ast as pyast
import contextlib
import random
import re
import signal
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

KEYWORDS = ("model", "input", "target", "param", "const", "output", "loss", "train")
UNARY = ("relu", "tanh", "sigmoid", "softplus", "exp", "log", "sqrt", "abs", "sin", "cos")
LOSSES = ("mse", "bce", "bce_with_logits", "softmax_cross_entropy")
# fmt: off
BUILTIN_NAMES = (
    *UNARY, "leaky_relu", "pow", "sum", "mean", "softmax", "logsumexp", "transpose", "concat", *LOSSES,
    "max", "min", "maximum", "minimum", "clip", "where", "reshape", "flatten", "stack",
    "conv1d", "conv2d", "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d",
)
COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")
# fmt: on
INITS = ("zeros", "ones", "constant", "normal", "uniform", "glorot", "he")
#: Names a generated Python module might use itself, Python keywords and builtins.
# fmt: off
HOSTILE_NAMES = (
    "np", "DTYPE", "PARAM_SHAPES", "INPUT_SHAPE", "FORMULAS", "EPS", "params", "velocity", "grads", "X",
    "Y", "B", "L", "rng", "lr", "momentum", "nesterov", "value", "init_params", "predict", "value_and_grad",
    "train_step", "init_state", "state", "settings", "epoch", "row", "table", "step", "SETTINGS", "STATES",
    "OPTIMIZER", "TRAINING", "train_loop", "math", "numpy", "os", "sys", "lambda", "None", "True", "False",
    "class", "def", "return",
    "import", "from", "global", "yield", "await", "async", "match", "case", "print", "exec", "eval", "open",
    "compile", "getattr", "globals", "locals", "vars", "dir", "id", "type", "object", "super", "self",
    "cls", "sigmoid_", "softmax_ce", "bce_logits", "clip01", "logsumexp_", "ell", "t0", "t1", "d_W", "C_c",
    "z1", "h1", "u1", "c1", "builtins", "breakpoint",
)
# fmt: on
#: Numbers in the forms the grammar allows, ordinary and odd.
# fmt: off
NUMBERS = (
    "0", "1", "2", "3", "10", "0.5", ".5", "5.", "2.5", "0.01", "1e-3", "2.5E+4", "1E2", "0001", "007.50",
    "1e-300", "1e-320", "1e308", "1.7976931348623157e308", "123456789012345678901234567890",
    "0.000000000000000000001", "1e0", "3.141592653589793", "0e0", "0.0", "1e+0",
)
# fmt: on
# fmt: off
COMMENT_TEXTS = (
    "", " a comment", " \"\"\" ''' \\", " __import__('os').system('touch CANARY')",
    " \"; open('CANARY', 'w'); \"", " \\N{ \\x \\u12", " ünïcödé ⊙ ∂L/∂W 𝑥 Ｗ", " # ## ###",
    " '''; import os; os.system('touch CANARY'); '''", " \t tab", " }{)(][", " loss W @ x",
)
# fmt: on

#: Mistakes on purpose, for near-valid models.
# fmt: off
BAD_INITS = (
    "glorot", "he", "normal", "normal(-1)", "uniform(0)", "zeros(1)", "gaussian", "constant(1, 2)",
    "constant()", "normal(1e308)", "uniform(1e308)",
)
BAD_EXPRS = (
    "1 / 0", "log(0)", "sqrt(-1)", "0 ** -1", "1e308 * 10", "exp(1000)", "2 ** 2 ** 2 ** 2",
    "(-8) ** (1/3)", "log(-1)", "0/0",
    "x[99]", "x[-99]", "x[1:1]", "x[::0]", "x[::-1]", "x[0][0][0][0]", "reshape(x, [7, 7])",
    "reshape(x, [-1, -1])", "reshape(x, 3)", "max(x, x)", "clip(x, 1, 0)", "stack()", "stack(1, [2])",
    "where(1)", "1 < 2 < 3",
    "x[0:2, :, :, :, :]", "flatten(x, 1)", "[1, 2] + 1", "x[1.5]", "x[a]",
)
OTHER_OPTIMIZERS = (
    "adam", "adam(lr = 0.01)", "adamw(lr = 0.003, weight_decay = 0.1)", "rmsprop(lr = 0.001, momentum = 0.5)",
    "adagrad(lr = 0.1)", "adam(lr = 0.01 * warmup(step, 10))", "sgd(lr = 0.1 * step_decay(epoch, 2, 0.5))",
)
BAD_SETTINGS = (
    "lr = 0.1", "epochs = 1e3", "seed = -1", "batch_size = 0", "optimizer = adam", "optimizer = sgd(0.1)",
    "momentum = 1", "epochs = 99999999999", "data = nope", "epochs = 2", "optimizer = sgd(lr = -1)",
    "optimizer = sgd(momentum = 1)", "optimizer = adam(beta1 = 1)", "optimizer = adam(lr = step)",
)
SETTINGS = (
    ("batch_size", ("1", "4", "32", "0001")), ("epochs", ("0", "1", "5", "100")),
    ("seed", ("0", "1", "42", "2147483648")), ("data", ("xor", "spiral", "points", "regression")),
)
SPECIAL_BYTES = (
    b"\x00", b"\xff", b"\xc3", b"\xe2\x80", b"\xef\xbb\xbf", b"\r", b"\x1b[2J", b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80", b"\xc0\xaf", b"#", b"\n", b"\\", b'"""', b"'''",
)
# fmt: on

Shape = tuple[int, ...]


# ---------------------------------------------------------------- the oracle


class Failure(Exception):  # noqa: N818 - what the oracle reports: a failure of dlc
    """dlc did something a model file must never make it do.

    Attributes:
        kind: what went wrong: an exception's type name, ``UnpositionedError``,
            ``BadSpan``, ``GeneratedSyntaxError``, ``Hang`` ...
        stage: the step it happened in (load, differentiate, compile, syntax,
            import, run).
        where: the innermost frame in dlc (or the generated module), ``file:line``.
        detail: the message, and the traceback where there is one.
    """

    def __init__(self, kind: str, stage: str, message: str, where: str = "", detail: str = "") -> None:
        super().__init__(f"{kind} in {stage}: {message}" + (f" (at {where})" if where else ""))
        self.kind, self.stage, self.message, self.where, self.detail = kind, stage, message, where, detail

    @property
    def signature(self) -> str:
        """Failures with one signature are most likely one bug."""
        return f"{self.kind}@{self.stage}@{self.where}"


class Hang(BaseException):
    """Raised by :func:`time_limit` (a BaseException, so that no ``except Exception`` swallows it)."""


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`Hang` in the main thread after ``seconds`` (None or 0: no limit)."""
    if not seconds:
        yield
        return

    def _alarm(signum: int, frame: object) -> None:
        raise Hang(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


#: DlcErrors that may come without a span: problems with the file as a whole.
FILE_LEVEL = ("model file is larger than", "the file is larger than", "cannot read")


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/dlc/" in f.filename or f.filename.startswith("<dlc")]
    frame = (ours or frames or [None])[-1]
    if frame is None:
        return ""
    name = frame.filename
    if name.startswith("<dlc"):
        return f"{name}:{frame.name}"  # generated code: its function (line numbers vary)
    if "/dlc/" in name:
        name = "dlc/" + name.rsplit("/dlc/", 1)[1]
    return f"{name}:{frame.lineno}"


def _fail(exc: BaseException, stage: str) -> Failure:
    kind = "Hang" if isinstance(exc, Hang) else type(exc).__name__
    detail = "".join(traceback.format_exception(exc, limit=-12))
    return Failure(kind, stage, str(exc)[:500], _where(exc), detail)


def check_error(err: BaseException, source: str, stage: str) -> None:
    """A DlcError must point into the file (or be about the whole file) and render."""
    from dlc.errors import DlcError

    assert isinstance(err, DlcError)
    try:
        text = err.render()
    except Exception as exc:  # rendering itself must never fail
        raise _fail(exc, stage + ":render") from None
    if "Traceback" in text:
        raise Failure("TracebackInMessage", stage, text[:300])
    if err.span is None:
        if not err.message.startswith(FILE_LEVEL) and not any(m in err.message for m in FILE_LEVEL):
            raise Failure("UnpositionedError", stage, err.message[:300], _where(err))
        return
    s = err.span
    lines = source.split("\n")
    ok = (
        1 <= s.line <= len(lines) + 1
        and s.column >= 1
        and (s.end_line, s.end_column) >= (s.line, s.column)
        and s.end_line <= len(lines) + 1
    )
    if not ok:
        raise Failure("BadSpan", stage, f"{s!r} outside a file of {len(lines)} lines: {err.message[:200]}")


@dataclass
class Outcome:
    """How dlc dealt with one input that was not a failure."""

    status: str  # "rejected" (a DlcError) or "compiled" (and ran, if asked)
    stage: str = ""  # where a rejection happened
    message: str = ""


def check_source(
    source: str,
    path: str = "fuzz.dlc",
    *,
    run: bool = True,
    dtypes: tuple[str, ...] = ("float64",),
    seconds: float | None = None,
) -> Outcome:
    """Put model text through load, differentiate, compile, ``ast.parse``, import and a step.

    Raises:
        Failure: for anything but success or a positioned DlcError.
    """
    from dlc.errors import DlcError
    from dlc.frontend import load_source

    stage = "load"
    try:
        with time_limit(seconds):
            model = load_source(source, path)
            return _compile_and_run(model, source, run, dtypes)
    except DlcError as err:
        check_error(err, source, stage)
        return Outcome("rejected", "load", err.message)
    except Failure:
        raise
    except (Exception, Hang, RecursionError, MemoryError) as exc:
        raise _fail(exc, stage) from None


def check_file(path: str | Path, *, run: bool = True, seconds: float | None = None) -> Outcome:
    """Like :func:`check_source` for a file on disk, read the way ``dlc`` reads it (bytes, size, UTF-8)."""
    from dlc.errors import DlcError
    from dlc.frontend import load

    try:
        with time_limit(seconds):
            model = load(path)
            return _compile_and_run(model, model.source, run, ("float64",))
    except DlcError as err:
        check_error(err, err.source or "", "load")
        return Outcome("rejected", "load", err.message)
    except Failure:
        raise
    except (Exception, Hang, RecursionError, MemoryError) as exc:
        raise _fail(exc, "load") from None


def _compile_and_run(model: object, source: str, run: bool, dtypes: tuple[str, ...]) -> Outcome:
    from dlc.compiler import compile_source
    from dlc.errors import DlcError
    from dlc.grad import differentiate

    stage = "differentiate"
    try:
        differentiate(model.graph)  # type: ignore[attr-defined]
        for dtype in dtypes:
            stage = "compile"
            text = compile_source(model, dtype=dtype)  # type: ignore[arg-type]
            check_module_text(text, run=run)
    except DlcError as err:
        check_error(err, source, stage)
        return Outcome("rejected", stage, err.message)
    except (Failure, Hang):
        raise
    except Exception as exc:
        raise _fail(exc, stage) from None
    return Outcome("compiled")


def check_module_text(text: str, *, run: bool = True, batch: int = 3, seed: int = 0) -> None:
    """A generated module must parse, compile without warnings, import and run a step.

    Raises:
        Failure: if it does not.
    """
    stage = "syntax"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a SyntaxWarning (say, a bad escape) is a failure too
            pyast.parse(text)
            code = compile(text, "<dlc fuzz>", "exec")
    except (SyntaxError, SyntaxWarning, ValueError) as exc:
        raise Failure("GeneratedSyntaxError", stage, str(exc)[:300]) from None
    if not run:
        return
    stage = "import"
    namespace: dict[str, object] = {"__name__": "dlc_fuzz_module"}
    try:
        exec(code, namespace)  # dlc's own output, which is what is under test
        stage = "run"
        run_module(namespace, batch=batch, seed=seed)
    except Failure:
        raise
    except Exception as exc:
        raise _fail(exc, stage) from None


def random_batch(namespace: dict[str, object], batch: int, seed: int) -> tuple[object, object]:
    """Random inputs and targets of the shapes a generated module declares, as it takes them.

    Several inputs (targets) are a dict by name; a class-index target gets class indices.
    """
    rng = np.random.default_rng(seed)
    dtype = namespace["DTYPE"]
    classes: dict[str, int] = namespace["CLASSES"]  # type: ignore[assignment]

    def arrays(shapes: dict[str, Shape]) -> object:
        found = {
            k: rng.integers(0, classes[k], batch).astype(dtype) if k in classes  # type: ignore[call-overload]
            else rng.normal(size=(batch, *s)).astype(dtype)  # type: ignore[call-overload]
            for k, s in shapes.items()
        }  # fmt: skip
        return None if not found else next(iter(found.values())) if len(found) == 1 else found

    return arrays(namespace["INPUT_SHAPES"]), arrays(namespace["TARGET_SHAPES"])  # type: ignore[arg-type]


def run_module(namespace: dict[str, object], *, batch: int = 3, seed: int = 0) -> None:
    """init_params, loss, value_and_grad, predict and train_step on random data of the right shapes."""
    ns = namespace
    X, Y = random_batch(ns, batch, seed)
    shapes: dict[str, Shape] = ns["PARAM_SHAPES"]  # type: ignore[assignment]
    dtype = np.dtype(ns["DTYPE"])  # type: ignore[call-overload]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        params = ns["init_params"](seed)  # type: ignore[operator]
        if set(params) != set(shapes):
            raise Failure("WrongParams", "run", f"init_params gave {sorted(params)}, not {sorted(shapes)}")
        for k, v in params.items():
            if np.shape(v) != tuple(shapes[k]):
                raise Failure("WrongShape", "run", f"init_params: {k} is {np.shape(v)}, not {shapes[k]}")
        ns["loss"](params, X, Y)  # type: ignore[operator]
        value, grads = ns["value_and_grad"](params, X, Y)  # type: ignore[operator]
        if not isinstance(value, float):
            raise Failure("WrongType", "run", f"value_and_grad's loss is a {type(value).__name__}")
        if set(grads) != set(shapes):
            raise Failure("WrongParams", "run", f"gradients for {sorted(grads)}, not {sorted(shapes)}")
        for k, g in grads.items():
            if np.shape(g) != tuple(shapes[k]):
                raise Failure("WrongShape", "run", f"gradient of {k} is {np.shape(g)}, not {shapes[k]}")
            if np.asarray(g).dtype != dtype:
                raise Failure("WrongDtype", "run", f"gradient of {k} is {np.asarray(g).dtype}, not {dtype}")
        with contextlib.suppress(NotImplementedError):  # no output declared
            ns["predict"](params, X)  # type: ignore[operator]
        state = ns["init_state"](params)  # type: ignore[operator]
        # FloatingPointError: a loss that is not finite on random data (log of a negative number ...)
        with contextlib.suppress(FloatingPointError):
            ns["train_step"](params, state, X, Y, **step_settings(ns))  # type: ignore[operator]


def step_settings(namespace: dict[str, object]) -> dict[str, object]:
    """Settings for a fuzzed train_step: lr 0.01, momentum 0.9, Nesterov (those the optimizer has).

    The model's optimizer gives the rest, and may be other than SGD.
    """
    settings: dict[str, float] = namespace["SETTINGS"]  # type: ignore[assignment]
    wanted = {"lr": 0.01, "momentum": 0.9, "nesterov": True}
    return {k: v for k, v in wanted.items() if k in settings}


# ------------------------------------------------------- known bugs in dlc

#: Failures whose cause is known and reported; tests/test_fuzz.py holds a
#: reproducer of each, marked xfail(strict=True). Each entry: an id, a
#: description and a test on the failure.
KNOWN_BUGS: dict[str, tuple[str, Callable[[Failure, str], bool]]] = {}


def _bug(
    key: str, description: str
) -> Callable[[Callable[[Failure, str], bool]], Callable[[Failure, str], bool]]:
    def register(test: Callable[[Failure, str], bool]) -> Callable[[Failure, str], bool]:
        KNOWN_BUGS[key] = (description, test)
        return test

    return register


def _in_module(f: Failure) -> bool:
    return f.where.startswith("<dlc")


def known_bug(failure: Failure, source: str) -> str | None:
    """The id of the known bug this failure (on model text ``source``) is an instance of, or None."""
    for key, (_, test) in KNOWN_BUGS.items():
        if test(failure, source):
            return key
    return None


# ------------------------------------------------------------- generators


class ModelGen:
    """Random model files that follow the grammar and, mostly, the shape rules.

    Args:
        rng: where the randomness comes from.
        wrong: the chance, at each choice, of making a mistake on purpose.
        budget: roughly how many expression nodes the model may have.
        max_rank: the largest rank of a generated shape.
    """

    def __init__(self, rng: random.Random, wrong: float = 0.0, budget: int = 40, max_rank: int = 3) -> None:
        self.r = rng
        self.wrong = wrong
        self.budget = budget
        self.max_rank = max_rank
        self.values: dict[str, Shape] = {}  # top-level tensors: input, target, params, consts, values
        self.params: list[str] = []
        self.fns: dict[str, tuple[tuple[str, ...], tuple[Shape, ...], Shape]] = {}
        self.stmts: list[str] = []
        self.used_names: set[str] = set()
        self.input: str | None = None
        self.target: str | None = None
        self.defining: str | None = None  # the function being written, for deliberate recursion

    # ---- small pieces

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def oops(self) -> bool:
        return self.wrong > 0 and self.r.random() < self.wrong

    def fresh_name(self) -> str:
        r = self.r
        for _ in range(50):
            pick = r.random()
            if pick < 0.3:
                name = r.choice(HOSTILE_NAMES)
            elif pick < 0.33:
                name = r.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") + "".join(
                    r.choice("abcdefghijklmnopqrstuvwxyz0123456789_") for _ in range(63)
                )
            else:
                name = r.choice("abcdefghijklmnopqrstuvwxyzWXYZ") + "".join(
                    r.choice("abcdefghijklmnopqrstuvwxyz0123456789_") for _ in range(r.randint(0, 6))
                )
            if self.oops():
                name = r.choice((*KEYWORDS, *BUILTIN_NAMES, name + "é", "a" * 65, "_" + name, "9" + name))
                return name
            if name not in self.used_names and name not in KEYWORDS and name not in BUILTIN_NAMES:
                self.used_names.add(name)
                return name
        name = f"n{len(self.used_names)}"
        self.used_names.add(name)
        return name

    def number(self, positive: bool = False) -> str:
        r = self.r
        pick = r.random()
        if pick < 0.5:
            text = str(r.randint(0, 9)) if r.random() < 0.5 else r.choice(("0.5", "2", "1.5", ".25", "3."))
        elif pick < 0.8:
            text = r.choice(NUMBERS)
        else:
            text = repr(r.uniform(-3, 3) * 10 ** r.randint(-5, 5)).lstrip("-")
        if positive and float(text) <= 0:
            text = "0.5"
        if self.oops():
            text = r.choice(("1e400", "1e999999", "0x10", "1_000", "1e", "1.2.3", "9" * 400, "nan", "inf"))
        return text

    def shape(self, rank: int | None = None) -> Shape:
        r = self.r
        if rank is None:
            rank = r.choices(range(self.max_rank + 1), weights=[3, 4, 3, *[1] * (self.max_rank - 2)])[0]
        return tuple(r.choice((1, 2, 2, 3, 3, 4, 5)) for _ in range(rank))

    def shape_text(self, shape: Shape) -> str:
        dims = [str(d) for d in shape]
        if self.oops():
            dims.append(self.r.choice(("0", "-1", "2.5", "1e3", "100000", "99999999999999", "x")))
        sep = self.r.choice((", ", ",", " , "))
        return "[" + sep.join(dims) + "]"

    def other_shape(self, shape: Shape) -> Shape:
        """A shape that is probably not ``shape`` (for deliberate mistakes)."""
        for _ in range(5):
            s = self.shape()
            if s != shape:
                return s
        return (*shape, 7)

    # ---- declarations on demand

    def new_param(self, shape: Shape) -> str:
        r = self.r
        name = self.fresh_name()
        if len(shape) == 2 and r.random() < 0.5:
            init = r.choice(("glorot", "he"))
        else:
            kind = r.choice(("zeros", "ones", "constant", "normal", "uniform", "zeros()", "normal"))
            if kind == "constant":
                init = f"constant({'-' if r.random() < 0.3 else ''}{self.number()})"
            elif kind in ("normal", "uniform"):
                init = f"{kind}({self.number(positive=True)})"
            else:
                init = kind
        if self.oops():
            init = r.choice(BAD_INITS)
        self.stmts.append(f"param {name} : {self.shape_text(shape)} = {init}")
        self.values[name] = shape
        self.params.append(name)
        return name

    def array_literal(self, shape: Shape) -> str:
        if not shape:
            return ("-" if self.chance(0.3) else "") + self.number()
        items = [self.array_literal(shape[1:]) for _ in range(shape[0])]
        if self.oops():
            items = items[:-1] if len(items) > 1 and self.chance(0.5) else [*items, "[1]"]
        return "[" + ", ".join(items) + "]"

    def new_const(self, shape: Shape) -> str:
        name = self.fresh_name()
        self.stmts.append(f"const {name} = {self.array_literal(shape)}")
        self.values[name] = shape
        return name

    def new_data(self, shape: Shape) -> str | None:
        """Declare the input or the target with ``shape``, if not declared yet."""
        # The input comes first: a model with a target and no input is a known bug
        # (target_without_input) that would hide others; make it only now and then.
        role = "input" if self.input is None and self.chance(0.97) else "target"
        if getattr(self, role) is not None:
            return None
        name = self.fresh_name()
        setattr(self, role, name)
        self.stmts.append(f"{role} {name} : {self.shape_text(shape)}")
        self.values[name] = shape
        return name

    def new_value(self, shape: Shape, depth: int) -> str:
        name = self.fresh_name()
        body = self.expr(shape, depth, None)
        self.stmts.append(f"{name} = {body}")
        self.values[name] = shape
        return name

    def new_function(self, shape: Shape, depth: int) -> str:
        name = self.fresh_name()
        n = self.r.choice((0, 1, 1, 2, 2, 3))
        pnames: list[str] = []
        while len(pnames) < n:
            p = self.fresh_name() if self.chance(0.5) else self.r.choice(("v", "z", "W", "a", "b", "u", "x"))
            if p not in pnames and p not in KEYWORDS and p not in BUILTIN_NAMES:
                pnames.append(p)
        pshapes = tuple(self.shape() for _ in pnames)
        outer, self.defining = self.defining, name
        body = self.expr(shape, depth, dict(zip(pnames, pshapes, strict=True)))
        self.defining = outer
        self.stmts.append(f"{name}({', '.join(pnames)}) = {body}")
        self.fns[name] = (tuple(pnames), pshapes, shape)
        return name

    # ---- expressions

    def expr(self, shape: Shape, depth: int, scope: dict[str, Shape] | None) -> str:
        """An expression of per-example ``shape`` (if no mistake is made on the way)."""
        self.budget -= 1
        if self.oops():
            return self.mistake(shape, depth, scope)
        if depth <= 0 or self.budget <= 0 or self.chance(0.25):
            return self.leaf(shape, scope)
        makers = [m for m in self.makers(shape) if m[1] > 0]
        maker = self.r.choices([m[0] for m in makers], weights=[m[1] for m in makers])[0]
        return maker(shape, depth - 1, scope)

    def makers(self, s: Shape) -> list[tuple[Callable[[Shape, int, dict[str, Shape] | None], str], float]]:
        rank = len(s)
        splittable = any(d >= 2 for d in s)
        return [
            (self.unary, 3),
            (self.binop, 4),
            (self.neg, 1),
            (self.paren, 1),
            (self.power, 1.5),
            (self.leaky, 0.5),
            (self.matmul, 3 if rank <= 2 else 0),
            (self.reduce, 2 if rank < self.max_rank else (1 if not s else 0)),
            (self.softmax, 1 if rank >= 1 else 0),
            (self.logsumexp, 1 if rank < self.max_rank else 0),
            (self.transpose, 1 if rank == 2 else 0),
            (self.concat, 1 if splittable else 0),
            (self.loss_fn, 2 if not s else 0),
            (self.call_fn, 2),
            (self.named, 1.5),
            (self.constant_arith, 0.5),
            (self.index, 1.5 if rank < self.max_rank or splittable else 0),
            (self.reshape, 1 if s and int(np.prod(s)) <= 64 else 0),
            (self.stack, 0.5 if s and s[0] <= 3 else 0),
            (self.extreme, 1 if rank < self.max_rank else 0),
            (self.pairwise, 1),
            (self.choose, 1),
            (self.compare, 0.5),
            (self.window, 2 if rank in (2, 3) and max(s) <= 6 else 0),
        ]

    def leaf(self, shape: Shape, scope: dict[str, Shape] | None) -> str:
        r = self.r
        local = [n for n, s in (scope or {}).items() if s == shape]
        known = [n for n, s in self.values.items() if s == shape and (scope is None or n not in scope)]
        pick = r.random()
        if local and pick < 0.6:
            return r.choice(local)
        if known and pick < 0.7:
            return r.choice(known)
        if pick < 0.8:
            data = self.new_data(shape) if len(shape) <= 3 else None
            if data is not None:
                return data
        if pick < 0.85 and 0 < int(np.prod(shape)) <= 12:
            return self.new_const(shape)
        if pick < 0.9 or not self.params:
            return self.new_param(shape)
        if not shape or r.random() < 0.5:
            return self.number()  # a number broadcasts to any shape
        return self.new_param(shape)

    def sub(self, shape: Shape, depth: int, scope: dict[str, Shape] | None) -> str:
        """An operand that broadcasts to ``shape``: the shape itself, or a tail of it, or a scalar."""
        if shape and self.chance(0.2):
            k = self.r.randint(0, len(shape))
            tail = shape[k:]
            if tail and self.chance(0.3):
                tail = (1, *tail[1:])
            return self.expr(tail, depth, scope)
        return self.expr(shape, depth, scope)

    def unary(self, s: Shape, d: int, sc: dict[str, Shape] | None) -> str:
        return f"{self.r.choice(UNARY)}({self.expr(s, d, sc)})"

    def binop(self, s: Shape, d: int, sc: dict[str, Shape] | None) -> str:
        op = self.r.choice(("+", "-", "*", "/", " + ", " - ", " * ", " / "))
        a, b = self.expr(s, d, sc), self.sub(s, d, sc)
        return f"{a}{op}{b}" if self.chance(0.5) else f"{b}{op}{a}"

    def neg(self, s: Shape, d: int, sc: dict[str, Shape] | None) -> str:
        return f"-{self.expr(s, d, sc)}"

    def paren(self, s: Shape, d: int, sc: dict[str, Shape] | None) -> str:
        return f"({self.expr(s, d, sc)})"

    def power(self, s: Shape, d: int, sc: dict[str, Shape] | None) -> str:
        r = self.r
        base = self.expr(s, d, sc)
        pick = r.random()
        if pick < 0.4:
            return f"{base} {r.choice(('**', '^'))} {r.choice(('2', '3', '0.5', '-1', '2.5', '1e-3', '0'))}"
        if pick < 0.7:
            return f"pow({base}, {self.sub(s, d, sc)})"
        return f"{base} ** {self.sub(s, d, sc)}"

    def leaky(self, s: Shape, d: int, sc: dict[str, Shape] | None) -> str:
        x = self.expr(s, d, sc)
        pick = self.r.random()
        if pick < 0.4:
            return f"leaky_relu({x})"
        if pick < 0.7:
            return f"leaky_relu({x}, {self.number()})"
        return f"leaky_relu({x}, alpha = {self.sub(s, d, sc)})"

    def matmul(self, s: Shape, d: int, sc: dict[str, Shape] | None) -> str:
        k = self.r.choice((1, 2, 3, 4))
        if not s:
            a, b = (k,), (k,)
        elif len(s) == 1:
            a, b = ((s[0], k), (k,)) if self.chance(0.7) else ((k,), (k, s[0]))
        else:
            a, b = (s[0], k), (k, s[1])
        return f"{self.expr(a, d, sc)} @ {self.expr(b, d, sc)}"

    def reduce(self, s: Shape, d: int, sc: dict[str, Shape] | None) -> str:
        r = self.r
        kind = r.choice(("sum", "mean"))
        if not s and r.random() < 0.5:
            return f"{kind}({self.expr(self.shape(), d, sc)})"
        axis = r.randint(0, len(s))
        inner = (*s[:axis], r.choice((1, 2, 3)), *s[axis:])
        shown = axis if r.random() < 0.6 else axis - len(inner)
        arg = f"axis = {shown}" if r.random() < 0.5 else str(shown)
        return f"{kind}({self.expr(inner, d, sc)}, {arg})"

    def softmax(self, s: Shape, d: int, sc: dict[str, Shape] | None) -> str:
        return f"softmax({self.expr(s, d, sc)})"

    def logsumexp(self, s: Shape, d: int, sc: dict[str, Shape] | None) -> str:
        return f"logsumexp({self.expr((*s, self.r.choice((1, 2, 3))), d, sc)})"

    def transpose(self, s: Shape, d: int, sc: dict[str, Shape] | None) -> str:
        return f"transpose({self.expr((s[1], s[0]), d, sc)})"

    def concat(self, s: Shape, d: int, sc: dict[str, Shape] | None) -> str:
        r = self.r
        axes = [i for i, n in enumerate(s) if n >= 2]
        axis = r.choice(axes)
        n = s[axis]
        cuts = sorted(r.sample(range(1, n), r.randint(1, min(3, n - 1))))
        sizes = [b - a for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
        parts = [self.expr((*s[:axis], m, *s[axis + 1 :]), d, sc) for m in sizes]
        if axis == 0 and r.random() < 0.5:
            return f"concat({', '.join(parts)})"
        shown = axis if r.random() < 0.7 else axis - len(s)
        return f"concat({', '.join(parts)}, axis = {shown})"

    def loss_fn(self, s: Shape, d: int, sc: dict[str, Shape] | None) -> str:
        r = self.r
        kind = r.choice(LOSSES)
        shape = self.shape(r.choice((0, 1, 1, 1, 2))) if kind != "softmax_cross_entropy" else self.shape(1)
        p, y = self.expr(shape, d, sc), self.expr(shape, d, sc)
        if kind == "bce" and r.random() < 0.5:
            p = f"sigmoid({p})"
        if r.random() < 0.2:
            return f"{kind}(target = {y}, prediction = {p})"
        return f"{kind}({p}, {y})"

    def call_fn(self, s: Shape, d: int, sc: dict[str, Shape] | None) -> str:
        r = self.r
        options = [n for n, (_, _, out) in self.fns.items() if out == s]
        name = r.choice(options) if options and r.random() < 0.6 else self.new_function(s, d)
        if self.defining is not None and self.oops():
            name = self.defining  # a recursive call
        pnames, pshapes, _ = self.fns.get(name, ((), (), s))
        args = [self.expr(ps, d, sc) for ps in pshapes]
        k = r.randint(0, len(args))
        parts = args[:k] + [f"{p} = {a}" for p, a in zip(pnames[k:], args[k:], strict=True)]
        return f"{name}({', '.join(parts)})"

    def index(self, s: Shape, d: int, sc: dict[str, Shape] | None) -> str:
        """``base[...]`` of shape ``s``: a whole-number index adds an axis, a slice cuts one."""
        r = self.r
        base, items = list(s), []
        for axis in range(len(s) + 1):
            if len(base) < self.max_rank and r.random() < 0.3:
                n = r.choice((1, 2, 3))
                base.insert(len(items), n)
                at = r.randrange(n)
                items.append(str(at if r.random() < 0.6 else at - n))
            if axis == len(s):
                break
            n = s[axis]
            if r.random() < 0.5:
                step = r.choice((1, 1, 2, 3))
                start = r.randint(0, 2)
                length = start + (n - 1) * step + 1 + r.randint(0, step - 1)
                base[len(items)] = length
                stop = "" if r.random() < 0.3 and r.random() < 0.5 else str(start + (n - 1) * step + 1)
                shown_start = "" if start == 0 and r.random() < 0.5 else str(start)
                items.append(f"{shown_start}:{stop}" + (f":{step}" if step > 1 or r.random() < 0.2 else ""))
            else:
                items.append(":")
        while items and items[-1] == ":" and r.random() < 0.7:
            items.pop()
        if not items:
            return self.expr(s, d, sc)
        inner = self.expr(tuple(base), d, sc)
        return f"({inner})[{', '.join(items)}]" if r.random() < 0.5 else f"{inner}[{', '.join(items)}]"

    def reshape(self, s: Shape, d: int, sc: dict[str, Shape] | None) -> str:
        r = self.r
        n = int(np.prod(s))
        if len(s) == 1 and r.random() < 0.4:
            return f"flatten({self.expr(self.factors(n), d, sc)})"
        inner = self.factors(n)
        dims = [str(k) for k in s]
        if dims and r.random() < 0.3:
            dims[r.randrange(len(dims))] = "-1"
        return f"reshape({self.expr(inner, d, sc)}, [{', '.join(dims)}])"

    def factors(self, n: int) -> Shape:
        """A random shape of ``n`` elements, of rank at most max_rank."""
        dims: list[int] = []
        while n > 1 and len(dims) < self.max_rank - 1:
            f = self.r.choice([k for k in range(1, n + 1) if n % k == 0])
            dims.append(f)
            n //= f
        dims.append(n)
        return tuple(dims) if self.r.random() < 0.8 else tuple(reversed(dims))

    def stack(self, s: Shape, d: int, sc: dict[str, Shape] | None) -> str:
        r = self.r
        axis = r.randrange(len(s))
        part = (*s[:axis], *s[axis + 1 :])
        parts = [self.expr(part, d, sc) for _ in range(s[axis])]
        shown = axis if r.random() < 0.7 else axis - len(s)
        if axis == 0 and r.random() < 0.5:
            return f"stack({', '.join(parts)})"
        return f"stack({', '.join(parts)}, axis = {shown})"

    def window(self, s: Shape, d: int, sc: dict[str, Shape] | None) -> str:
        """A convolution or a pooling whose result has shape ``s`` = [channels, *positions]."""
        r = self.r
        rank = len(s) - 1
        if r.random() < 0.5:  # pooling keeps the channels
            k = [r.randint(1, 3) for _ in range(rank)]
            stride = [r.randint(1, 3) for _ in range(rank)] if r.random() < 0.4 else k
            pad = [r.randint(0, kk // 2) for kk in k]
            n = _spans(s[1:], stride, k, pad)
            if min(n) < 1:
                return self.expr(s, d, sc)
            x = self.expr((s[0], *n), d, sc)
            args = [x, self.sizes(k)]
            if stride != k:
                args.append(f"stride = {self.sizes(stride)}")
            if any(pad):
                args.append(f"padding = {self.sizes(pad)}")
            return f"{r.choice(('max', 'avg'))}_pool{rank}d({', '.join(args)})"
        channels = r.randint(1, 3)
        k = [r.randint(1, 3) for _ in range(rank)]
        same = r.random() < 0.2
        stride = [1] * rank if same else [r.randint(1, 2) for _ in range(rank)]
        pad = [0] * rank if same else [r.randint(0, 1) for _ in range(rank)]
        n = (
            list(s[1:])
            if same
            else [(p - 1) * st + kk - 2 * pp for p, st, kk, pp in zip(s[1:], stride, k, pad, strict=True)]
        )
        if min(n) < 1 or any(nn + 2 * pp < kk for nn, pp, kk in zip(n, pad, k, strict=True)):
            return self.expr(s, d, sc)
        args = [self.expr((channels, *n), d, sc), self.expr((s[0], channels, *k), d, sc)]
        if any(st != 1 for st in stride):
            args.append(f"stride = {self.sizes(stride)}")
        if same:
            args.append("padding = same")
        elif any(pad):
            args.append(f"padding = {self.sizes(pad)}")
        return f"conv{rank}d({', '.join(args)})"

    def sizes(self, values: list[int]) -> str:
        """One number for every axis, or the list, as a model file may write them."""
        if len(set(values)) == 1 and self.r.random() < 0.7:
            return str(values[0])
        return "[" + ", ".join(map(str, values)) + "]"

    def extreme(self, s: Shape, d: int, sc: dict[str, Shape] | None) -> str:
        r = self.r
        kind = r.choice(("max", "min"))
        if not s and r.random() < 0.5:
            return f"{kind}({self.expr(self.shape(), d, sc)})"
        axis = r.randint(0, len(s))
        inner = (*s[:axis], r.choice((1, 2, 3)), *s[axis:])
        shown = axis if r.random() < 0.6 else axis - len(inner)
        return f"{kind}({self.expr(inner, d, sc)}, {shown})"

    def pairwise(self, s: Shape, d: int, sc: dict[str, Shape] | None) -> str:
        r = self.r
        pick = r.random()
        if pick < 0.6:
            return f"{r.choice(('maximum', 'minimum'))}({self.expr(s, d, sc)}, {self.sub(s, d, sc)})"
        bounds = [self.number(), self.number()]
        with contextlib.suppress(ValueError):  # a number written wrong on purpose: left as it is
            bounds.sort(key=float)
        return f"clip({self.expr(s, d, sc)}, {bounds[0]}, {bounds[1]})"

    def choose(self, s: Shape, d: int, sc: dict[str, Shape] | None) -> str:
        return f"where({self.compare(s, d, sc)}, {self.expr(s, d, sc)}, {self.sub(s, d, sc)})"

    def compare(self, s: Shape, d: int, sc: dict[str, Shape] | None) -> str:
        op = self.r.choice(COMPARISONS)
        return f"({self.expr(s, d, sc)} {op} {self.sub(s, d, sc)})"

    def named(self, s: Shape, d: int, sc: dict[str, Shape] | None) -> str:
        return self.new_value(s, d)

    def constant_arith(self, s: Shape, d: int, sc: dict[str, Shape] | None) -> str:
        """Arithmetic on numbers alone, which dlc folds while compiling."""
        r = self.r
        a, b = self.number(), self.number()
        pick = r.random()
        if pick < 0.3:
            text = f"{a} {r.choice(('**', '^'))} {r.choice(('2', '3', '0.5', '-2', '10', '2 ** 3'))}"
        elif pick < 0.6:
            text = f"{a} {r.choice('+-*/')} {b}"
        else:
            text = f"{r.choice(UNARY)}({a})"
        return f"({text}) * {self.expr(s, d, sc)}" if r.random() < 0.7 else f"{self.expr(s, d, sc)} + {text}"

    def mistake(self, shape: Shape, depth: int, scope: dict[str, Shape] | None) -> str:  # noqa: C901
        """Something a person might get wrong, or something hostile."""
        r = self.r
        names = [*self.values, *(scope or {})]
        pick = r.randrange(12)
        if pick == 0:
            return self.expr(self.other_shape(shape), max(depth - 1, 0), scope)
        if pick == 1:
            base = r.choice(names) if names else "W"
            return base + r.choice(("x", "1", "_", "")) if r.random() < 0.7 else base[:-1] or "q"
        if pick == 2:
            return r.choice(BUILTIN_NAMES)  # a function used as a value
        if pick == 3 and names:
            return f"{r.choice(names)}({self.leaf(shape, scope)})"  # a value called as a function
        if pick == 4:
            fn = r.choice((*BUILTIN_NAMES, *self.fns)) if self.fns else r.choice(BUILTIN_NAMES)
            args = [self.leaf(self.shape(), scope) for _ in range(r.randint(0, 4))]
            return f"{fn}({', '.join(args)})"  # a random arity
        if pick == 5:
            fn = r.choice(("sum", "mean", "concat", "leaky_relu", "softmax", "mse"))
            kw = r.choice(("axis", "alpha", "x", "p", "prediction", "target", "bogus", "lr"))
            return f"{fn}({self.leaf(shape, scope)}, {kw} = {r.choice(('1', '-1', '9', '1.5', 'x', '-0'))})"
        if pick == 6:
            return r.choice(KEYWORDS)
        if pick == 7:
            return f"transpose({self.leaf(self.shape(r.choice((0, 1, 3))), scope)})"
        if pick == 8:
            return r.choice(("(", ")", "@", "", "**", "[1, 2]", "1 +", "f(,)", "sum(x,)", "a b", "- -"))
        if pick == 9:
            return f"{self.leaf(shape, scope)} @ {self.leaf(self.shape(), scope)}"
        if pick == 10:
            n = r.choice((10, 100, 300, 400))
            return "(" * n + self.leaf(shape, scope) + ")" * n if r.random() < 0.5 else "-" * n + "1"
        return r.choice(BAD_EXPRS)

    # ---- the whole file

    def model(self) -> str:  # noqa: C901
        r = self.r
        loss_shape: Shape = ()
        if self.oops():
            loss_shape = self.shape(1)
        loss = self.expr(loss_shape, r.randint(1, 5), None)
        if not self.params or (r.random() < 0.3 and not self.oops()):
            p = self.params[0] if self.params else self.new_param(self.shape())
            loss = f"{loss} + {r.choice(('1e-3', '0.5', '2'))} * sum({p} ** 2)"
        extra: list[str] = []
        if r.random() < 0.5:
            output = self.expr(self.shape(), r.randint(0, 3), None)
            # An output that uses the target is refused: now and then only, so that most models compile.
            if not self.uses(output, self.target) or r.random() < 0.03:
                extra.append(f"output {output}")
        if r.random() < 0.3:
            extra.append(f"model {self.fresh_name()}")
        if r.random() < 0.3:
            extra.append(self.train_block())
        if r.random() < 0.1:
            self.new_param(self.shape())  # unused: a warning
        if r.random() < 0.1:
            self.new_function(self.shape(), 1)  # never called: a warning
        stmts = [*self.stmts, *extra, f"loss {loss}"]
        if self.oops():
            stmts.append(r.choice(stmts))  # a second definition, output or loss
        if r.random() < 0.5:
            r.shuffle(stmts)  # order does not matter
        return self.layout(stmts)

    def uses(self, text: str, name: str | None) -> bool:
        """Whether ``text`` refers to ``name``, directly or through named values and functions."""
        if name is None:
            return False
        bodies = {}
        for stmt in self.stmts:
            head = re.match(r"([A-Za-z][A-Za-z0-9_]*)\s*(\(|=)", stmt)
            if head:
                bodies[head[1]] = stmt
        seen, todo = set(), [text]
        while todo:
            for word in re.findall(r"[A-Za-z][A-Za-z0-9_]*", todo.pop()):
                if word == name:
                    return True
                if word in bodies and word not in seen:
                    seen.add(word)
                    todo.append(bodies[word].split("=", 1)[1])
        return False

    def train_block(self) -> str:
        r = self.r
        settings = []
        sgd = []
        if r.random() < 0.7:
            sgd.append(f"lr = {r.choice(('0.1', '1e-2', '.5', '1', '0.001'))}")
        if r.random() < 0.5:
            sgd.append(f"momentum = {r.choice(('0', '0.9', '.5', '0.99'))}")
        if r.random() < 0.5:
            sgd.append(f"nesterov = {r.choice(('true', 'false'))}")
        if r.random() < 0.3:  # the other built-in optimizers, and a schedule
            settings.append(f"optimizer = {r.choice(OTHER_OPTIMIZERS)}")
        elif sgd or r.random() < 0.5:
            settings.append(f"optimizer = sgd({', '.join(sgd)})" if sgd else "optimizer = sgd")
        for key, values in SETTINGS:
            if r.random() < 0.5:
                settings.append(f"{key} = {r.choice(values)}")
        if self.oops():
            settings.append(r.choice(BAD_SETTINGS))
        sep = r.choice(("\n    ", " ", "\n"))
        return "train {" + sep + sep.join(settings) + ("\n}" if sep != " " else " }")

    def layout(self, stmts: list[str]) -> str:
        r = self.r
        lines = []
        for stmt in stmts:
            if r.random() < 0.15:
                lines.append("#" + r.choice(COMMENT_TEXTS))
            tail = ("  #" + r.choice(COMMENT_TEXTS)) if r.random() < 0.15 else ""
            lines.append(stmt + tail)
        sep = r.choice(("\n", "\n", "\n", "\n\n", "\r\n", " ", "\t\n"))
        text = sep.join(lines)
        if "#" in text and sep in (" ",):
            sep = "\n"
            text = sep.join(lines)
        return text + (sep if r.random() < 0.8 else "")


def _spans(positions: Shape, stride: list[int], kernel: list[int], pad: list[int]) -> list[int]:
    """The input sizes that give ``positions`` windows: (p - 1) * stride + k - 2 * padding."""
    return [(p - 1) * st + k - 2 * pp for p, st, k, pp in zip(positions, stride, kernel, pad, strict=True)]


def generate_model(rng: random.Random, wrong: float = 0.0) -> str:
    """A random model file; ``wrong`` is the chance of a mistake at each choice."""
    budget = rng.choice((8, 20, 40, 60))
    max_rank = 3 if rng.random() < 0.9 else rng.choice((4, 5, 6))
    return ModelGen(rng, wrong=wrong, budget=budget, max_rank=max_rank).model()


# ------------------------------------------------------------- mutations

TOKEN = re.compile(r"#[^\n]*|[A-Za-z_][A-Za-z0-9_]*|(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|\*\*|\s+|.", re.S)
PUNCT = ("(", ")", "[", "]", "{", "}", ",", "=", ":", "@", "+", "-", "*", "/", "^", "**", ".", "#", "\n")


def tokens(source: str) -> list[str]:
    return [m.group() for m in TOKEN.finditer(source)]


def mutate_text(rng: random.Random, source: str, edits: int | None = None) -> str:  # noqa: C901
    """``source`` with a few random edits of its tokens, characters or lines."""
    r = rng
    edits = edits if edits is not None else r.choice((1, 1, 1, 2, 3, 5))
    for _ in range(edits):
        toks = tokens(source) or [""]
        names = [t for t in toks if t[:1].isalpha()] or ["x"]
        pool = (*names, *KEYWORDS, *BUILTIN_NAMES, *NUMBERS, *PUNCT, *HOSTILE_NAMES[:20], "1e400", "100000")
        i = r.randrange(len(toks))
        op = r.randrange(12)
        if op == 0:
            del toks[i]
        elif op == 1:
            toks.insert(i, toks[i])
        elif op == 2:
            toks[i] = r.choice(pool)
        elif op == 3:
            toks.insert(i, " " + r.choice(pool) + " ")
        elif op == 4 and i + 1 < len(toks):
            toks[i], toks[i + 1] = toks[i + 1], toks[i]
        elif op == 5:
            toks = toks[:i]  # truncation
        elif op == 6 and toks[i][:1].isdigit():
            toks[i] = r.choice(("0", "100000", "99999999999", "1e9", "31623", "65", "1.5", "7"))
        elif op == 7:
            lines = "".join(toks).split("\n")
            j = r.randrange(len(lines))
            lines.insert(j, lines[j]) if r.random() < 0.5 else lines.pop(j)
            toks = ["\n".join(lines)]
        elif op == 8:
            text = "".join(toks)
            j = r.randrange(len(text) + 1)
            toks = [
                text[:j],
                r.choice("()[]{},=:@+-*/^#.\n\t\r 0123456789eEWxyz_é\x00\x7f\ufeff\u00a0"),
                text[j:],
            ]
        elif op == 9:
            n = r.choice((3, 50, 257, 301, 1000))
            toks.insert(i, r.choice(("(" * n, "-" * n, "sum(" * n, "[" * n)))
        elif op == 10:
            text = "".join(toks)
            a = r.randrange(len(text) + 1)
            b = r.randrange(len(text) + 1)
            a, b = min(a, b), max(a, b)
            toks = [text[:a], text[a:b], text[a:b], text[b:]]  # a duplicated span
        else:
            toks[i] = toks[i].upper() if r.random() < 0.5 else toks[i][::-1]
        source = "".join(toks)
    return source


def mutate_bytes(rng: random.Random, data: bytes, edits: int | None = None) -> bytes:
    """``data`` with a few random byte-level edits (which may break its UTF-8)."""
    r = rng
    buf = bytearray(data)
    edits = edits if edits is not None else r.choice((1, 1, 2, 3, 8))
    specials = SPECIAL_BYTES
    for _ in range(edits):
        i = r.randrange(len(buf) + 1)
        op = r.randrange(5)
        if op == 0 and i < len(buf):
            buf[i] = r.randrange(256)
        elif op == 1 and i < len(buf):
            buf[i] ^= 1 << r.randrange(8)
        elif op == 2:
            buf[i:i] = r.choice(specials)
        elif op == 3:
            del buf[i : i + r.randint(1, 16)]
        else:
            buf[i:i] = bytes(r.randrange(256) for _ in range(r.randint(1, 8)))
    return bytes(buf)


# ---------------------------------------------------- a walk of the grammar


def lark_sentence(rng: random.Random, max_depth: int = 6) -> str:
    """A random sentence of the grammar (syntax only: names and shapes mostly do not fit)."""
    from lark import Lark
    from lark.grammar import NonTerminal, Terminal

    from dlc.frontend.grammar import grammar_text

    parser = _lark()
    assert isinstance(parser, Lark)
    rules: dict[str, list[list[object]]] = {}
    for rule in parser.rules:
        rules.setdefault(rule.origin.name, []).append(list(rule.expansion))
    terms = {t.name: t for t in parser.terminals}
    del grammar_text

    out: list[str] = []
    budget = [200]

    def walk(symbol: object, depth: int) -> None:
        budget[0] -= 1
        if isinstance(symbol, Terminal):
            out.append(_terminal_text(rng, terms[symbol.name]))
            return
        assert isinstance(symbol, NonTerminal)
        options = rules[symbol.name]
        if depth >= max_depth or budget[0] <= 0:
            options = sorted(options, key=len)[:1]
        for part in rng.choice(options):
            walk(part, depth + 1)

    walk(NonTerminal("start"), 0)
    return " ".join(out)


def _terminal_text(rng: random.Random, term: object) -> str:
    pattern = term.pattern  # type: ignore[attr-defined]
    if pattern.type == "str":
        return str(pattern.value)
    if term.name == "NAME":  # type: ignore[attr-defined]
        return rng.choice(
            ("x", "y", "W", "b", "f", "h", "np", "sum", "tanh", "zeros", "sgd", *HOSTILE_NAMES[:10])
        )
    if term.name == "NUMBER":  # type: ignore[attr-defined]
        return rng.choice(NUMBERS)
    return "#" + rng.choice(COMMENT_TEXTS) + "\n"


_LARK: list[object] = []


def _lark() -> object:
    if not _LARK:
        from lark import Lark

        from dlc.frontend.grammar import grammar_text

        _LARK.append(Lark(grammar_text(), parser="lalr", lexer="basic"))
    return _LARK[0]


# ------------------------------------------------------------ seed corpus


def seed_sources() -> list[tuple[str, str]]:
    """Model texts to mutate: the examples, the docs' complete models, test models, the error corpus."""
    found: list[tuple[str, str]] = []
    for folder in ("examples", "tests/models", "tests/hostile", "benchmarks/models"):
        for path in sorted((ROOT / folder).glob("*.dlc")):
            found.append((f"{folder}/{path.name}", path.read_bytes().decode("utf-8", "replace")))
    docs = ROOT / "docs" / "language.md"
    if docs.is_file():
        blocks = re.findall(r"```dlc\n(.*?)```", docs.read_text(encoding="utf-8"), re.S)
        found += [(f"docs/language.md#{i}", b) for i, b in enumerate(blocks)]
    for path in sorted((ROOT / "tests" / "errors").glob("*.dlc"))[::5]:
        found.append((f"tests/errors/{path.name}", path.read_bytes().decode("utf-8", "replace")))
    return found


# ----------------------------------------------------------- one input


KINDS = ("valid", "near_valid", "mutated", "mutated_generated", "bytes", "grammar")
#: How often each kind is drawn by :func:`make_input`.
WEIGHTS = (30, 20, 20, 10, 10, 10)


@dataclass
class Input:
    kind: str
    text: str | None = None
    data: bytes | None = None

    @property
    def payload(self) -> bytes:
        return self.data if self.data is not None else (self.text or "").encode("utf-8", "surrogatepass")


def make_input(
    rng: random.Random, kind: str | None = None, seeds: list[tuple[str, str]] | None = None
) -> Input:
    """One fuzz input of ``kind`` (drawn by :data:`WEIGHTS` if None)."""
    kind = kind or rng.choices(KINDS, weights=WEIGHTS)[0]
    if kind == "valid":
        return Input(kind, generate_model(rng))
    if kind == "near_valid":
        return Input(kind, generate_model(rng, wrong=rng.choice((0.02, 0.05, 0.1))))
    if kind == "mutated":
        seeds = seeds if seeds is not None else seed_sources()
        return Input(kind, mutate_text(rng, rng.choice(seeds)[1]))
    if kind == "mutated_generated":
        return Input(kind, mutate_text(rng, generate_model(rng)))
    if kind == "bytes":
        seeds = seeds if seeds is not None else seed_sources()
        base = rng.choice(seeds)[1] if rng.random() < 0.7 else generate_model(rng)
        return Input(kind, data=mutate_bytes(rng, base.encode("utf-8")))
    if kind == "grammar":
        return Input(kind, lark_sentence(rng))
    raise ValueError(f"unknown kind {kind!r}")


def check_input(item: Input, tmpdir: Path, *, run: bool = True, seconds: float | None = None) -> Outcome:
    """Judge one input (bytes go through a file, the way ``dlc`` reads them)."""
    if item.data is not None:
        path = tmpdir / "fuzz.dlc"
        path.write_bytes(item.data)
        return check_file(path, run=run, seconds=seconds)
    assert item.text is not None
    return check_source(item.text, "fuzz.dlc", run=run, seconds=seconds)
