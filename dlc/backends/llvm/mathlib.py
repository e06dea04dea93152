"""The LLVM backend's scalar math library: exp, log, tanh ... as vectorizable LLVM IR.

`math_function(module, name, ty)` defines ``dlc.<name>.f64`` or ``dlc.<name>.f32``
in a module, once. Each is an internal, alwaysinline, nounwind, readnone
function of scalars made of arithmetic, compares, selects and bit operations
only: no branches, no memory, no libm. Once inlined into a loop over arrays,
LLVM's loop vectorizer turns it into SIMD code for the host CPU.

Max error in ulps, measured against mpmath (f64, 10^5 arguments per function)
and the float64 result (f32, 2^29 bit patterns), with FMA or without:

    function  f64   f32
    exp       0.72  0.76  overflow to inf, underflow through the subnormals to 0
    expm1     0.91  0.97
    log       0.84  0.81  subnormal inputs; log(0) = -inf, log(x < 0) = nan
    log1p     0.77  0.84
    tanh      1.24  1.24  saturates to +-1
    sigmoid   1.03  1.09  subnormal results for very negative x
    softplus  1.09  1.18  = numpy.logaddexp(0, x)
    pow       0.79  0.50  all of |y log|x|| <= 745; NumPy's special cases
    sin, cos  0.75  0.50  for |x| < 1.3e7; beyond, inaccurate but in [-1, 1]

f32 sin, cos and pow are computed in f64 and rounded once. Special values
follow NumPy (C99): NaN in, NaN out; pow's table of zeros, infinities and
negative bases; tanh and sigmoid saturate; sin and cos of inf are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from llvmlite import ir

from dlc.backends.llvm import mathconst as const
from dlc.backends.llvm import mathdd
from dlc.backends.llvm.mathdd import _exp_reduced, _one_plus, _scaled_plus, exp_range
from dlc.backends.llvm.mathir import F32, F64, MathBuilder, format_of

INF, NAN = math.inf, math.nan
#: tanh(x) rounds to +-1 from here on (1 - tanh(x) ~ 2 exp(-2x) below half an ulp of 1).
TANH_LIMIT = {"f64": 20.0, "f32": 10.0}


def math_function(module: ir.Module, name: str, ty: ir.Type) -> ir.Function:
    """The function ``dlc.<name>.<f64|f32>`` of ``module``, defined there on first request.

    Args:
        module: the module that will hold the definition.
        name: one of `FUNCTIONS` (exp, expm1, log, log1p, tanh, sigmoid, softplus,
            pow, sin, cos); pow takes two arguments, the others one.
        ty: ``ir.DoubleType()`` or ``ir.FloatType()``, the type of the arguments and result.

    Returns:
        The function; later calls with the same name and type return the same object.

    Raises:
        ValueError: for an unknown name; TypeError: for another type.
    """
    if name not in FUNCTIONS:
        raise ValueError(f"the math library has no function {name!r} (it has {', '.join(sorted(FUNCTIONS))})")
    fmt = format_of(ty)
    full = f"dlc.{name}.{fmt.name}"
    existing: ir.Function | None = module.globals.get(full)
    if existing is not None:
        return existing
    arity, body, widen = FUNCTIONS[name]
    fn = ir.Function(module, ir.FunctionType(ty, [ty] * arity), full)
    fn.linkage = "internal"
    for attr in ("alwaysinline", "nounwind", "readnone"):
        fn.attributes.add(attr)
    for arg, arg_name in zip(fn.args, "xy", strict=False):
        arg.name = arg_name
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    if widen and fmt is F32:
        # Computed in f64 and rounded once: the f64 result's error is far below
        # half an f32 ulp, so the f32 result is correctly rounded but for rare ties.
        wide = MathBuilder(builder, F64)
        value = body(wide, *(builder.fpext(a, wide.ty) for a in fn.args))
        builder.ret(builder.fptrunc(value, ty))
    else:
        builder.ret(body(MathBuilder(builder, fmt), *fn.args))
    return fn


# -- exp family --------------------------------------------------------------------------------


def _exp(m: MathBuilder, x: ir.Value) -> ir.Value:
    n, r, lo = _exp_reduced(m, m.clamp(x, *exp_range(m.fmt)))
    return m.select(m.isnan(x), x, m.ldexp(_one_plus(m, r, lo), n))


def _tanh(m: MathBuilder, x: ir.Value) -> ir.Value:
    # Below atanh(1/2), tanh|x| = a + a z T(z) with z = a^2. Above, 1 - 2 / (e^2a + 1)
    # with e^2a + 1 rounded once; 2 / (e^2a + 1) <= 1/2 there, so 1 - it cancels nothing.
    f = m.fmt.name
    a = m.fabs(x)
    z = m.mul(a, a)
    small = m.mul_add(m.mul(a, z), m.horner(z, const.TANH_POLY[f]), a)
    limit = TANH_LIMIT[f]
    n, r, lo = _exp_reduced(m, m.mul(m.select(m.cmp("<", a, limit), a, limit), 2.0))
    den, _ = _scaled_plus(m, n, r, lo, 1.0)  # 0 <= n <= 2 * limit / ln2 + 1
    y = m.select(m.cmp("<", a, 0.5493061443340549), small, m.sub(1.0, m.div(2.0, den)))
    return m.select(m.isnan(x), x, m.copysign(y, x))


def _exp_neg_abs(m: MathBuilder, x: ir.Value) -> tuple[ir.Value, ...]:
    """(n, p, p_lo, e, u, err): exp(-|x|) = 2^n (p + p_lo) ~ e, and 1 + e = u + err, rounded once.

    For n < -mant, 2^n + 1 is not exact, but then 1 + e = 1 + e exactly as (u, err) = (1, e).
    """
    b = m.b
    n, r, lo = _exp_reduced(m, m.clamp(m.neg(m.fabs(x)), exp_range(m.fmt)[0], 0.0))
    s, err = m.fast_two_sum(m.v(1.0), r)
    tail = m.add(err, lo)
    p = m.add(s, tail)
    e = m.ldexp(p, n)
    lowest = m.i(-m.fmt.mant)
    tiny = b.icmp_signed("<", n, lowest)
    u, u_err = _scaled_plus(m, b.select(tiny, lowest, n), r, lo, 1.0)
    return n, p, m.add(m.sub(s, p), tail), e, m.select(tiny, 1.0, u), m.select(tiny, e, u_err)


def _sigmoid(m: MathBuilder, x: ir.Value) -> ir.Value:
    # With e = exp(-|x|) = 2^n (p + p_lo): 1 / (1 + e) for x >= 0, 2^n p / (1 + e)
    # otherwise. One division q = num / u, then the low parts: (num + num_lo) /
    # (u + err) = q + (num_lo - q err) / u, where 1/u is q for x >= 0 and 1 - e/u =
    # 1 - 2^n q otherwise; the correction is tiny, so 2^n may stop at 2^-mant.
    b = m.b
    n, p, p_lo, _, u, err = _exp_neg_abs(m, x)
    positive = m.cmp(">=", x, 0.0)
    q = m.div(m.select(positive, 1.0, p), u)
    lowest = m.i(-m.fmt.mant)
    scale = m.pow2(b.select(b.icmp_signed("<", n, lowest), lowest, n))
    inverse = m.select(positive, q, m.sub(1.0, m.mul(scale, q)))
    q = m.mul_add(m.sub(m.select(positive, 0.0, p_lo), m.mul(q, err)), inverse, q)
    y = m.ldexp(q, b.select(positive, m.i(0), n))
    return m.select(m.isnan(x), x, y)


def _softplus(m: MathBuilder, x: ir.Value) -> ir.Value:
    # log(1 + e^x) = max(x, 0) + log1p(e), e = exp(-|x|): never overflows. log1p(e)
    # is log(u) + err/u with 1 + e = u + err from the exponential's pieces; when
    # e < 2^-mant, log1p(e) = e - e^2/2 is simpler and as exact.
    n, _, _, e, u, err = _exp_neg_abs(m, x)
    log1p_e = _log_kernel(m, u, None, m.div(err, u))
    tiny = m.b.icmp_signed("<", n, m.i(-m.fmt.mant))
    log1p_e = m.select(tiny, m.mul_add(m.mul(e, -0.5), e, e), log1p_e)
    y = m.add(m.select(m.cmp(">", x, 0.0), x, 0.0), log1p_e)
    return m.select(m.isnan(x), x, y)


# -- log family --------------------------------------------------------------------------------


def _log_kernel(m: MathBuilder, u: ir.Value, k_shift: ir.Value | None, extra: ir.Value | None) -> ir.Value:
    """log(u * 2^-k_shift) + extra for a positive normal u, extra a tiny correction.

    u = 2^k (1 + g) with sqrt(1/2) <= 1 + g < sqrt(2), g exact.
    """
    k, mant = m.frexp_sqrt2(u, 0.0 if k_shift is None else k_shift)
    return _log_reduced(m, k, m.sub(mant, 1.0), extra, const.LOG_POLY[m.fmt.name])


def _log_reduced(
    m: MathBuilder, k: ir.Value, g: ir.Value, extra: ir.Value | None, poly: tuple[float, ...]
) -> ir.Value:
    """k ln2 + log(1 + g) + extra, for an integer k and |s| small (see `poly`'s fit), extra tiny.

    With s = g / (2 + g), log(1 + g) = 2 atanh(s) = 2s + s R(s^2), and 2s = g -
    hfsq + s hfsq with hfsq = g^2 / 2, so log(1 + g) = g - (hfsq - s (hfsq + R)):
    the leading g is exact and everything after it is small (fdlibm's arrangement).
    k ln2_hi is exact, so it may fuse with the last sum.
    """
    f = m.fmt.name
    s = m.div(g, m.add(g, 2.0))
    z = m.mul(s, s)
    hfsq = m.mul(m.mul(g, g), 0.5)
    low = m.mul(k, const.LN2_LO[f]) if extra is None else m.mul_add(k, const.LN2_LO[f], extra)
    tail = m.mul_add(s, m.mul_add(z, m.horner(z, poly), hfsq), low)
    return m.mul_add(k, const.LN2_HI[f], m.sub(g, m.sub(hfsq, tail)))


def _log(m: MathBuilder, x: ir.Value) -> ir.Value:
    fmt = m.fmt
    # Subnormals are scaled into the normal range first.
    sub = m.cmp("<", x, fmt.min_normal)
    u = m.select(sub, m.mul(x, 2.0 ** (fmt.mant + 2)), x)
    y = _log_kernel(m, u, m.select(sub, fmt.mant + 2.0, 0.0), None)
    y = m.select(m.cmp("==", x, INF), x, y)
    y = m.select(m.cmp("==", x, 0.0), -INF, y)
    return m.select(m.cmp_or_nan("<", x, 0.0), NAN, y)


def _log1p(m: MathBuilder, x: ir.Value) -> ir.Value:
    u = m.add(x, 1.0)
    # c = (1 + x) - u exactly (both subtractions are exact on their side of 2);
    # log(1 + x) = log(u) + log(1 + c/u) = log(u) + c/u to well below an ulp.
    c = m.select(m.cmp(">=", u, 2.0), m.sub(1.0, m.sub(u, x)), m.sub(x, m.sub(u, 1.0)))
    y = _log_kernel(m, u, None, m.div(c, u))
    y = m.select(m.cmp("==", x, INF), x, y)
    y = m.select(m.cmp("==", x, -1.0), -INF, y)
    y = m.select(m.cmp_or_nan("<", x, -1.0), NAN, y)
    return m.select(m.cmp("<", m.fabs(x), 2.0 ** -(m.fmt.mant + 2)), x, y)


#: name -> (number of arguments, body builder, whether f32 is computed in f64)
FUNCTIONS: dict[str, tuple[int, Callable[..., ir.Value], bool]] = {
    "exp": (1, _exp, False),
    "expm1": (1, mathdd.expm1, False),
    "log": (1, _log, False),
    "log1p": (1, _log1p, False),
    "tanh": (1, _tanh, False),
    "sigmoid": (1, _sigmoid, False),
    "softplus": (1, _softplus, False),
    "pow": (2, mathdd.power, True),
    "sin": (1, mathdd.sin, True),
    "cos": (1, mathdd.cos, True),
}
