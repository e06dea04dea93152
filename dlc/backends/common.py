"""Text that every generated Python module shares, whatever computes its steps.

The docstring with the derived formulas and the momentum rule, the shape
and training constants, and ``init_params``: a NumPy module and an LLVM
module of one model have these byte for byte alike (but for the backend's
name), so that they are interchangeable. Model-file names reach the text
only through ``repr`` or after filtering to plain characters.
"""

from __future__ import annotations

import inspect
import math
import re
import textwrap
from types import ModuleType

from dlc.grad import Program
from dlc.grad.formulas import Derivation


def docstring(
    name: str, backend: str, dtype: str, derivation: Derivation, model_file: str, note: str = ""
) -> str:
    """The module docstring: what it is, array layout, the momentum rule and the formulas."""
    formulas = textwrap.indent(derivation.text(), "    ")
    # A file name may hold anything, quotes included: only plain characters reach the text.
    model_file = re.sub(r"[^A-Za-z0-9_.-]", "_", model_file)
    return f'''"""Model {name}, compiled by dlc: {backend} backend, {dtype}.

Forward pass, gradients and a mini-batch SGD training loop with momentum,
from {model_file}. Arrays are batch-major: X is [B, *INPUT_SHAPE] and Y is
[B, *TARGET_SHAPE]; parameters keep their declared [out, in] orientation.
{note}
Momentum, with mu the momentum and eta the learning rate:

    heavy-ball:  v <- mu*v - eta*g;  w <- w + v
    Nesterov:    v <- mu*v - eta*g;  w <- w + mu*v - eta*g   (as Keras' SGD)

The velocity accumulates steps against the gradient, hence the minus sign
(written with a plus, it would push the weights uphill).

Derived formulas:

{formulas}
"""'''


def constants(program: Program, derivation: Derivation, dtype: str) -> list[str]:
    """DTYPE, PARAM_SHAPES, INPUT_SHAPE, TARGET_SHAPE, TRAINING and FORMULAS."""
    graph = program.graph
    lines = [f"DTYPE = np.{dtype}"]
    lines.append("PARAM_SHAPES = {" + ", ".join(f"{p.name!r}: {p.shape!r}" for p in graph.params) + "}")
    lines.append(f"INPUT_SHAPE = {graph.input.shape if graph.input is not None else None!r}")
    lines.append(f"TARGET_SHAPE = {graph.target.shape if graph.target is not None else None!r}")
    t = graph.train
    lines.append(
        f"TRAINING = {{'lr': {t.lr!r}, 'momentum': {t.momentum!r}, 'nesterov': {t.nesterov!r}, "
        f"'batch_size': {t.batch_size!r}, 'epochs': {t.epochs!r}, 'seed': {t.seed!r}}}"
    )
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


def _fan(shape: tuple[int, ...]) -> tuple[int, int]:
    return shape[-1], shape[0]


def _symmetric_uniform(limit: float, shape: tuple[int, ...]) -> str:
    return f"rng.uniform(-{limit!r}, {limit!r}, size={shape!r}).astype(DTYPE)"


INITIALIZERS = {
    "zeros": lambda s, a: f"np.zeros({s!r}, dtype=DTYPE)",
    "ones": lambda s, a: f"np.ones({s!r}, dtype=DTYPE)",
    "constant": lambda s, a: f"np.full({s!r}, {a[0]!r}, dtype=DTYPE)",
    "normal": lambda s, a: f"rng.normal(0.0, {a[0]!r}, size={s!r}).astype(DTYPE)",
    "uniform": lambda s, a: f"rng.uniform(-{a[0]!r}, {a[0]!r}, size={s!r}).astype(DTYPE)",
    # The same numbers as dlc.backends.initializers, written out.
    "glorot": lambda s, a: _symmetric_uniform(math.sqrt(6.0 / sum(_fan(s))), s),
    "he": lambda s, a: f"rng.normal(0.0, {math.sqrt(2.0 / _fan(s)[0])!r}, size={s!r}).astype(DTYPE)",
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
CHECKS = "_CHECK = Checks(DTYPE, PARAM_SHAPES, INPUT_SHAPE, TARGET_SHAPE)"
