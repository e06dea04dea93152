"""The runtime a generated LLVM module carries: JIT, scratch memory, calls, the training loop.

Its source is copied into every module the LLVM backend writes (from the
line after ``RUNTIME STARTS``), so a compiled model needs only NumPy and
llvmlite, and SciPy's BLAS if present. ``Native`` builds the module's IR
for this CPU on first use, optimised at level 3, and keeps the machine code
in a cache on disk keyed by the IR, the CPU and the LLVM version
(``DLC_CACHE_DIR``, by default ``~/.cache/dlc``; set it empty to switch the
cache off). Everything the native code needs is in a context block of
64-bit slots; scratch memory is allocated once for a batch capacity and
grown only when a larger batch comes.
"""

# RUNTIME STARTS
import ctypes
import hashlib
import math
import operator
import os
import tempfile
import time

import numpy as np


class Native:
    """The compiled code of one model, with its scratch memory and context block."""

    def __init__(self, ir_text, layout, dtype):
        self.layout = layout
        self.dtype = np.dtype(dtype)
        self.names = list(layout["params"])
        self.slot = layout["slots"]
        self.ctx = np.zeros(layout["slot_count"], dtype=np.int64)
        self.ctx_f = self.ctx.view(np.float64)
        self.cap = 0
        self.scratch = None
        # ids of the params and velocity arrays whose addresses are in the slots, and whether
        # the params were checked for training (writable, of the module's dtype)
        self.bound = (None, None, False)
        self.rates = None
        self.state = None  # the dicts and arrays of the last training step, see train_step
        self.last_xy = (None, None)  # ((X, Y), batch size) whose addresses are in the slots
        self.engine, self.functions = _jit(ir_text)
        self.step = self.functions["train_step"]
        self.ctx[self.slot["GEMM"]] = _gemm_address(self.dtype)
        self.ctx[self.slot["BLAS_MIN"]] = layout["blas_min_flops"]
        self.ctx_ptr = self.ctx.ctypes.data

    # ------------------------------------------------------------ state

    def reserve(self, batch):
        """Scratch for batches of up to ``batch`` examples (64-byte aligned)."""
        if batch <= self.cap:
            return
        per, fixed = self.layout["arena"]
        count = per * batch + fixed + 64
        raw = np.zeros(count, dtype=self.dtype)
        skip = (-raw.ctypes.data % 64) // self.dtype.itemsize
        self.scratch = raw[skip:]
        self.cap = batch
        self.ctx[self.slot["SCRATCH"]] = self.scratch.ctypes.data
        self.ctx[self.slot["CAP"]] = batch

    def home(self, where, shape, batched, batch):
        """The scratch array holding a result, shaped [B, *shape] (or shape)."""
        start = where[0] * self.cap + where[1]
        full = ((batch,) if batched else ()) + tuple(shape)
        return self.scratch[start : start + math.prod(full)].reshape(full)

    def bind(self, params, velocity=None):
        """Put the parameters' (and velocities') addresses in the slots; checked once per set of arrays.

        With a velocity (training), the arrays are updated in place, so they must be
        writable, C-contiguous and of the module's dtype; without, others are converted.
        The arrays last bound are kept referenced, so their ids name them.
        """
        key = tuple(map(id, map(params.__getitem__, self.names)))
        moving = None if velocity is None else tuple(map(id, map(velocity.__getitem__, self.names)))
        bound_key, bound_moving, writable = self.bound
        if key == bound_key and (moving is None or (moving == bound_moving and writable)):
            return
        given = [params[k] for k in self.names]
        arrays = [
            self._checked(a, k, "params", moving is not None) for a, k in zip(given, self.names, strict=True)
        ]
        first = self.slot["PARAMS"]
        for i, a in enumerate(arrays):
            self.ctx[first + i] = a.ctypes.data
        if moving is not None:
            for i, k in enumerate(self.names):
                self.ctx[first + len(self.names) + i] = self._checked(
                    velocity[k], k, "velocity", True
                ).ctypes.data
            self.keep_velocity = [velocity[k] for k in self.names]
        self.keep_params = (given, arrays)  # the ids stay theirs; converted copies stay alive
        unchanged = all(a is g for a, g in zip(arrays, given, strict=True))
        if moving is not None:
            self.bound = (key, moving, True)
        else:
            self.bound = (key if unchanged else None, bound_moving, False)

    def _checked(self, a, name, what, in_place):
        shape = tuple(self.layout["shapes"][name])
        if in_place:
            ok = (
                isinstance(a, np.ndarray)
                and a.dtype == self.dtype
                and a.flags.c_contiguous
                and a.flags.writeable
            )
            if not ok or a.shape != shape:
                raise TypeError(
                    f"{what}[{name!r}] must be a writable C-contiguous {self.dtype} array "
                    f"of shape {shape}: training updates it in place"
                )
            return a
        a = np.asarray(a, dtype=self.dtype, order="C")
        if a.shape != shape:
            raise ValueError(f"{what}[{name!r}] has shape {a.shape}, expected {shape}")
        return a

    def data(self, X, Y):
        """Put the batch's input and target in the slots (converted if need be); returns the batch size."""
        if self.last_xy[0] is not None and X is self.last_xy[0][0] and Y is self.last_xy[0][1]:
            return self.last_xy[1]
        arrays = []
        batch = None
        for name, a, shape in (("X", X, self.layout["input"]), ("Y", Y, self.layout["target"])):
            if shape is None or a is None:
                arrays.append(a)
                continue
            a = np.asarray(a, dtype=self.dtype, order="C")
            if a.ndim != len(shape) + 1 or a.shape[1:] != tuple(shape):
                raise ValueError(f"{name} has shape {a.shape}, expected (B, {', '.join(map(str, shape))})")
            batch = a.shape[0] if batch is None else batch
            self.ctx[self.slot[name]] = a.ctypes.data
            arrays.append(a)
        batch = 1 if batch is None else batch
        self.reserve(batch)
        self.ctx[self.slot["BATCH"]] = batch
        self.keep_data = arrays
        unchanged = arrays[0] is X and arrays[1] is Y
        self.last_xy = ((X, Y), batch) if unchanged else (None, None)
        return batch

    # ------------------------------------------------------------ calls

    def predict(self, params, X):
        out = self.layout["output"]
        if out is None:
            raise NotImplementedError("this model declares no output")
        self.bind(params)
        batch = self.data(X, None)
        self.functions["predict"](self.ctx_ptr)
        where, shape, batched = out
        return self.home(where, shape, batched, batch).copy()

    def loss(self, params, X, Y):
        self.bind(params)
        self.data(X, Y)
        return self.functions["loss"](self.ctx_ptr)

    def value_and_grad(self, params, X, Y):
        self.bind(params)
        self.data(X, Y)
        value = self.functions["value_and_grad"](self.ctx_ptr)
        shapes = self.layout["shapes"]
        grads = {k: self.home(w, shapes[k], False, 0).copy() for k, w in self.layout["grads"].items()}
        return value, grads

    def train_step(self, params, velocity, X, Y, lr, momentum, nesterov):
        # The hot path of a Python training loop: for the dicts, arrays and rates of the
        # previous call nothing is checked again but that they are those very objects.
        if not self._same_state(params, velocity):
            self.bind(params, velocity)
            self.state = (params, velocity, tuple(params), tuple(velocity),
                          list(params.values()), list(velocity.values()))  # fmt: skip
        last = self.last_xy[0]
        if last is None or X is not last[0] or Y is not last[1]:
            self.data(X, Y)
        if (lr, momentum, nesterov) != self.rates:
            self.set_rates(lr, momentum, nesterov)
        value = self.step(self.ctx_ptr)
        if not math.isfinite(value):
            raise FloatingPointError(f"the loss is {value}")
        return value

    def _same_state(self, params, velocity):
        """The dicts of the last training step, holding the same arrays under the same names."""
        state = self.state
        return (
            state is not None
            and params is state[0]
            and velocity is state[1]
            and tuple(params) == state[2]
            and tuple(velocity) == state[3]
            and all(map(operator.is_, params.values(), state[4]))
            and all(map(operator.is_, velocity.values(), state[5]))
        )

    def epoch(self, X, Y, order, batch_size, first, last, losses):
        """Steps ``first .. last - 1`` of an epoch natively: (sum of loss x rows, failed step or -1)."""
        s = self.slot
        self.ctx[s["N"]] = len(order)
        self.ctx[s["ORDER"]] = order.ctypes.data
        self.ctx[s["BATCH_SIZE"]] = batch_size
        self.ctx[s["FIRST_STEP"]] = first
        self.ctx[s["LAST_STEP"]] = last
        self.ctx[s["STEP_LOSSES"]] = 0 if losses is None else losses.ctypes.data
        self.ctx[s["X_ALL"]] = 0 if X is None else X.ctypes.data
        self.ctx[s["Y_ALL"]] = 0 if Y is None else Y.ctypes.data
        self.reserve(min(batch_size, max(len(order), 1)))
        total = self.functions["train_epoch"](self.ctx_ptr)
        return total, int(self.ctx[s["FAILED_STEP"]])

    def set_rates(self, lr, momentum, nesterov):
        if (lr, momentum, nesterov) == self.rates:
            return
        self.rates = (lr, momentum, nesterov)
        self.ctx_f[self.slot["LR"]] = lr
        self.ctx_f[self.slot["MOMENTUM"]] = momentum
        self.ctx[self.slot["NESTEROV"]] = 1 if nesterov else 0


# --------------------------------------------------------------- JIT


def _jit(ir_text):
    """Machine code for this CPU, from the disk cache or compiled now; returns (engine, functions)."""
    import llvmlite
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    # Full unrolling up to 100 instructions instead of O3's 300: a third less compile time and
    # no slower kernels here. LLVM's options belong to the process (numba's code shares them).
    llvm.set_option("", "-unroll-threshold=100")
    cpu, features = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
    if "+avx512f" in features.split(","):
        # LLVM keeps to 256-bit vectors on AVX-512 CPUs unless told: the full width is faster here.
        features += ",-prefer-256-bit"
    machine = llvm.Target.from_default_triple().create_target_machine(cpu=cpu, features=features, opt=3)
    module = llvm.parse_assembly(ir_text)
    module.triple = machine.triple
    module.data_layout = str(machine.target_data)
    settings = "unroll-threshold=100,no-interleave"  # what the optimisation below does
    key = hashlib.sha256(
        "\0".join([ir_text, machine.triple, cpu, features, llvmlite.__version__, settings]).encode()
    )
    cached = _cache_path(key.hexdigest())
    code = _read(cached)
    if code is None:
        module.verify()
        tuning = llvm.create_pipeline_tuning_options(speed_level=3)
        tuning.loop_vectorization = True
        tuning.slp_vectorization = True
        tuning.loop_interleaving = False  # no faster here, and a tenth of the compile time
        passes = llvm.create_pass_builder(machine, tuning)
        passes.getModulePassManager().run(module, passes)
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.set_object_cache(lambda m, obj: _write(cached, obj), lambda m: code)
    engine.finalize_object()
    # Calls that take microseconds keep the GIL (releasing and taking it back costs as much);
    # an epoch lets other threads run meanwhile.
    quick, slow = ctypes.PYFUNCTYPE, ctypes.CFUNCTYPE
    signatures = {
        "predict": quick(None, ctypes.c_void_p),
        "loss": quick(ctypes.c_double, ctypes.c_void_p),
        "value_and_grad": quick(ctypes.c_double, ctypes.c_void_p),
        "train_step": quick(ctypes.c_double, ctypes.c_void_p),
        "train_epoch": slow(ctypes.c_double, ctypes.c_void_p),
    }
    functions = {name: kind(engine.get_function_address(name)) for name, kind in signatures.items()}
    return (engine, machine, module), functions


def _cache_path(key):
    folder = os.environ.get("DLC_CACHE_DIR")
    if folder is None:
        folder = os.path.join(os.path.expanduser("~"), ".cache", "dlc")
    return os.path.join(folder, key + ".o") if folder else None


def _read(path):
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _write(path, code):
    """Store compiled code atomically; a cache that cannot be written is no error."""
    if path is None:
        return
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(code)
        os.replace(temporary, path)
    except OSError:
        pass


def _gemm_address(dtype):
    """The address of SciPy's BLAS dgemm/sgemm (Fortran interface), or 0 to use generated loops."""
    try:
        from scipy.linalg import cython_blas
    except ImportError:
        return 0
    capsule = cython_blas.__pyx_capi__["dgemm" if dtype == np.float64 else "sgemm"]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return get_pointer(capsule, get_name(capsule)) or 0


# --------------------------------------------------------- training


def _train(native, params, X, Y, epochs, batch_size, lr, momentum, nesterov, seed,
          shuffle, callback, velocity, start_epoch, on_step, culprit):  # fmt: skip
    """The mini-batch SGD loop of ``train()``; each epoch is one native call (or a few, to report steps)."""
    if velocity is None:
        velocity = {k: np.zeros_like(v) for k, v in params.items()}
    native.bind(params, velocity)
    native.set_rates(lr, momentum, nesterov)
    X = None if X is None else np.asarray(X, dtype=native.dtype, order="C")
    Y = None if Y is None else np.asarray(Y, dtype=native.dtype, order="C")
    n = 1 if X is None else X.shape[0]
    steps = -(-n // batch_size)
    history = {"loss": []}
    chunk = Chunks()
    losses = np.zeros(steps, dtype=np.float64)  # each step's loss, written by the native epoch
    for epoch in range(start_epoch, epochs):
        order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
        order = order.astype(np.int64)
        saved = ({k: w.copy() for k, w in params.items()}, {k: v.copy() for k, v in velocity.items()})
        total, failed = _run_epoch(native, X, Y, order, batch_size, losses, epoch, on_step, chunk)
        if failed >= 0:
            _restore(params, velocity, saved)
            rows = order[failed * batch_size : (failed + 1) * batch_size]
            xb = None if X is None else X[rows]
            yb = None if Y is None else Y[rows]
            raise FloatingPointError(
                f"epoch {epoch}, step {failed}: the loss is {total}{culprit(params, xb, yb)}; "
                f"parameters restored to the start of epoch {epoch}"
            )
        broken = [k for k, w in params.items() if not np.all(np.isfinite(w))]
        if broken:  # a gradient was not finite although the loss was
            _restore(params, velocity, saved)
            raise FloatingPointError(
                f"epoch {epoch}: parameter {broken[0]} stopped being finite{culprit(params, X, Y)}; "
                f"parameters restored to the start of epoch {epoch}"
            )
        history["loss"].append(total / n)
        if callback is not None and callback(epoch, history["loss"][-1]) is False:
            break
    return history


class Chunks:
    """How many steps to run per native call when every step must be reported: about 50 ms' worth."""

    def __init__(self):
        self.size = 1

    def adapt(self, seconds):
        if seconds < 0.025:
            self.size *= 2
        elif seconds > 0.1 and self.size > 1:
            self.size //= 2


def _run_epoch(native, X, Y, order, batch_size, losses, epoch, on_step, chunk):
    """One epoch; returns (sum of loss x rows, -1), or (the failed step's loss, its index)."""
    steps = len(losses)
    if on_step is None:
        total, failed = native.epoch(X, Y, order, batch_size, 0, steps, losses)
        return (float(losses[failed]), failed) if failed >= 0 else (total, failed)
    total, first = 0.0, 0
    while first < steps:
        last = min(steps, first + chunk.size)
        began = time.perf_counter()
        part, failed = native.epoch(X, Y, order, batch_size, first, last, losses)
        chunk.adapt(time.perf_counter() - began)
        if failed >= 0:
            return float(losses[failed]), failed
        total += part
        for step in range(first, last):
            on_step(epoch, step, steps, float(losses[step]))
        first = last
    return total, -1


def _restore(params, velocity, saved):
    for now, before in zip((params, velocity), saved, strict=True):
        for k in now:
            now[k][...] = before[k]
