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

from dlc.backends import common, guard
from dlc.backends.numpy import inplace, ops
from dlc.backends.numpy.memory import Memory
from dlc.backends.numpy.printer import helper_source
from dlc.grad import Program
from dlc.grad import notation as nt
from dlc.grad.formulas import Derivation, Notation, forward_names
from dlc.graph.graph import topological_order
from dlc.graph.nodes import BatchSize, Constant, Elementwise, Input, Loss, Node, Param, Softmax, Tangent
from dlc.graph.scalar import EPS

#: Names the module itself defines or its functions use.
RESERVED = {
    "np", "DTYPE", "PARAM_SHAPES", "OWN_GRADS", "INPUT_SHAPE", "TARGET_SHAPE", "TRAINING", "FORMULAS", "EPS",
    "init_params", "predict", "loss", "value_and_grad", "train_step", "train", "params", "velocity",
    "grads", "X", "Y", "B", "rng", "lr", "momentum", "nesterov", "value",
    "_CHECK", "Checks", "_step", "_value_and_grad", "_restore", "_culprit", "numbers", "operator",
    "hvp", "tangents", "itertools", "NO_HVP",
    "sigmoid", "softplus", "relu", "step", "leaky_relu", "clip01", "inside01",
    "softmax", "logsumexp", "mse", "bce", "bce_logits", "softmax_ce", "softmax_ce_softmax", "math",
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
        return lines

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
        if isinstance(node, Input):
            return [f"{name} = {'X' if node.role == 'input' else 'Y'}"]
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


def _softmax_pairs(order: list[Node]) -> dict[Node, Node]:
    """Softmax cross-entropies whose softmax is needed too: one exp serves both.

    The softmax is then computed where its loss is, so only if nothing reads
    it before: not the loss's target (softmax(z) itself, or tanh of it), nor
    any value the order puts ahead of the loss.
    """
    softmax = {n.inputs[0]: n for n in order if isinstance(n, Softmax) and n.batched}
    position = {n: i for i, n in enumerate(order)}
    first_use: dict[Node, int] = {}
    for n in reversed(order):
        for x in n.inputs:
            first_use[x] = position[n]
    return {
        n: softmax[n.inputs[0]]
        for n in order
        if isinstance(n, Loss)
        and n.kind == "softmax_ce"
        and n.batched
        and n.inputs[0] in softmax
        and first_use.get(softmax[n.inputs[0]], len(order)) > position[n]
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
    if graph.output is not None:
        predict = [PREDICT_CHECK, *w.body([graph.output]), f"return {w.variable(graph.output)}"]
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
    helpers = set(w.ctx.helpers)
    imports, checks = common.carried_source([guard])
    parts = [
        common.docstring(graph.name, "NumPy", dtype, derivation, model_file),
        "import math\n" + imports,
        _constants(program, derivation, dtype, w, helpers, [k for k, v in program.grads.items() if v in own]),
        helper_source(helpers),
        common.init_function(program),
        _function("predict(params, X)", common.API_DOCS["predict"], predict),
        _function("loss(params, X, Y)", common.API_DOCS["loss"], loss_lines),
        _function(
            "value_and_grad(params, X, Y)",
            common.API_DOCS["value_and_grad"],
            [LOSS_CHECK, "return _value_and_grad(params, X, Y, B)"],
        ),
        _function("_value_and_grad(params, X, Y, B)", "value_and_grad() of checked arguments.", vag),
        _function("hvp(params, X, Y, v)", common.API_DOCS["hvp"], hvp),
        TRAIN_TEMPLATE,
        checks,
        common.CHECKS,
    ]
    return "\n\n\n".join(p.strip("\n") for p in parts if p) + "\n"


#: The first lines of predict and of loss and value_and_grad: their arguments, checked.
PREDICT_CHECK = "X, _, B = _CHECK.batch(X, None, target=False)\nparams = _CHECK.named(params)"
LOSS_CHECK = "X, Y, B = _CHECK.examples(X, Y)\nparams = _CHECK.named(params)"
HVP_CHECK = LOSS_CHECK + "\ntangents = _CHECK.named(v, 'v')"


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
    lines.append(
        "# Gradients that value_and_grad returns in arrays of their own (no view, nothing shared):\n"
        "# train_step scales these in place rather than allocating lr * g."
    )
    lines.append(f"OWN_GRADS = {{{', '.join(map(repr, own))}}}" if own else "OWN_GRADS = set()")
    if helpers & {"clip01", "inside01", "bce"}:
        lines.append(f"EPS = {float(EPS)!r}")
    for node, name in w.constants.items():
        lines.append(f"{name} = {ops.constant_value(node.value)}")  # type: ignore[attr-defined]
    return "\n".join(lines)


TRAIN_TEMPLATE = '''def train_step(params, velocity, X, Y, lr, momentum=0.0, nesterov=False):
    """One SGD step with momentum on the batch (X, Y); updates params and velocity in place.

    Returns the batch's loss before the step. Raises FloatingPointError, and
    changes nothing, if that loss is not finite. (A gradient that is not
    finite while the loss is shows in the next step's loss; train() then puts
    back the parameters of the epoch's start.) Parameters and velocities must
    be C-contiguous arrays of DTYPE (as init_params gives).
    """
    p, v = _CHECK.state(params, velocity)
    X, Y, B = _CHECK.examples(X, Y)
    lr, momentum = _CHECK.rates(lr, momentum)
    return _step(dict(zip(_CHECK.names, p)), dict(zip(_CHECK.names, v)), X, Y, B, lr, momentum, nesterov)


def _step(params, velocity, X, Y, B, lr, momentum, nesterov):
    """train_step() of checked arguments."""
    value, grads = _value_and_grad(params, X, Y, B)
    if not math.isfinite(value):
        raise FloatingPointError(f"the loss is {value}")
    for name, g in grads.items():
        v, w = velocity[name], params[name]
        if name in OWN_GRADS:
            g *= lr  # g <- eta*g, in the array value_and_grad made for it
        else:
            g = lr * g
        v *= momentum
        v -= g  # v <- mu*v - eta*g
        if nesterov:
            w += momentum * v - g  # w <- w + mu*v - eta*g
        else:
            w += v  # w <- w + v
    return value


def train(params, X=None, Y=None, *, epochs=None, batch_size=None, lr=None, momentum=None,
          nesterov=None, seed=None, shuffle=True, callback=None, velocity=None, start_epoch=0,
          on_step=None):
    """Mini-batch SGD with momentum; the model's training section gives the defaults.

    Each epoch shuffles the examples (with a generator seeded by (seed, epoch),
    so that a run resumed at an epoch with its velocity continues exactly),
    then for each batch runs the network, scores the loss, computes the
    gradient and steps against it. Epochs run from start_epoch to epochs.
    on_step(epoch, step, steps, loss) is called after every step and
    callback(epoch, mean_loss) after every epoch; a callback returning False
    stops training. Returns the history: {"loss": [mean loss per epoch]}.
    The arrays in params and velocity are looked up at the start of each
    epoch, and updated in place.

    If the loss or a parameter stops being finite, params and velocity are
    put back as they were at the start of that epoch (the last good values)
    and FloatingPointError says where it happened.
    """
    X, Y, n, velocity, s = _CHECK.training(
        params, X, Y, velocity, callback, on_step, TRAINING, epochs=epochs, batch_size=batch_size,
        lr=lr, momentum=momentum, nesterov=nesterov, seed=seed, start_epoch=start_epoch,
    )
    batch_size = min(s["batch_size"], n)  # a larger batch size takes all examples in one step
    steps = -(-n // batch_size)
    history = {"loss": []}
    for epoch in range(s["start_epoch"], s["epochs"]):
        # checked each epoch: a callback may have put other arrays in the dicts
        p, v = _CHECK.state(params, velocity)
        bound = (dict(zip(_CHECK.names, p)), dict(zip(_CHECK.names, v)))
        order = np.random.default_rng([s["seed"], epoch]).permutation(n) if shuffle else np.arange(n)
        saved = [a.copy() for a in p + v]
        total = 0.0
        for step, start in enumerate(range(0, n, batch_size)):
            batch = order[start:start + batch_size]
            xb = None if X is None else X[batch]
            yb = None if Y is None else Y[batch]
            try:
                value = _step(*bound, xb, yb, len(batch), s["lr"], s["momentum"], s["nesterov"])
            except FloatingPointError as error:
                _restore(p + v, saved)
                raise FloatingPointError(
                    f"epoch {epoch}, step {step}: {error}{_culprit(params, xb, yb)}; "
                    f"parameters restored to the start of epoch {epoch}"
                ) from None
            total += value * len(batch)
            if on_step is not None:
                on_step(epoch, step, steps, value)
        broken = [k for k, w in zip(_CHECK.names, p) if not np.all(np.isfinite(w))]
        if broken:  # a gradient was not finite although the loss was
            _restore(p + v, saved)
            raise FloatingPointError(
                f"epoch {epoch}: parameter {broken[0]} stopped being finite{_culprit(params, X, Y)}; "
                f"parameters restored to the start of epoch {epoch}"
            )
        history["loss"].append(total / n)
        if callback is not None and callback(epoch, history["loss"][-1]) is False:
            break
    return history


def _restore(arrays, saved):
    for now, before in zip(arrays, saved):
        now[...] = before


def _culprit(params, X, Y):
    """Which parameter's gradient is not finite at these parameters, if one is."""
    with np.errstate(all="ignore"):
        _, grads = value_and_grad(params, X, Y)
    for k, g in grads.items():
        if not np.all(np.isfinite(g)):
            return f" (the gradient for {k} is not finite)"
    return ""'''
