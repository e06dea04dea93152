"""The LLVM backend's math library: accuracy in ulps, special values, vectorization.

Each function is called from a loop kernel ``void k(in..., out, n)``, optimised
at O3 for the host CPU and run on NumPy arrays. f64 results are measured
against mpmath at 40 digits, f32 results against the float64 NumPy result.
The bounds asserted are the measured maxima (see mathlib's docstring) rounded
up, so a regression of a fraction of an ulp shows.
"""

from __future__ import annotations

import ctypes
import re
import zlib
from collections.abc import Callable
from typing import Any

import mpmath
import numpy as np
import pytest
from llvmlite import ir

from dlc.backends.llvm.mathlib import FUNCTIONS, math_function
from dlc.backends.llvm.mathlib import constants as mathconst

IR_TYPES = {"f64": ir.DoubleType, "f32": ir.FloatType}
NP_TYPES: dict[str, type[np.floating[Any]]] = {"f64": np.float64, "f32": np.float32}

# Max error in ulps allowed, per function: (f64, f32). The measured maxima, over far larger
# samples than these tests use (see mathlib's docstring), are in the comments.
BOUNDS = {
    "exp": (1.0, 1.0),  # 0.97, 0.98
    "expm1": (1.0, 1.0),  # 0.91, 0.97
    "log": (0.9, 0.9),  # 0.84, 0.81
    "log1p": (0.9, 0.9),  # 0.77, 0.84
    "tanh": (1.9, 1.35),  # 1.88, 1.31
    "sigmoid": (1.45, 1.5),  # 1.43, 1.47
    "softplus": (1.65, 1.6),  # 1.62, 1.59
    "pow": (0.85, 0.55),  # 0.79, 0.50 (f32 is computed in f64 and rounded once)
    "sin": (0.8, 0.55),  # 0.75, 0.50 (likewise)
    "cos": (0.8, 0.55),  # 0.75, 0.50
}


def _sigmoid64(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0, e) / (1.0 + e)


# Independent references: float64 NumPy (for f32 results) and mpmath (for f64 results).
NUMPY_REF: dict[str, Callable[..., Any]] = {
    "exp": np.exp,
    "expm1": np.expm1,
    "log": np.log,
    "log1p": np.log1p,
    "tanh": np.tanh,
    "sigmoid": _sigmoid64,
    "softplus": lambda x: np.logaddexp(0.0, x),
    "pow": np.power,
    "sin": np.sin,
    "cos": np.cos,
}
MPMATH_REF: dict[str, Callable[..., Any]] = {
    "exp": mpmath.exp,
    "expm1": mpmath.expm1,
    "log": mpmath.log,
    "log1p": mpmath.log1p,
    "tanh": mpmath.tanh,
    "sigmoid": lambda x: 1 / (1 + mpmath.exp(-x)),
    "softplus": lambda x: mpmath.log1p(mpmath.exp(x)),
    "pow": mpmath.power,
    "sin": mpmath.sin,
    "cos": mpmath.cos,
}


# -- building and running kernels ----------------------------------------------------------------


def _add_kernel(module: ir.Module, name: str, fmt: str) -> None:
    """void k_<name>_<fmt>(ty* x[, ty* y], ty* out, i64 n): out[i] = name(x[i][, y[i]])."""
    ty = IR_TYPES[fmt]()
    arity = FUNCTIONS[name][0]
    fnty = ir.FunctionType(ir.VoidType(), [ty.as_pointer()] * (arity + 1) + [ir.IntType(64)])
    kernel = ir.Function(module, fnty, f"k_{name}_{fmt}")
    *ptrs, n = kernel.args
    for p in ptrs:
        p.add_attribute("noalias")
    entry, loop, done = (kernel.append_basic_block(s) for s in ("entry", "loop", "done"))
    b = ir.IRBuilder(entry)
    zero = ir.Constant(ir.IntType(64), 0)
    b.cbranch(b.icmp_signed(">", n, zero), loop, done)
    b.position_at_end(loop)
    i = b.phi(ir.IntType(64))
    i.add_incoming(zero, entry)
    args = [b.load(b.gep(p, [i], inbounds=True)) for p in ptrs[:-1]]
    b.store(b.call(math_function(module, name, ty), args), b.gep(ptrs[-1], [i], inbounds=True))
    nxt = b.add(i, ir.Constant(ir.IntType(64), 1))
    i.add_incoming(nxt, loop)
    b.cbranch(b.icmp_signed("<", nxt, n), loop, done)
    b.position_at_end(done)
    b.ret_void()


class Jit:
    """All kernels in one module, optimised at O3 for the host and compiled once."""

    def __init__(self) -> None:
        import llvmlite.binding as llvm

        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        module = ir.Module("mathlib_test")
        for name in FUNCTIONS:
            for fmt in IR_TYPES:
                _add_kernel(module, name, fmt)
        target = llvm.Target.from_default_triple()
        self.tm = target.create_target_machine(
            cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=3
        )
        mod = llvm.parse_assembly(str(module))
        mod.triple = self.tm.triple
        mod.data_layout = str(self.tm.target_data)
        mod.verify()
        pass_builder = llvm.create_pass_builder(self.tm, llvm.create_pipeline_tuning_options(speed_level=3))
        pass_builder.getModulePassManager().run(mod, pass_builder)
        self.optimised_ir = str(mod)
        self.engine = llvm.create_mcjit_compiler(mod, self.tm)
        self.engine.finalize_object()

    def run(self, name: str, fmt: str, *inputs: Any) -> np.ndarray:
        dtype = NP_TYPES[fmt]
        arrays = [
            np.ascontiguousarray(np.broadcast_to(np.asarray(a, dtype), np.shape(inputs[0]))) for a in inputs
        ]
        out = np.empty_like(arrays[0])
        cfunc = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * (len(arrays) + 1), ctypes.c_int64)(
            self.engine.get_function_address(f"k_{name}_{fmt}")
        )
        cfunc(*[a.ctypes.data for a in arrays], out.ctypes.data, out.size)
        return out


@pytest.fixture(scope="module")
def jit() -> Jit:
    return Jit()


# -- measuring errors ------------------------------------------------------------------------------


def _ulps_f64(name: str, got: np.ndarray, *inputs: np.ndarray) -> float:
    """Max error of got against mpmath, in ulps of the exact result; an overflow must give inf."""
    worst = 0.0
    with mpmath.workdps(40):
        for g, *args in zip(got.tolist(), *(a.tolist() for a in inputs), strict=True):
            exact = MPMATH_REF[name](*(mpmath.mpf(a) for a in args))
            if abs(exact) > np.finfo(np.float64).max:
                assert g == float(exact), (name, args, g)
                continue
            _, e = mpmath.frexp(exact)
            ulp = mpmath.ldexp(1, max(int(e) - 1, -1022) - 52)
            worst = max(worst, float(abs(mpmath.mpf(g) - exact) / ulp))
    return worst


def _ulps_f32(name: str, got: np.ndarray, *inputs: np.ndarray) -> float:
    """Max error of got against the float64 result, in float32 ulps; an overflow must give inf."""
    with np.errstate(all="ignore"):
        ref = NUMPY_REF[name](*(a.astype(np.float64) for a in inputs))
        rounded = ref.astype(np.float32).astype(np.float64)
    got64 = got.astype(np.float64)
    special = ~np.isfinite(rounded)  # NaN, and infinities exact or by overflow, must agree
    assert np.array_equal(got64[special], rounded[special], equal_nan=True), name
    ok = ~special
    _, e = np.frexp(ref[ok])
    ulp = np.where(ref[ok] == 0, 2.0**-149, np.ldexp(1.0, np.maximum(e - 1, -126) - 23))
    return float(np.max(np.abs(got64[ok] - ref[ok]) / ulp))


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, n: int, signed: bool = False) -> np.ndarray:
    """n values with log2|x| uniform in [lo, hi], random signs if asked."""
    x = np.exp2(rng.uniform(lo, hi, n))
    return x * rng.choice([-1.0, 1.0], n) if signed else x


def _samples(name: str, fmt: str, n: int) -> list[np.ndarray]:
    """Inputs spread over the exponents where the function is not trivially 0, 1 or inf."""
    rng = np.random.default_rng(zlib.crc32(f"{name}.{fmt}".encode()))
    big = 709.7 if fmt == "f64" else 88.7
    tiny = -1074 if fmt == "f64" else -149
    k = n // 4
    if name in ("exp", "sigmoid", "softplus", "expm1"):
        low = -745.1 if fmt == "f64" else -103.9
        x = np.concatenate(
            [rng.uniform(low, big, 2 * k), rng.uniform(-2, 2, k), _log_uniform(rng, -60, 0, k, True)]
        )
    elif name == "tanh":
        x = np.concatenate([_log_uniform(rng, -40, 4.5, 3 * k, True), rng.uniform(-1, 1, k)])
    elif name in ("log", "log1p"):
        x = np.concatenate(
            [_log_uniform(rng, tiny, 1023, 2 * k), rng.uniform(0.5, 1.5, k), rng.uniform(-1, 2, k)]
        )
        x = x[x > (0 if name == "log" else -1)]
    elif name == "pow":
        x = np.concatenate([_log_uniform(rng, -1000, 1000, 2 * k), rng.uniform(0.25, 4, 2 * k)])
        if fmt == "f32":
            x = x.astype(np.float32).astype(np.float64)
        y = rng.uniform(-1, 1, 4 * k) * big / np.maximum(np.abs(np.log(x)), 1e-300)
        y[::3] = rng.integers(-40, 41, len(y[::3]))
        x[::6] = -x[::6]  # negative bases with integer exponents
        return [x, y]
    else:  # sin, cos
        x = np.concatenate(
            [rng.uniform(-1.3e7, 1.3e7, k), rng.uniform(-10, 10, k), _log_uniform(rng, -30, 23, 2 * k)]
        )
    return [x]


# -- tests -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_f64_accuracy_against_mpmath(jit: Jit, name: str) -> None:
    inputs = _samples(name, "f64", 1600)
    got = jit.run(name, "f64", *inputs)
    assert _ulps_f64(name, got, *inputs) <= BOUNDS[name][0]


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_f32_accuracy_against_float64(jit: Jit, name: str) -> None:
    inputs = [a.astype(np.float32) for a in _samples(name, "f32", 200_000)]
    if name != "pow":  # plus random bit patterns: every exponent, subnormals, the limits
        bits = np.random.default_rng(7).integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
        random = bits.view(np.float32)
        keep = np.abs(random) < (1.3e7 if name in ("sin", "cos") else np.inf)  # the accurate range
        inputs = [np.concatenate([inputs[0], random[keep]])]
    assert _ulps_f32(name, jit.run(name, "f32", *inputs), *inputs) <= BOUNDS[name][1]


# Special values: NumPy's float64 answer is the reference; 0, +-1 and +-inf must match exactly
# (with the sign), NaN must be NaN, anything else may differ by the function's bound.
SPECIAL = {
    "f64": [
        0.0,
        -0.0,
        np.inf,
        -np.inf,
        np.nan,
        5e-324,
        -5e-324,
        2.2250738585072009e-308,
        2.2250738585072014e-308,
        1.7976931348623157e308,
        -1.7976931348623157e308,
        1.0,
        -1.0,
        0.5,
        -0.5,
        1e-300,
        -1e-300,
        1e-20,
        -1e-20,
        0.34657359027997264,
        0.5493061443340549,
        709.782712893384,
        709.7827128933841,
        -708.3964185322641,
        -745.1332191019411,
        -745.1332191019412,
        37.5,
        -37.5,
        19.1,
        1e5,
        -1e5,
        1e22,
        -1e22,
    ],
    "f32": [
        0.0,
        -0.0,
        np.inf,
        -np.inf,
        np.nan,
        1e-45,
        -1e-45,
        1.1754942e-38,
        1.1754944e-38,
        3.4028235e38,
        -3.4028235e38,
        1.0,
        -1.0,
        0.5,
        -0.5,
        1e-30,
        -1e-30,
        1e-10,
        -1e-10,
        88.72283,
        88.72284,
        -87.33654,
        -103.97207,
        -103.97208,
        17.0,
        -17.0,
        9.1,
        1e5,
        -1e5,
    ],
}


def _check_special(name: str, fmt: str, got: np.ndarray, ref: np.ndarray, inputs: list[np.ndarray]) -> None:
    for i in range(len(got)):
        g, r = float(got[i]), float(ref[i])
        where = (name, fmt, *(float(a[i]) for a in inputs), g, r)
        if np.isnan(r):
            assert np.isnan(g), where
        elif r in (0.0, 1.0, -1.0) or np.isinf(r):
            assert g == r and np.signbit(g) == np.signbit(r), where
        else:
            ulp = float(np.spacing(NP_TYPES[fmt](abs(r))))
            assert abs(g - r) <= (BOUNDS[name][fmt == "f32"] + 1) * ulp, where


@pytest.mark.parametrize("fmt", sorted(IR_TYPES))
@pytest.mark.parametrize("name", sorted(n for n in FUNCTIONS if n != "pow"))
def test_special_values(jit: Jit, name: str, fmt: str) -> None:
    x = np.array(SPECIAL[fmt], NP_TYPES[fmt])
    if name in ("sin", "cos"):
        x = x[~(np.abs(x) > 1.3e7)]  # beyond the accurate range: see test_sin_cos_huge_arguments
    with np.errstate(all="ignore"):
        ref = NUMPY_REF[name](x.astype(np.float64)).astype(NP_TYPES[fmt])
    _check_special(name, fmt, jit.run(name, fmt, x), ref, [x])


@pytest.mark.parametrize("fmt", sorted(IR_TYPES))
def test_pow_special_values_match_numpy(jit: Jit, fmt: str) -> None:
    tiny = 5e-324 if fmt == "f64" else 1e-45
    xs = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0, tiny, -tiny, 10.0]
    ys = [
        0.0,
        -0.0,
        np.inf,
        -np.inf,
        np.nan,
        1.0,
        -1.0,
        2.0,
        -2.0,
        3.0,
        -3.0,
        0.5,
        -0.5,
        1e30,
        -1e30,
        2.0**53,
        2.0**52 + 1,
        -(2.0**52 + 1),
        2.0**24 + 1,
        2.0**23 + 1,
        1023.0,
        -1075.0,
        1.5,
    ]
    x, y = (a.ravel().astype(NP_TYPES[fmt]) for a in np.meshgrid(xs, ys))
    with np.errstate(all="ignore"):
        ref = np.power(x, y)  # in the format itself: NumPy's pow rounds correctly or overflows the same
    _check_special("pow", fmt, jit.run("pow", fmt, x, y), ref, [x, y])


def test_sin_cos_huge_arguments(jit: Jit) -> None:
    """Beyond |x| = 1.3e7 the reduction is inaccurate, but results stay in [-1, 1]; inf gives NaN."""
    x = np.concatenate([np.geomspace(1.3e7, 1.7e308, 2000), -np.geomspace(1.3e7, 1.7e308, 2000)])
    for name in ("sin", "cos"):
        for fmt, dtype in NP_TYPES.items():
            with np.errstate(over="ignore"):
                got = jit.run(name, fmt, x.astype(dtype))
            finite = np.isfinite(x.astype(dtype))
            assert np.all(np.abs(got[finite]) <= 1.0), (name, fmt)
            assert np.all(np.isnan(got[~finite])), (name, fmt)


def test_sin_cos_near_multiples_of_pi_over_2(jit: Jit) -> None:
    """The hardest arguments of the accurate range: doubles nearest to k pi/2."""
    k = np.unique(np.concatenate([np.arange(1, 200), np.geomspace(200, 8e6, 300).astype(np.int64)]))
    with mpmath.workdps(40):
        x = np.array([float(kk * mpmath.pi / 2) for kk in k.tolist()])
    for name in ("sin", "cos"):
        assert _ulps_f64(name, jit.run(name, "f64", x), x) <= BOUNDS[name][0]


def test_math_function_is_defined_once_and_pure() -> None:
    module = ir.Module()
    for name in FUNCTIONS:
        for fmt, ty in IR_TYPES.items():
            fn = math_function(module, name, ty())
            assert fn is math_function(module, name, ty())
            assert fn.name == f"dlc.{name}.{fmt}" and fn.linkage == "internal"
            assert {"alwaysinline", "nounwind", "readnone"} <= set(fn.attributes)
    text = str(module)
    assert not re.search(r"\b(load|store|alloca|br|phi|switch)\b", text)
    called = set(re.findall(r"call \S+ @\"?([\w.]+)", text))
    assert called <= {f"llvm.{op}.{t}" for op in ("fabs", "copysign") for t in IR_TYPES}


def test_math_function_rejects_unknown_names_and_types() -> None:
    with pytest.raises(ValueError, match="no function 'erf'"):
        math_function(ir.Module(), "erf", ir.DoubleType())
    with pytest.raises(TypeError):
        math_function(ir.Module(), "exp", ir.HalfType())


@pytest.mark.parametrize("name", ["exp", "tanh", "log", "sigmoid", "softplus", "pow", "sin"])
def test_loops_vectorize_and_call_nothing(jit: Jit, name: str) -> None:
    for fmt, scalar in (("f64", "double"), ("f32", "float")):
        body = re.search(rf"define void @k_{name}_{fmt}\(.*?\n}}", jit.optimised_ir, re.S)
        assert body is not None
        assert re.search(rf"<\d+ x {scalar}>", body.group(0)), (name, fmt)
        called = re.findall(r"call \S+ @\"?([\w.]+)", body.group(0))
        assert all(c.startswith("llvm.") for c in called), called  # intrinsics only: no libm


@pytest.mark.slow
def test_constants_are_reproducible() -> None:
    """mathconst's numbers are what its derivation (mpmath, Remez) gives."""
    for name, value in mathconst.derive_tables().items():
        assert getattr(mathconst, name) == value, name
