"""Program -> the text of a standalone Python module that needs only NumPy.

The module has the API every dlc backend offers (``init_params``,
``predict``, ``loss``, ``value_and_grad``, ``train_step``, ``train``, the
shape constants and ``FORMULAS``). Every variable name is dlc's choice:
names from the model file appear in code only where they are safe
identifiers, and otherwise only inside string literals written with
``repr``, so nothing in a model file becomes code.
"""

from __future__ import annotations

import builtins
import itertools
import keyword
import math
import textwrap

import sympy

from dlc.backends import common, guard, loop
from dlc.backends.numpy import inplace, ops
from dlc.backends.numpy.memory import Memory
from dlc.backends.numpy.printer import HELPERS, TENSOR_HELPERS, helper_source, print_body
from dlc.grad import Program
from dlc.grad import notation as nt
from dlc.grad.formulas import Derivation, Notation, forward_names
from dlc.graph.graph import topological_order
from dlc.graph.nodes import BatchSize, Constant, Elementwise, Input, Node, Param, Tangent
from dlc.graph.optimizer import G, Optimizer, W, shown, version
from dlc.graph.pairs import softmax_pairs
from dlc.graph.scalar import EPS, element_symbol

#: Names the module itself defines or its functions use.
RESERVED = {
    "np", "DTYPE", "PARAM_SHAPES", "OWN_GRADS", "INPUT_SHAPE", "TARGET_SHAPE", "TRAINING", "FORMULAS", "EPS",
    "init_params", "predict", "loss", "value_and_grad", "train_step", "train", "params", "velocity",
    "init_state", "state", "STATES", "SETTINGS", "OPTIMIZER", "CLIP_NORM", "UPDATE", "_scalars", "_update",
    "_epoch", "UPDATE_CHUNK", "train_loop", "checked_train", "checked_step", "Chunks", "StepRows", "_ROWS",
    "_run_epoch", "time", "settings", "step_numbers", "named", "INPUT_SHAPES", "TARGET_SHAPES", "CLASSES",
    "OUTPUTS",
    "grads", "X", "Y", "B", "rng", "lr", "momentum", "nesterov", "value",
    "_CHECK", "Checks", "_step", "_value_and_grad", "_restore", "_culprit", "numbers", "operator",
    "hvp", "tangents", "itertools", "NO_HVP",
    "math", *HELPERS, *TENSOR_HELPERS,
}  # fmt: skip


class Namer:
    """Unique, safe Python identifiers, preferring the names a person would recognise."""

    def __init__(self) -> None:
        self.taken = set(RESERVED) | set(dir(builtins)) | set(keyword.kwlist) | set(keyword.softkwlist)

    def __call__(self, wanted: str) -> str:
        name = wanted if wanted.isidentifier() and wanted.isascii() else "v"
        while name in self.taken:
            name += "_"
        self.taken.add(name)
        return name


#: Values with at least this many elements (at the model's training batch size) are built in
#: place where they can be and dropped after their last use. Below it that saves no time
#: (the benchmark's tiny and small MLPs run the same instructions within 0.5% either way) and
#: each formula stays one line, as it reads in the comment above it.
REUSE_FROM = 1 << 14


class Writer:
    """Assigns variables to nodes and writes the statements that compute them.

    Args:
        program: the forward and gradient graph.
        reuse_from: the size from which a value's memory is reused and freed early.
    """

    def __init__(self, program: Program, reuse_from: int = REUSE_FROM) -> None:
        self.program = program
        self.reuse_from = reuse_from
        self.namer = Namer()
        graph = program.graph
        self.display = forward_names(graph)
        self.var: dict[Node, str] = {}
        self.constants: dict[Node, str] = {}
        self.paired: dict[Node, Node] = {}
        self.ctx = ops.Context(self.variable)
        shower = Notation(self.display)
        self.comments = {
            n: f"{nt.text(sympy.Symbol(self.display[n], real=True))} = {nt.text(shower.forward(n))}"
            for n in graph.nodes()
            if n.inputs and n in self.display
        }
        self.grad_of = {node: name for name, node in program.grads.items()}
        self.peak = 0  # elements per example that the functions written so far hold at most
        self.counter = itertools.count()
        for node in topological_order(program.roots):
            self.var[node] = self._name_for(node)

    def _name_for(self, node: Node) -> str:
        if isinstance(node, Constant):
            name = self.namer("C_" + self.program.graph.names.get(node, "const"))
            self.constants[node] = name
            return name
        if ops.is_number(node):
            return ""  # numbers are written in place; see variable()
        if isinstance(node, (Param, Input, Tangent)):
            return self.namer(node.name)
        if node in self.display:
            return self.namer(self.display[node])
        if node in self.grad_of:
            return self.namer("d_" + self.grad_of[node])
        return self.namer(f"t{next(self.counter)}")

    def variable(self, node: Node) -> str:
        if isinstance(node, BatchSize):
            return "B"
        if ops.is_number(node):
            return ops.BodyNumber.print(node.expr)  # type: ignore[attr-defined]
        return self.var[node]

    def body(self, roots: list[Node]) -> list[str]:
        """Statements computing ``roots`` from ``params``, ``X`` and ``Y``."""
        order = topological_order(roots)
        self.paired = _softmax_pairs(order)
        position = {n: i for i, n in enumerate(order)}
        position |= {s: position[loss] for loss, s in self.paired.items()}
        self.memory = Memory(order, roots, position)
        self.final = len(order) - 1
        # Surely a float array, whatever the caller passes: a parameter, a constant, or a value
        # computed from one (X and Y may come as integers; then so may what depends on them alone).
        self.floats: dict[Node, bool] = {}
        for n in order:
            self.floats[n] = isinstance(n, (Param, Constant)) or (
                not isinstance(n, Input) and any(self.floats[x] for x in ops.used_inputs(n))
            )
        lines: list[str] = []  # B, the batch size, comes from the arguments' check
        for p, node in enumerate(order):
            lines += self.statement(node, p)
        self.peak = max(self.peak, self._peak_per_example(order, position))
        return lines

    def _peak_per_example(self, order: list[Node], position: dict[Node, int]) -> int:
        """Elements per example of the batched arrays of its own that the function holds at once, at most.

        Each array lives from its statement to its last read (a value written into a dead
        input's array is counted as new: an estimate from above of the arrays, though not of
        the temporaries inside one statement).
        """
        change = [0] * (len(order) + 1)
        for node in order:
            if node.batched and self.memory.owned(node):
                change[position[node]] += math.prod(node.shape)
                change[min(self.memory.last[node], len(order) - 1) + 1] -= math.prod(node.shape)
        live = peak = 0
        for step in change:
            live += step
            peak = max(peak, live)
        return peak

    def statement(self, node: Node, p: int) -> list[str]:
        name = self.var[node]
        if node in self.paired.values():
            return []  # computed with its softmax cross-entropy, below
        if node in self.paired:
            self.ctx.helpers |= {"softmax_ce_softmax"}
            z, y = (self.variable(i) for i in node.inputs)
            self.memory.record(node, owned=True)
            self.memory.record(self.paired[node], owned=True)
            return [f"# {self.comments[node]}"] * (node in self.comments) + [
                f"{name}, {self.var[self.paired[node]]} = softmax_ce_softmax({z}, {y})",
                *self._dels(p),
            ]
        if isinstance(node, (Param, Input, Constant, Tangent)) or ops.is_number(node):
            self.memory.record(node, owned=False)  # the caller's, the module's, or a number
        if isinstance(node, Param):
            return [f"{name} = params[{node.name!r}]"]
        if isinstance(node, Tangent):  # v:<parameter>, the direction of a Hessian-vector product
            return [f"{name} = tangents[{node.name.split(':', 1)[1]!r}]"]
        if isinstance(node, Input):  # X and Y: tuples of arrays, in declaration order
            graph = self.program.graph
            which = ("X", graph.inputs) if node.role == "input" else ("Y", graph.targets)
            return [f"{name} = {which[0]}[{which[1].index(node)}]"]
        if isinstance(node, Constant) or ops.is_number(node):
            return []
        code = ops.emit(node, self.ctx, name)
        self.memory.record(node, owned=len(ops.dims(node)) > 0 and inplace.fresh(code.expr))
        comment = self.comments.get(node) or (
            f"{FORMULA_PREFIX}{self.grad_of[node]}" if node in self.grad_of else None
        )
        lines = [f"# {comment}"] if comment else []
        computed = self._in_place(node, code, p) or [f"{name} = {code.expr}"]
        temps = [line.split(" = ", 1)[0] for line in code.before] if self._large(node) else []
        return [*lines, *code.before, *computed, *self._dels(p, temps)]

    def _large(self, node: Node) -> bool:
        batch = self.program.graph.train.batch_size if node.batched else 1
        return math.prod(node.shape) * batch >= self.reuse_from

    def _in_place(self, node: Node, code: ops.Code, p: int) -> list[str] | None:
        """A large elementwise result built in one array, in a dead input's if one fits; or None."""
        if not (isinstance(node, Elementwise) and self._large(node) and self.memory.owned(node)):
            return None
        leaves = ops.leaves(node, self.ctx)
        shapes = inplace.Shapes({text: shape for _, text, shape in leaves})
        floats = {text for x, text, _ in leaves if self.floats[x]}
        for line in code.before:
            shapes.define(line)
            if inplace.reads_any(line.split(" = ", 1)[1], floats):
                floats.add(line.split(" = ", 1)[0])
        full = ops.dims(node)
        dead = [
            x
            for x in dict.fromkeys(node.inputs)
            if ops.dims(x) == full and self.floats[x] and self.memory.dead_after(x, p)
        ]
        found = inplace.chain(code.expr, shapes, full, self.var[node], [self.var[x] for x in dead], floats)
        if found is None:
            return None
        lines, target = found
        for x in dead:
            if self.var[x] == target:
                self.memory.take_over(node, x)
        return lines

    def _dels(self, p: int, temps: list[str] | None = None) -> list[str]:
        """``del`` of the large arrays of the function's own last read at statement ``p``."""
        names = [*(temps or []), *(self.var[n] for n in self.memory.dropped_after(p, self._large))]
        return [f"del {', '.join(names)}"] if names and p < self.final else []


FORMULA_PREFIX = "gradient of the loss with respect to "
#: The optimizer's update of a larger parameter runs over slices of this many elements, so
#: that its temporaries stay small (32 KiB to 64 KiB each) whatever the parameter's size.
UPDATE_CHUNK = 1 << 13


def _softmax_pairs(order: list[Node]) -> dict[Node, Node]:
    """The pairs (:func:`dlc.graph.pairs.softmax_pairs`) this function can compute together.

    The softmax is computed where its loss is, so only if nothing reads it
    before: no value the order puts ahead of the loss.
    """
    position = {n: i for i, n in enumerate(order)}
    first_use: dict[Node, int] = {}
    for n in reversed(order):
        for x in n.inputs:
            first_use[x] = position[n]
    return {
        loss: s for loss, s in softmax_pairs(order).items() if first_use.get(s, len(order)) > position[loss]
    }


def write_module(
    program: Program, derivation: Derivation, dtype: str, model_file: str, reuse_from: int = REUSE_FROM
) -> str:
    """The module's source text: deterministic, readable, importing only NumPy.

    Values of at least ``reuse_from`` elements are built in place where they
    can be and dropped after their last use (0: every array, as tests do).
    """
    w = Writer(program, reuse_from)
    graph = program.graph
    if graph.outputs:
        outputs = list(graph.outputs.values())
        result = (
            "{" + ", ".join(f"{k!r}: {w.variable(v)}" for k, v in graph.outputs.items()) + "}"
            if graph.named_outputs
            else w.variable(outputs[0])
        )
        predict = [PREDICT_CHECK, *w.body(outputs), f"return {result}"]
    else:
        predict = [PREDICT_CHECK, "raise NotImplementedError('this model declares no output')"]
    loss_lines = [LOSS_CHECK, *w.body([graph.loss]), f"return float({w.variable(graph.loss)})"]
    grads = list(program.grads.values())
    vag = w.body([graph.loss, *grads])
    own = w.memory.private(grads)
    shapes = {p.name: p.shape for p in graph.params}
    vag.append(
        "return float({}), {{{}}}".format(
            w.variable(graph.loss),
            ", ".join(f"{k!r}: {_as_param(w.variable(v), shapes[k], v)}" for k, v in program.grads.items()),
        )
    )
    hvp = [*HVP_CHECK.splitlines(), "raise NotImplementedError(NO_HVP)"]
    if program.extra:
        products = {k.split(":", 1)[1]: v for k, v in program.extra.items()}
        hvp = [*HVP_CHECK.splitlines(), *w.body(list(products.values()))]
        hvp.append(
            "return {"
            + ", ".join(f"{k!r}: {_as_param(w.variable(v), shapes[k], v)}" for k, v in products.items())
            + "}"
        )
    optimizer = common.training_optimizer(program)
    helpers = set(w.ctx.helpers)
    imports, checks = common.carried_source([guard, loop])
    parts = [
        common.docstring(graph.name, "NumPy", dtype, derivation, model_file, optimizer=optimizer),
        "import math\n" + imports,
        _constants(program, derivation, dtype, w, helpers, [k for k, v in program.grads.items() if v in own]),
        helper_source(helpers),
        common.init_function(program),
        _function("predict(params, X=None, **named)", common.API_DOCS["predict"], predict),
        _function("loss(params, X=None, Y=None, **named)", common.API_DOCS["loss"], loss_lines),
        _function(
            "value_and_grad(params, X=None, Y=None, **named)",
            common.API_DOCS["value_and_grad"],
            [LOSS_CHECK, "return _value_and_grad(params, X, Y, B)"],
        ),
        _function("_value_and_grad(params, X, Y, B)", "value_and_grad() of checked arguments.", vag),
        _function("hvp(params, X, Y, v)", common.API_DOCS["hvp"], hvp),
        TRAIN_TEMPLATE + step_functions(program),
        CULPRIT,
        checks,
        common.CHECKS,
    ]
    return "\n\n\n".join(p.strip("\n") for p in parts if p) + "\n"


#: The first lines of predict and of loss and value_and_grad: their arguments, checked.
_FITS = "\n_CHECK.fits(B)\nparams = _CHECK.named(params)"  # no more examples than memory holds
PREDICT_CHECK = "X, _, B = _CHECK.batch(X, None, target=False, named=named)" + _FITS
LOSS_CHECK = "X, Y, B = _CHECK.examples(X, Y, named)" + _FITS
HVP_CHECK = "X, Y, B = _CHECK.examples(X, Y)" + _FITS + "\ntangents = _CHECK.named(v, 'v')"


def _as_param(expr: str, shape: tuple[int, ...], node: Node) -> str:
    """A gradient as the caller gets it: a new array, never a parameter, input or constant itself."""
    if isinstance(node, (Param, Input, Constant)):
        return f"np.array({expr}, dtype=DTYPE)"  # a copy: a step would change it under the caller
    return f"np.asarray({expr}, dtype=DTYPE)" if not shape else expr


def _function(signature: str, doc: str, lines: list[str]) -> str:
    body = textwrap.indent("\n".join([f'"""{doc}"""', *lines]), "    ")
    return f"def {signature}:\n{body}"


def _constants(
    program: Program, derivation: Derivation, dtype: str, w: Writer, helpers: set[str], own: list[str]
) -> str:
    lines = common.constants(program, derivation, dtype)
    lines.append(f"UPDATE_CHUNK = {UPDATE_CHUNK}  # elements of a parameter the optimizer updates at once")
    per_example = w.peak * (8 if dtype == "float64" else 4)
    lines.append(f"MEMORY_PER_EXAMPLE = {per_example}  # bytes of arrays a call holds per example, at most")
    if helpers & {"clip01", "inside01", "bce"}:
        lines.append(f"EPS = {float(EPS)!r}")
    for node, name in w.constants.items():
        lines.append(f"{name} = {ops.constant_value(node.value)}")  # type: ignore[attr-defined]
    return "\n".join(lines)


TRAIN_TEMPLATE = '''def init_state(params):
    """The optimizer's state at the start: {"step": 0, and per state a dict of zeros like params}."""
    return _CHECK.fresh_state(params)


def train_step(params, state, X, Y, *, epoch=0, **settings):
    """One step of the optimizer on the batch (X, Y); updates params and state in place.

    Returns the batch's loss before the step. Settings of the optimizer given
    here (lr=0.1, ...) replace the model's for this step; epoch is what a
    schedule reads. Raises FloatingPointError, and changes nothing, if that
    loss is not finite. Parameters and state must be C-contiguous arrays of
    DTYPE (as init_params and init_state give).
    """
    return checked_step(_step, _CHECK, _ROWS, params, state, X, Y, epoch, settings)


def train(params, X=None, Y=None, *, epochs=None, batch_size=None, seed=None, shuffle=True,
          callback=None, state=None, start_epoch=0, on_step=None, **settings):
    """Mini-batch training with the model's optimizer; the model's training section gives the defaults.

    Each epoch shuffles the examples (with a generator seeded by (seed, epoch),
    so that a run resumed at an epoch with its state continues exactly),
    then for each batch runs the network, scores the loss, computes the
    gradient and takes a step of the optimizer. Epochs run from start_epoch
    to epochs; settings of the optimizer given here (lr=0.1, ...) replace
    the model's. on_step(epoch, step, steps, loss) is called after every
    step and callback(epoch, mean_loss) after every epoch; a callback
    returning False stops training. Returns the history: {"loss": [mean
    loss per epoch]}. The arrays in params and state (init_state(params),
    or fresh zeros if None) are looked up at the start of each epoch, and
    updated in place.

    If the loss or a parameter stops being finite, params and state are put
    back as they were at the start of that epoch (the last good values) and
    FloatingPointError says where it happened.
    """
    return checked_train(
        _epoch, _CHECK, _scalars, _culprit, TRAINING, params, X, Y, state, shuffle, callback, on_step,
        settings, epochs=epochs, batch_size=batch_size, seed=seed, start_epoch=start_epoch,
    )


def _epoch(p, s, X, Y, order, batch_size, first, last, losses, table):
    """Steps first .. last - 1 of an epoch: (sum of loss x rows, -1), or (the loss, the failed step)."""
    total = 0.0
    for step in range(first, last):
        rows = order[step * batch_size : (step + 1) * batch_size]
        xb, yb = tuple(a[rows] for a in X), tuple(a[rows] for a in Y)
        value = _step(p, s, xb, yb, len(rows), table[step])
        losses[step] = value
        if not math.isfinite(value):
            return value, step
        total += value * len(rows)
    return total, -1


'''

CULPRIT = '''def _culprit(params, X, Y, B):
    """Which parameter's gradient is not finite at these parameters (and checked data), if one is."""
    with np.errstate(all="ignore"):
        _, grads = _value_and_grad(_CHECK.named(params), X, Y, B)
    for k, g in grads.items():
        if not np.all(np.isfinite(g)):
            return f" (the gradient for {k} is not finite)"
    return ""'''


def step_functions(program: Program) -> str:
    """``_step`` (a training step of checked arguments), ``_update`` (one parameter's) and ``_scalars``."""
    optimizer = common.training_optimizer(program)
    n_states = len(optimizer.states)
    used = optimizer.used_scalars()
    arrays = ", ".join(["w", "g", *(f"s{j}" for j in range(n_states))])
    numbers = ", ".join(f"c{j}" for j in range(len(used)))
    clip = optimizer.clip_norm
    lines = [
        "value, grads = _value_and_grad(dict(zip(_CHECK.names, p)), X, Y, B)",
        "if not math.isfinite(value):",
        "    return value",
    ]
    gradient = "grads[name]"
    if clip is not None:  # as torch.nn.utils.clip_grad_norm_
        lines += [
            "norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))",
            f"scale = min(1.0, {clip!r} / (norm + 1e-6))",
        ]
        gradient = "grads[name] * scale"
    if used:
        lines.append(f"{numbers}{',' if len(used) == 1 else ''} = row.tolist()")
    states = "".join(f", s[{j} * n + i]" for j in range(n_states))
    lines += [
        "n = len(p)",
        "with np.errstate(all='ignore'):  # as native code: a step to infinity shows in the next loss",
        "    for i, name in enumerate(_CHECK.names):",
        f"        _update(p[i], {gradient}{states}{', ' if used else ''}{numbers})",
        "return value",
    ]
    step = _function(
        "_step(p, s, X, Y, B, row)",
        "A training step of checked arguments: the loss before it; nothing changes if it is not finite.",
        lines,
    )
    signature = f"{arrays}{', ' if used else ''}{numbers}"
    flat = ", ".join(
        f"{a}.reshape(-1)[i : i + UPDATE_CHUNK]" for a in ["w", "g", *(f"s{j}" for j in range(n_states))]
    )
    chunked = [
        "if w.size > UPDATE_CHUNK:  # a slice at a time: temporaries stay small",
        "    for i in range(0, w.size, UPDATE_CHUNK):",
        f"        _update({flat}{', ' if used else ''}{numbers})",
        "    return",
    ]
    update = _function(
        f"_update({signature})",
        "One parameter's update, in place (w and each state s<j>); c<j> are the step's numbers.",
        chunked + update_body(optimizer),
    )
    return "\n\n\n".join([step, update, common.scalars_function(optimizer)])


def update_body(optimizer: Optimizer) -> list[str]:
    """The optimizer's elementwise statements as NumPy statements, writing w and states in place."""
    names: dict[sympy.Basic, str] = {W: "w", G: "g"}
    names |= {version(s, 0): f"s{j}" for j, s in enumerate(optimizer.states)}
    names |= {u: f"c{j}" for j, u in enumerate(optimizer.used_scalars())}
    places = {"w": "w", **{s: f"s{j}" for j, s in enumerate(optimizer.states)}}
    lines: list[str] = []
    for k, (symbol, formula) in enumerate(optimizer.updates):
        order = sorted(formula.free_symbols, key=lambda x: names[x])
        body = formula.xreplace({x: element_symbol(i) for i, x in enumerate(order)})
        before, expr, _ = print_body(body, [names[x] for x in order], f"e{k}")
        lines += before
        if shown(symbol) in places:
            target = places[shown(symbol)]
            lines.append(f"{target}[...] = {expr}  # {shown(symbol)}")
        else:
            target = f"u{k}"
            lines.append(f"{target} = {expr}  # {shown(symbol)}")
        names[symbol] = target
    return lines
