"""Text that every generated Python module shares, whatever computes its steps.

The docstring with the derived formulas and the momentum rule, the shape
and training constants, and ``init_params``: a NumPy module and an LLVM
module of one model have these byte for byte alike (but for the backend's
name), so that they are interchangeable. Model-file names reach the text
only through ``repr`` or after filtering to plain characters.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from types import ModuleType
from typing import Any, ClassVar

import sympy
from sympy.printing.numpy import NumPyPrinter

from dlc.backends.initializers import glorot_limit, he_scale
from dlc.grad import Program
from dlc.grad import notation as nt
from dlc.grad.formulas import Derivation
from dlc.graph.optimizer import EPOCH, STEP, Optimizer, T, setting, shown


def docstring(
    name: str, backend: str, dtype: str, derivation: Derivation, model_file: str, note: str = "",
    optimizer: Optimizer | None = None,
) -> str:  # fmt: skip
    """The module docstring: what it is, array layout, the optimizer's update and the formulas."""
    formulas = textwrap.indent(derivation.text(), "    ")
    # A file name may hold anything, quotes included: only plain characters reach the text.
    model_file = re.sub(r"[^A-Za-z0-9_.-]", "_", model_file)
    update = textwrap.indent("\n".join(update_lines(optimizer)), "    ") if optimizer else ""
    call = _plain(optimizer.call) if optimizer else ""
    return f'''"""Model {name}, compiled by dlc: {backend} backend, {dtype}.

Forward pass, gradients and a mini-batch training loop, from {model_file}.
Arrays are batch-major: X is [B, *INPUT_SHAPE] and Y is [B, *TARGET_SHAPE]
(with several inputs or targets, X and Y are dicts of such arrays by name, as
INPUT_SHAPES and TARGET_SHAPES list them; they may be given by name instead:
loss(params, image=..., label=...)); parameters keep their declared [out, in]
orientation.
{note}
The optimizer: {call}
Each step does, for every element w of every parameter, with g its
gradient (t counts steps, 1 at the first):

{update}

Derived formulas:

{formulas}
"""'''


def _plain(text: str) -> str:
    """Model-file text as it may appear in a docstring: no control characters, quotes or backslashes."""
    return re.sub(r"[\x00-\x1f\x7f\\\"']", "_", text)


def update_formulas(optimizer: Optimizer) -> list[tuple[str, str, sympy.Expr]]:
    """The update rule as (name, "=" or "<-", formula), in order: the settings that are schedules, the
    numbers computed once per step, then the elementwise updates."""
    rename = {s: sympy.Symbol(shown(s), real=True) for _, f in optimizer.updates for s in f.free_symbols}
    rename |= {s: sympy.Symbol(shown(s), real=True) for _, f in optimizer.scalars for s in f.free_symbols}
    out = [(k, "=", v) for k, v in optimizer.settings if v.free_symbols]
    out += [(shown(s), "=", f.xreplace(rename)) for s, f in optimizer.scalars]
    return out + [(shown(s), "<-", f.xreplace(rename)) for s, f in optimizer.updates]


def update_lines(optimizer: Optimizer) -> list[str]:
    """The update rule as formulas a person reads, one per line."""
    out = [f"{k} {op} {nt.text(f)}" for k, op, f in update_formulas(optimizer)]
    if optimizer.clip_norm is not None:
        clip = f"g = g * min(1, {optimizer.clip_norm!r} / (norm of all gradients + 1e-6))"
        out.insert(len(out) - len(optimizer.updates) - len(optimizer.scalars), clip)
    return [_plain(line) for line in out]


def constants(program: Program, derivation: Derivation, dtype: str) -> list[str]:
    """DTYPE, the shapes of parameters, inputs and targets, OUTPUTS, TRAINING and FORMULAS.

    INPUT_SHAPE and TARGET_SHAPE are the shape of the model's one input (target), or None
    when it has none or several; INPUT_SHAPES and TARGET_SHAPES list them all by name.
    """
    graph = program.graph
    lines = [f"DTYPE = np.{dtype}"]
    lines.append("PARAM_SHAPES = {" + ", ".join(f"{p.name!r}: {p.shape!r}" for p in graph.params) + "}")
    for label, leaves in (("INPUT", graph.inputs), ("TARGET", graph.targets)):
        lines.append(f"{label}_SHAPES = {{" + ", ".join(f"{n.name!r}: {n.shape!r}" for n in leaves) + "}")
        lines.append(f"{label}_SHAPE = {leaves[0].shape if len(leaves) == 1 else None!r}")
    classes = {n.name: n.classes for n in graph.targets if n.classes}
    lines.append(f"CLASSES = {classes!r}  # targets that hold a class index, and how many classes")
    lines.append(f"OUTPUTS = {list(graph.outputs) if graph.named_outputs else None!r}  # predict's dict keys")
    t = graph.train
    lines.append(
        f"TRAINING = {{'batch_size': {t.batch_size!r}, 'epochs': {t.epochs!r}, 'seed': {t.seed!r}, "
        f"'patience': {t.patience!r}}}"
    )
    optimizer = training_optimizer(program)
    lines.append(f"OPTIMIZER = {optimizer.call!r}")
    lines.append(f"STATES = {optimizer.states!r}")
    lines.append(
        "SETTINGS = {"
        + ", ".join(f"{k!r}: {float(v) if not v.free_symbols else None!r}" for k, v in optimizer.settings)
        + "}  # None: a formula of epoch and step (see _scalars)"
    )
    lines.append(f"CLIP_NORM = {optimizer.clip_norm!r}")
    lines.append(f"UPDATE = {update_lines(optimizer)!r}")
    lines.append("FORMULAS = {")
    lines += [f"    {k!r}: {eq.text()!r}," for k, eq in derivation.gradients.items()]
    lines.append("}")
    return lines


def init_function(program: Program) -> str:
    """``init_params(seed=0)``: the initializers the model declares, written out."""
    rows = [
        f"        {p.name!r}: {INITIALIZERS[p.init.kind](p.shape, p.init.args)},"
        for p in program.graph.params
    ]
    return INIT_TEMPLATE.format(body="\n".join(rows))


def _symmetric_uniform(limit: float, shape: tuple[int, ...]) -> str:
    return f"rng.uniform(-{limit!r}, {limit!r}, size={shape!r}).astype(DTYPE)"


INITIALIZERS = {
    "zeros": lambda s, a: f"np.zeros({s!r}, dtype=DTYPE)",
    "ones": lambda s, a: f"np.ones({s!r}, dtype=DTYPE)",
    "constant": lambda s, a: f"np.full({s!r}, {a[0]!r}, dtype=DTYPE)",
    "normal": lambda s, a: f"rng.normal(0.0, {a[0]!r}, size={s!r}).astype(DTYPE)",
    "uniform": lambda s, a: f"rng.uniform(-{a[0]!r}, {a[0]!r}, size={s!r}).astype(DTYPE)",
    # The same numbers as dlc.backends.initializers, written out.
    "glorot": lambda s, a: _symmetric_uniform(glorot_limit(s), s),
    "he": lambda s, a: f"rng.normal(0.0, {he_scale(s)!r}, size={s!r}).astype(DTYPE)",
}

INIT_TEMPLATE = '''def init_params(seed=0):
    """Fresh parameters, drawn from the initializers the model declares."""
    rng = np.random.default_rng(seed)
    return {{
{body}
    }}'''

#: The docstrings of the API functions, alike in every backend.
API_DOCS = {
    "predict": "The model's output for a batch X (batch-major).",
    "loss": "The loss: the mean over the batch.",
    "value_and_grad": "The loss and its gradient with respect to every parameter.",
    "hvp": "H v: the Hessian of the loss times v (a dict like params), for every parameter.",
}


def carried_source(modules: list[ModuleType]) -> tuple[str, str]:
    """The code that generated modules carry of ``modules``: (their imports, the rest).

    Each module's carried code starts after a line ``# <NAME> STARTS`` and
    opens with its imports; the imports of all are merged, plain imports
    first, each once, and imports from dlc left out (the module carries
    what they import).
    """
    imports: set[str] = set()
    bodies = []
    for module in modules:
        source = inspect.getsource(module)
        marker = re.search(r"^# [A-Z]+ STARTS\n", source, re.MULTILINE)
        assert marker is not None, f"{module.__name__} has no STARTS line"
        lines = source[marker.end() :].splitlines()
        head = next(
            i for i, line in enumerate(lines) if line.strip() and not line.startswith(("import ", "from "))
        )
        # imports of dlc's own modules name other carried code, which the module has in itself
        imports |= {line for line in lines[:head] if line.strip() and not line.startswith("from dlc")}
        bodies.append("\n".join(lines[head:]).strip("\n"))
    plain = sorted(line for line in imports if line.startswith("import "))
    other = sorted(imports - set(plain))
    ordered = [line for line in plain if " numpy" not in line] + [
        line for line in other if "numpy" not in line
    ]
    third = [line for line in plain + other if "numpy" in line]
    return "\n".join(ordered) + "\n\n" + "\n".join(third), "\n\n\n".join(bodies)


#: The last line of every generated module: its argument checks (see dlc/backends/guard.py).
CHECKS = (
    "_CHECK = Checks(DTYPE, PARAM_SHAPES, INPUT_SHAPES, TARGET_SHAPES, STATES, SETTINGS, CLASSES, "
    "MEMORY_PER_EXAMPLE)\n"
    "_ROWS = StepRows(_scalars)"
)


def training_optimizer(program: Program) -> Optimizer:
    """The optimizer the model trains with (the front end always chooses one)."""
    optimizer = program.graph.train.optimizer
    if optimizer is None:
        raise ValueError("the model's training settings name no optimizer")
    return optimizer


class ScalarPrinter(NumPyPrinter):
    """NumPy code for the optimizer's per-step numbers, over arrays of steps (``np.`` names)."""

    _module = "np"
    _kf: ClassVar[dict[str, str]] = {k: "np." + v.split(".", 1)[1] for k, v in NumPyPrinter._kf.items()}

    def __init__(self) -> None:
        super().__init__({"fully_qualified_modules": True, "allow_unknown_functions": False})

    def _print_Float(self, expr: Any) -> str:  # noqa: N802 - SymPy's dispatch name
        return repr(float(expr))

    def _print_Integer(self, expr: Any) -> str:  # noqa: N802
        return repr(float(expr))

    def _print_Rational(self, expr: Any) -> str:  # noqa: N802
        return repr(float(expr))

    def _print_Pi(self, expr: Any) -> str:  # noqa: N802
        return "np.pi"

    def _fold(self, name: str, args: tuple[Any, ...]) -> str:
        text = self._print(args[0])
        for a in args[1:]:
            text = f"np.{name}({text}, {self._print(a)})"
        return text

    def _print_Min(self, expr: Any) -> str:  # noqa: N802
        return self._fold("minimum", expr.args)

    def _print_Max(self, expr: Any) -> str:  # noqa: N802
        return self._fold("maximum", expr.args)

    def _print_sigmoid(self, expr: Any) -> str:
        return f"(1/(1 + np.exp(-({self._print(expr.args[0])}))))"

    def _print_softplus(self, expr: Any) -> str:
        return f"np.logaddexp(0, {self._print(expr.args[0])})"

    def _print_Function(self, expr: Any) -> str:  # noqa: N802
        raise NotImplementedError(f"no NumPy code for the function {type(expr).__name__}")


def scalars_function(optimizer: Optimizer) -> str:
    """``_scalars(given, epoch, step)``: the optimizer's numbers, a row per step.

    ``given`` holds a float (or None: the model's value) per setting, ``step`` the steps
    taken before each step of the table (float64); the columns are the numbers the update
    reads (:meth:`~dlc.graph.optimizer.Optimizer.used_scalars`), float64.
    """
    printer = ScalarPrinter()
    names: dict[sympy.Basic, sympy.Basic] = {T: sympy.Symbol("t"), EPOCH: sympy.Symbol("epoch"),
                                             STEP: sympy.Symbol("step")}  # fmt: skip
    lines = ["t = step + 1.0", "epoch = float(epoch)"]
    for i, (k, value) in enumerate(optimizer.settings):
        names[setting(k)] = sympy.Symbol(f"s{i}")
        formula = printer.doprint(value.xreplace(names))
        lines.append(f"s{i} = given[{i}] if given[{i}] is not None else {formula}  # {k}")
    for i, (symbol, value) in enumerate(optimizer.scalars):
        lines.append(f"c{i} = {printer.doprint(value.xreplace(names))}  # {shown(symbol)}")
        names[symbol] = sympy.Symbol(f"c{i}")
    used = optimizer.used_scalars()
    lines.append(f"table = np.empty((len(step), {max(len(used), 1)}))")
    lines += [f"table[:, {j}] = {names[u]}" for j, u in enumerate(used)]
    lines.append("return table")
    body = textwrap.indent("\n".join(lines), "    ")
    doc = "The optimizer's numbers for steps that come after ``step`` steps: a row per step."
    return f'def _scalars(given, epoch, step):\n    """{doc}"""\n{body}'
