"""Program -> the text of a Python module whose steps run as native code.

The module has the API of every dlc backend (``init_params``, ``predict``,
``loss``, ``value_and_grad``, ``train_step``, ``train``, the shape
constants and ``FORMULAS``). It carries its LLVM IR as text, where a person
can read it, and the runtime of :mod:`dlc.backends.llvm.runtime`, which
compiles that IR for the CPU it runs on; it imports NumPy and llvmlite (and
SciPy's BLAS where installed), never dlc.
"""

from __future__ import annotations

from dlc.backends import common, guard, loop
from dlc.backends.llvm import cache, runtime
from dlc.backends.llvm.layout import DATA_FIELD, Home, Slots
from dlc.backends.llvm.native import NativeProgram
from dlc.backends.llvm.program import native_program
from dlc.backends.llvm.tensor import GEMM_MIN_FLOPS
from dlc.grad import Program
from dlc.grad.formulas import Derivation

NOTE = """
The steps run as native code: LLVM_IR, at the end of this module, is
compiled for this CPU on first use (and cached, see Native). One call of
train_step does forward pass, backward pass and the optimizer's update;
train() makes one native call per epoch.
"""


def write_module(program: Program, derivation: Derivation, dtype: str, model_file: str) -> str:
    """The module's source text: deterministic, readable, importing NumPy and llvmlite."""
    native = native_program(program, dtype)
    imports, machinery = common.carried_source([guard, loop, cache, runtime])
    optimizer = common.training_optimizer(program)
    parts = [
        common.docstring(program.graph.name, "LLVM", dtype, derivation, model_file, NOTE, optimizer),
        imports,
        "\n".join(
            [
                *common.constants(program, derivation, dtype),
                "MEMORY_PER_EXAMPLE = 0  # the native code sizes its scratch memory itself (Native.reserve)",
            ]
        ),
        common.init_function(program),
        API,
        common.scalars_function(optimizer),
        f"LAYOUT = {_layout(native, program)!r}",
        _ir_literal(native.text()),
        machinery,
        common.CHECKS,
    ]
    return "\n\n\n".join(p.strip("\n") for p in parts) + "\n"


def _home(home: Home | None) -> tuple[int, int] | None:
    return None if home is None else (home.per_example, home.fixed)


def _layout(native: NativeProgram, program: Program) -> dict[str, object]:
    graph = program.graph
    slots = {name: getattr(Slots, name) for name in dir(Slots) if name.isupper()}
    return {
        "params": [p.name for p in graph.params],
        "shapes": {p.name: p.shape for p in graph.params},
        "data": len(graph.data),  # inputs and targets, each a slot of the batch and one of an epoch's data
        "arena": (native.arena.per_example, native.arena.fixed),
        "outputs": {k: (_home(native.output_homes[k]), v.shape, v.batched) for k, v in graph.outputs.items()},
        "named_outputs": graph.named_outputs,
        "grads": {k: _home(h) for k, h in native.grad_homes.items()},
        "hvp": {k: _home(h) for k, h in native.hvp_homes.items()},
        "slots": dict(sorted(slots.items(), key=lambda kv: kv[1])),
        "slot_count": native.slots.count,
        "states": len(native.optimizer.states),
        "scalars": max(len(native.optimizer.used_scalars()), 1),
        "blas_min_flops": GEMM_MIN_FLOPS,
        "data_field": DATA_FIELD,
    }


def _ir_literal(text: str) -> str:
    """``LLVM_IR = ...``: the IR as a raw triple-quoted string when that is safe, else its repr."""
    if "'''" in text or "\\" in text or not text.isascii():
        return f"LLVM_IR = {text!r}"
    return f"LLVM_IR = r'''\n{text}'''"


API = '''_NATIVE = []
_NATIVE_LOCK = threading.Lock()


def _native():
    """The compiled code, built on first use."""
    if not _NATIVE:
        with _NATIVE_LOCK:
            if not _NATIVE:
                _NATIVE.append(Native(LLVM_IR, LAYOUT, DTYPE))
    return _NATIVE[0]


def predict(params, X=None, **named):
    """The model's output for a batch X (batch-major)."""
    X, _, rows = _CHECK.batch(X, None, target=False, named=named)
    return _native().predict(_CHECK.params(params), X, rows)


def loss(params, X=None, Y=None, **named):
    """The loss: the mean over the batch."""
    X, Y, rows = _CHECK.examples(X, Y, named)
    return _native().loss(_CHECK.params(params), X, Y, rows)


def value_and_grad(params, X=None, Y=None, **named):
    """The loss and its gradient with respect to every parameter."""
    X, Y, rows = _CHECK.examples(X, Y, named)
    return _native().value_and_grad(_CHECK.params(params), X, Y, rows)


def hvp(params, X, Y, v):
    """H v: the Hessian of the loss times v (a dict like params), for every parameter."""
    X, Y, rows = _CHECK.examples(X, Y)
    params, v = _CHECK.params(params), _CHECK.params(v, "v")
    return _native().hvp(params, v, X, Y, rows)


def init_state(params):
    """The optimizer's state at the start: {"step": 0, and per state a dict of zeros like params}."""
    return _CHECK.fresh_state(params)


def train_step(params, state, X, Y, *, epoch=0, **settings):
    """One step of the optimizer on the batch (X, Y); updates params and state in place.

    Forward pass, backward pass and update are one native call. Returns the
    batch's loss before the step. Settings of the optimizer given here
    (lr=0.1, ...) replace the model's for this step; epoch is what a schedule
    reads. Raises FloatingPointError, and changes nothing, if that loss is not
    finite. Parameters and state must be C-contiguous arrays of DTYPE (as
    init_params and init_state give).
    """
    return checked_step(_step, _CHECK, _ROWS, params, state, X, Y, epoch, settings)


def train(params, X=None, Y=None, *, epochs=None, batch_size=None, seed=None, shuffle=True,
          callback=None, state=None, start_epoch=0, on_step=None, **settings):
    """Mini-batch training with the model's optimizer; the model's training section gives the defaults.

    Each epoch shuffles the examples (with a generator seeded by (seed, epoch),
    so that a run resumed at an epoch with its state continues exactly),
    then for each batch runs the network, scores the loss, computes the
    gradient and takes a step of the optimizer: the whole epoch is one
    native call. Epochs run from start_epoch to epochs; settings of the
    optimizer given here (lr=0.1, ...) replace the model's.
    on_step(epoch, step, steps, loss) is called for every step (then an
    epoch takes a few native calls) and callback(epoch, mean_loss) after
    every epoch; a callback returning False stops training. Returns the
    history: {"loss": [mean loss per epoch]}. The arrays in params and state
    (init_state(params), or fresh zeros if None) are looked up at the start
    of each epoch, and updated in place.

    If the loss or a parameter stops being finite, params and state are put
    back as they were at the start of that epoch (the last good values) and
    FloatingPointError says where it happened.
    """
    return checked_train(
        _epoch, _CHECK, _scalars, _culprit, TRAINING, params, X, Y, state, shuffle, callback, on_step,
        settings, epochs=epochs, batch_size=batch_size, seed=seed, start_epoch=start_epoch,
    )


def _step(*work):
    """A training step of checked arguments, natively (see Native.train_step)."""
    return _native().train_step(*work)


def _epoch(*work):
    """Steps of an epoch, natively (see Native.epoch)."""
    return _native().epoch(*work)


def _culprit(params, X, Y, B):
    """Which parameter's gradient is not finite at these parameters (and checked data), if one is."""
    _, grads = _native().value_and_grad(_CHECK.params(params), X, Y, B)
    for k, g in grads.items():
        if not np.all(np.isfinite(g)):
            return f" (the gradient for {k} is not finite)"
    return ""'''
