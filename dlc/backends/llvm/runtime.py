"""The runtime a generated LLVM module carries: JIT, scratch memory, calls, the training loop.

Its source is copied into every module the LLVM backend writes (from the
line after ``RUNTIME STARTS``), so a compiled model needs only NumPy and
llvmlite, and SciPy's BLAS if present. ``Native`` builds the module's IR
for this CPU on first use, optimised at level 3, and keeps the machine code
in a cache on disk keyed by the IR, the CPU and the LLVM version
(:mod:`dlc.backends.llvm.cache`: ``DLC_CACHE_DIR``, by default
``~/.cache/dlc``; set it empty to switch the cache off). Everything the
native code needs is in a context block of 64-bit slots, written afresh
by each call from the arrays it was given; scratch memory is allocated
once for a batch capacity and grown only when a larger batch comes.
"""

# RUNTIME STARTS
import ctypes
import hashlib
import math
import sys
import threading

import numpy as np

from dlc.backends.guard import NO_HVP
from dlc.backends.llvm.cache import cache_folder, load_code, store_code


class Native:
    """The compiled code of one model, with its scratch memory and context block.

    Its methods take arrays that the module's API checked in the same call
    (see the guard's ``Checks``) and refer every slot the native entry
    point reads to them before calling it: nothing is kept
    from one call to the next but the scratch arena, which this object owns.
    A lock makes one native call at a time: a module can be shared between
    threads (train() releases the GIL during an epoch; other calls wait).
    """

    def __init__(self, ir_text, layout, dtype):
        self.layout = layout
        self.dtype = np.dtype(dtype)
        self.names = list(layout["params"])
        self.slot = layout["slots"]
        self.ctx = np.zeros(layout["slot_count"], dtype=np.int64)
        self.ctx_f = self.ctx.view(np.float64)
        self.cap = 0
        self.scratch = None
        self.lock = threading.Lock()
        # Where an array object does not hold its data pointer DATA_FIELD bytes in, slots point
        # into these cells instead (one per slot), which hold the data pointers.
        self.cells = None if _data_field_holds(layout["data_field"]) else np.zeros_like(self.ctx)
        self.cells_at = 0 if self.cells is None else self.cells.ctypes.data
        self.engine, self.functions = _jit(ir_text, bool(layout["hvp"]))
        self.ctx[self.slot["GEMM"]] = _gemm_address(self.dtype)
        self.ctx[self.slot["BLAS_MIN"]] = layout["blas_min_flops"]
        self.ctx_ptr = self.ctx.ctypes.data
        self.first_param = self.slot["PARAMS"]
        self.first_state = self.first_param + len(self.names)
        self.first_tangent = self.first_state + len(self.names) * layout["states"]
        self.first_data = self.first_tangent + len(self.names)  # the batch's inputs, then targets
        self.first_data_all = self.first_data + layout["data"]  # an epoch's: all examples of each
        self.batch_slot = self.slot["BATCH"]
        self.data_count = layout["data"]
        outputs = layout["outputs"]
        # a model's one unnamed output, which predict returns as an array
        lone = len(outputs) == 1 and not layout["named_outputs"]
        self.lone_output = next(iter(outputs.values())) if lone else None

    # ------------------------------------------------------------ state

    def reserve(self, batch):
        """Scratch for batches of up to ``batch`` examples (64-byte aligned)."""
        if batch <= self.cap:
            return
        if batch > MAX_ROWS:
            raise ValueError(f"a batch of {batch} examples is more than this module takes ({MAX_ROWS})")
        per, fixed = self.layout["arena"]
        count = per * batch + fixed + 64
        try:
            raw = np.zeros(count, dtype=self.dtype)
        except MemoryError:
            need = count * self.dtype.itemsize / 2**30
            raise MemoryError(f"a batch of {batch} examples needs {need:.1f} GiB of scratch memory") from None
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

    def enter(self, params, states, X, Y, rows):
        """Refer the slots to this call's arrays, and make room for ``rows`` examples.

        Every slot of an array that the call's entry point reads is written
        here, from arrays checked in the same call (the optimizer's state only
        for training; an epoch writes its own slots); the native code reads each
        array's data pointer when it runs. ``X`` and ``Y`` are tuples of arrays,
        one per input and target (``Y`` empty, or None, where no target is read:
        its slots are null).
        """
        self.refer(self.first_param, params)
        if states is not None:
            self.refer(self.first_state, states)
        data = X + Y if Y else X
        if len(data) != self.data_count:  # no target for predict, or no data for an epoch
            if len(data) > self.data_count:
                raise ValueError(f"{len(data)} arrays of data for a model of {self.data_count}")
            data += (None,) * (self.data_count - len(data))
        self.refer(self.first_data, data)
        if rows > self.cap or self.scratch is None:
            self.reserve(max(rows, 1))
        self.ctx[self.batch_slot] = rows

    def refer(self, first, arrays):
        """Slots ``first ...`` refer to ``arrays`` (None: a null slot), as DATA_FIELD says."""
        ctx, end = self.ctx, first + len(arrays)
        if self.cells is None:  # the array object itself
            ctx[first:end] = [0 if a is None else id(a) for a in arrays]
            return
        cells, offset = self.cells, self.layout["data_field"]
        for i, a in enumerate(arrays, first):
            cells[i] = 0 if a is None else a.ctypes.data
            ctx[i] = 0 if a is None else self.cells_at + 8 * i - offset

    # ------------------------------------------------------------ calls

    def predict(self, params, X, rows):
        if self.lone_output is not None and rows:
            where, shape, batched = self.lone_output
            with self.lock:
                self.enter(params, None, X, None, rows)
                self.functions["predict"](self.ctx_ptr)
                return self.home(where, shape, batched, rows).copy()
        outputs = self.layout["outputs"]
        if not outputs:
            raise NotImplementedError("this model declares no output")
        if rows == 0 and all(batched for _, _, batched in outputs.values()):
            found = {k: np.zeros((0, *shape) if batched else shape, dtype=self.dtype)
                     for k, (_, shape, batched) in outputs.items()}  # fmt: skip
        else:
            with self.lock:
                self.enter(params, None, X, None, rows)
                self.functions["predict"](self.ctx_ptr)
                found = {k: self.home(where, shape, batched, rows).copy()
                         for k, (where, shape, batched) in outputs.items()}  # fmt: skip
        return found if self.layout["named_outputs"] else next(iter(found.values()))

    def loss(self, params, X, Y, rows):
        with self.lock:
            self.enter(params, None, X, Y, rows)
            return self.functions["loss"](self.ctx_ptr)

    def value_and_grad(self, params, X, Y, rows):
        shapes = self.layout["shapes"]
        with self.lock:
            self.enter(params, None, X, Y, rows)
            value = self.functions["value_and_grad"](self.ctx_ptr)
            grads = {k: self.home(w, shapes[k], False, 0).copy() for k, w in self.layout["grads"].items()}
        return value, grads

    def hvp(self, params, tangents, X, Y, rows):
        if "hvp" not in self.functions:
            raise NotImplementedError(NO_HVP)
        shapes = self.layout["shapes"]
        with self.lock:
            self.enter(params, None, X, Y, rows)
            self.refer(self.first_tangent, tangents)
            self.functions["hvp"](self.ctx_ptr)
            return {k: self.home(w, shapes[k], False, 0).copy() for k, w in self.layout["hvp"].items()}

    def train_step(self, params, states, X, Y, rows, row):
        """One step; ``row``: the optimizer's numbers for it (float64, as _scalars gives)."""
        if not (type(row) is np.ndarray and row.dtype == np.float64 and row.shape == (self.layout["scalars"],)
                and row.flags.c_contiguous):  # fmt: skip
            width = self.layout["scalars"]
            raise ValueError(
                f"the optimizer's numbers for a step must be a C-contiguous float64 array of {width}"
            )
        with self.lock:
            self.enter(params, states, X, Y, rows)
            self.refer(self.slot["ROW"], (row,))
            return self.functions["train_step"](self.ctx_ptr)

    def _table(self, table, steps):
        width = self.layout["scalars"]
        if not (
            type(table) is np.ndarray
            and table.dtype == np.float64
            and table.shape == (steps, width)
            and table.flags.c_contiguous
        ):
            raise ValueError(
                f"the optimizer's numbers must be a C-contiguous float64 array of shape {(steps, width)}"
            )
        return table

    def epoch(self, params, states, X, Y, order, batch_size, first, last, losses, table):
        """Steps ``first .. last - 1`` of an epoch natively: (sum of loss x rows, failed step or -1).

        ``order`` (int64) is a permutation of X's rows, ``losses`` (float64, or None) has a
        place for each step of the epoch, ``table`` a row of the optimizer's numbers for each;
        all three are the training loop's own.
        """
        n = len(order)
        data = (*X, *Y)
        if len(data) != self.layout["data"] or any(len(a) != n for a in data) or (not data and n != 1):
            raise ValueError(f"a permutation of {n} examples for data of another size")
        if (
            order.dtype != np.int64
            or not order.flags.c_contiguous
            or (n and not 0 <= order.min() <= order.max() < n)
        ):
            raise ValueError("the permutation must be a C-contiguous int64 array of row indices")
        steps = -(-n // batch_size)
        if not 0 <= first <= last <= steps:
            raise ValueError(f"steps {first} to {last} are outside the epoch's {steps}")
        if losses is not None and not (
            losses.dtype == np.float64 and losses.flags.c_contiguous and len(losses) >= last
        ):
            raise ValueError("the steps' losses need a C-contiguous float64 array with a place for each step")
        self._table(table, steps)
        s = self.slot
        with self.lock:
            self.enter(params, states, (), (), min(batch_size, max(n, 1)))
            ctx = self.ctx
            ctx[s["N"]] = n
            ctx[s["ORDER"]] = order.ctypes.data
            ctx[s["BATCH_SIZE"]] = batch_size
            ctx[s["FIRST_STEP"]] = first
            ctx[s["LAST_STEP"]] = last
            ctx[s["STEP_LOSSES"]] = 0 if losses is None else losses.ctypes.data
            everything = slice(self.first_data_all, self.first_data_all + len(data))
            ctx[everything] = [a.ctypes.data for a in data]
            ctx[s["TABLE"]] = table.ctypes.data
            ctx[s["WIDTH"]] = self.layout["scalars"]
            total = self.functions["train_epoch"](self.ctx_ptr)
            ctx[everything] = 0
            for name in ("ORDER", "STEP_LOSSES", "TABLE"):
                ctx[s[name]] = 0
            return total, int(ctx[s["FAILED_STEP"]])


#: The largest batch: BLAS takes its dimensions as 32-bit integers.
MAX_ROWS = 2**31 - 1


def _data_field_holds(offset):
    """Whether a NumPy array object holds its data pointer ``offset`` bytes in, here.

    In CPython an array object starts with the object header, and then the
    data pointer (the ``data`` field of ``PyArrayObject_fields``, which
    compiled extensions read directly). Checked on arrays and views of
    several dtypes against ``ctypes.data``; not so in another Python or a
    debug build, where the cells of :class:`Native` are used.
    """
    if sys.implementation.name != "cpython":
        return False
    read = ctypes.c_void_p.from_address
    base = np.arange(64.0)
    probes = [base, base[3:], base[::2][5:].copy(), np.zeros((3, 5), np.float32), np.zeros(1, np.int64)]
    return all(read(id(a) + offset).value == a.ctypes.data for a in probes)


# --------------------------------------------------------------- JIT


def _jit(ir_text, with_hvp):
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
    folder = cache_folder()
    code = load_code(folder, key.hexdigest())
    if code is None:
        module.verify()
        tuning = llvm.create_pipeline_tuning_options(speed_level=3)
        tuning.loop_vectorization = True
        tuning.slp_vectorization = True
        tuning.loop_interleaving = False  # no faster here, and a tenth of the compile time
        passes = llvm.create_pass_builder(machine, tuning)
        passes.getModulePassManager().run(module, passes)
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.set_object_cache(lambda m, obj: store_code(folder, key.hexdigest(), obj), lambda m: code)
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
    if with_hvp:
        signatures["hvp"] = quick(None, ctypes.c_void_p)
    functions = {name: kind(engine.get_function_address(name)) for name, kind in signatures.items()}
    return (engine, machine, module), functions


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
