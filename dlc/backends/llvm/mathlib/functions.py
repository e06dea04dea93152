"""The LLVM backend's scalar math library: exp, log, tanh ... as vectorizable LLVM IR.

`math_function(module, name, ty)` defines ``dlc.<name>.f64`` or ``dlc.<name>.f32``
in a module, once. Each is an internal, alwaysinline, nounwind, readnone
function of scalars made of arithmetic, compares, selects and bit operations
only: no branches, no memory, no libm. Once inlined into a loop over arrays,
LLVM's loop vectorizer turns it into SIMD code for the host CPU.

exp, tanh, sigmoid and softplus share one short exponential (`_reduce`): the
vectorized loop is what they cost, so they keep no more precision than their
results need, and take out a rounding where one costs an instruction or two
(`_refine`). expm1, pow, sin and cos, which need more, are in `precise`.

Max error in ulps, measured against long double (f64, 4 10^6 arguments per
function), mpmath (f64 expm1 ... cos, 10^5) and the float64 result (f32, 2^29
bit patterns), with FMA; without it (no AVX-512 nor FMA3), in brackets where
it is larger by more than 0.05:

    function  f64          f32
    exp       0.97         0.98         overflow to inf, underflow through the subnormals to 0
    expm1     0.91         0.97
    log       0.84         0.81         subnormal inputs; log(0) = -inf, log(x < 0) = nan
    log1p     0.77         0.84
    tanh      1.88 [2.15]  1.31         saturates to +-1
    sigmoid   1.43 [1.79]  1.47 [1.89]  subnormal results for very negative x
    softplus  1.62         1.59 [1.65]  = numpy.logaddexp(0, x)
    pow       0.79         0.50         all of |y log|x|| <= 745; NumPy's special cases
    sin, cos  0.75         0.50         for |x| < 1.3e7; beyond, inaccurate but in [-1, 1]

f32 sin, cos and pow are computed in f64 and rounded once. Special values
follow NumPy (C99): NaN in, NaN out; pow's table of zeros, infinities and
negative bases; tanh and sigmoid saturate; sin and cos of inf are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from llvmlite import ir

from dlc.backends.llvm.mathlib import constants as const
from dlc.backends.llvm.mathlib import precise
from dlc.backends.llvm.mathlib.builder import F32, F64, MathBuilder, format_of
from dlc.backends.llvm.mathlib.precise import exp_range

INF, NAN = math.inf, math.nan
#: tanh(x) rounds to +-1 from here on (1 - tanh(x) ~ 2 exp(-2x) below half an ulp of 1).
TANH_LIMIT = {"f64": 20.0, "f32": 10.0}
ATANH_HALF = 0.5493061443340549


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


# -- exp family -----------------------------------------------------------------------------------
#
# e^y = 2^n e^r = 2^n (1 + p), with n = rint(y / ln2), r = y - n ln2 (|r| <= ln2/2) and
# p = r + r^2 E(r). The scale 2^n goes into p's arithmetic as s + s p, one fused
# multiply-add, so a NaN in y stays NaN without a select.


def _reduce(m: MathBuilder, y: ir.Value) -> tuple[ir.Value, ir.Value]:
    """(t, p): e^y = 2^n (1 + p), with n held by the shifter sum t (see `MathBuilder.pow2_shifted`).

    Cody–Waite: n ln2_hi is exact (ln2_hi has few bits), and so is y - n ln2_hi
    (Sterbenz), fused or not; r = that - n ln2_lo is rounded once. Its error,
    at most 2^-(mant+3), is a relative error of e^y: with p's rounding and the
    last one, exp's 0.97 ulp (keeping it would cost three instructions).
    E goes by pairs of terms (`MathBuilder.horner_pairs`): 5-10% faster loops.
    """
    f = m.fmt.name
    n, t = m.round_shifted(y, const.LOG2E[f])
    r = m.mul_add(n, -const.LN2_LO[f], m.mul_add(n, -const.LN2_HI[f], y))
    r2 = m.mul(r, r)
    return t, m.mul_add(r2, m.horner_pairs(r, r2, const.EXP_POLY[f]), r)


def _exp(m: MathBuilder, x: ir.Value) -> ir.Value:
    # 2^n itself leaves the normal range at both ends of exp's, so the scale is
    # 2^(n + k) for x < 0 and 2^(n - k) otherwise, then times the constant 2^-+k:
    # the first product stays normal, the second rounds once, to inf or through
    # the subnormals to 0.
    k = m.fmt.mant + 8
    t, p = _reduce(m, m.limit(x, *exp_range(m.fmt)))
    negative = m.cmp("<", x, 0.0)
    s = m.pow2_shifted(t, m.b.select(negative, m.i(m.exponent_bits(k)), m.i(m.exponent_bits(-k))))
    return m.mul(m.mul_add(s, p, s), m.select(negative, 2.0**-k, 2.0**k))


def _exp_minus_abs(m: MathBuilder, x: ir.Value) -> ir.Value:
    """e^-|x| (NaN for NaN): as `_exp`, with the scale 2^(n + k) of its negative side only."""
    k = m.fmt.mant + 8
    t, p = _reduce(m, m.limit(m.neg(m.fabs(x)), exp_range(m.fmt)[0], None))
    s = m.pow2_shifted(t, k)
    return m.mul(m.mul_add(s, p, s), 2.0**-k)


def _refine(
    m: MathBuilder, q: ir.Value, num: ir.Value, d: ir.Value, err: ir.Value, inverse: ir.Value
) -> ir.Value:
    """num / (d - err) from q = num / d rounded, ``inverse`` ~ 1 / d to a few percent.

    rho = num - q (d - err) = fma(-q, d, num) + q err, whose first term is
    exact (a division's remainder), and num / (d - err) = q + rho / (d - err):
    a correction of an ulp or so, so that 1 / d needs few digits, and the
    quotient is rounded once, by the last fused multiply-add. Without FMA the
    remainder is itself rounded, and the correction only halves the error.
    """
    rho = m.mul_add(q, err, m.mul_add(m.neg(q), d, num))
    return m.mul_add(rho, inverse, q)


def _tanh(m: MathBuilder, x: ir.Value) -> ir.Value:
    # Two ways, each the cheaper in its format: tanh's own odd polynomial near 0 costs
    # four multiply-adds in f32 but ten in f64, where one quotient serves every x.
    return (_tanh_quotient if m.fmt is F64 else _tanh_split)(m, x)


def _tanh_quotient(m: MathBuilder, x: ir.Value) -> ir.Value:
    # tanh a = num / (num + 2), num = e^2a - 1, a = |x|. With e^2a = 2^n (1 + p), num is
    # one fused multiply-add, 2^n p + (2^n - 1), rounded once; its relative error reaches
    # the quotient 2 / (num + 2) <= 1 times. The rounding error of num + 2 (exact, by
    # Fast2Sum on the larger and the smaller) and the division's are taken out by
    # `_refine`. What remains is num's: 1.88 ulp where 1 + 2p cancels (n = 1, p < 0).
    t, p = _reduce(m, m.mul(m.limit(m.fabs(x), None, TANH_LIMIT[m.fmt.name]), 2.0))
    s = m.pow2_shifted(t)  # 0 <= n <= 2 limit / ln2 + 1
    num = m.mul_add(s, p, m.sub(s, 1.0))
    d = m.add(num, 2.0)
    err = m.sub(m.sub(d, m.limit(num, 2.0, None)), m.limit(num, None, 2.0))
    q = _refine(m, m.div(num, d), num, d, err, m.reciprocal_estimate(d))
    return m.copysign(q, x)


def _tanh_split(m: MathBuilder, x: ir.Value) -> ir.Value:
    # Below atanh(1/2), tanh a = a + a z T(z), z = a^2. Above, 1 - 2 / (e^2a + 1), which
    # cancels nothing: e^2a + 1 = 2^n p + (2^n + 1) rounded once, and its relative errors
    # count little in 2 / (e^2a + 1) <= 1/2. Both are computed, one is kept.
    f = m.fmt.name
    a = m.fabs(x)
    z = m.mul(a, a)
    small = m.mul_add(m.mul(a, z), m.horner(z, const.TANH_POLY[f]), a)
    t, p = _reduce(m, m.mul(m.limit(a, None, TANH_LIMIT[f]), 2.0))
    s = m.pow2_shifted(t)
    big = m.sub(1.0, m.div(2.0, m.mul_add(s, p, m.add(s, 1.0))))
    return m.copysign(m.select(m.cmp("<", a, ATANH_HALF), small, big), x)


def _sigmoid(m: MathBuilder, x: ir.Value) -> ir.Value:
    # w = sigmoid(-|x|) = e / (1 + e), e = e^-|x|; sigmoid(|x|) = 1 - w, w <= 1/2.
    # 1 + e's rounding is exact by Sterbenz and taken out with the division's
    # (`_refine`, with 1 / (1 + e) = 1 - w).
    e = _exp_minus_abs(m, x)
    d = m.add(e, 1.0)
    w = m.div(e, d)
    w = _refine(m, w, e, d, m.sub(m.sub(d, 1.0), e), m.sub(1.0, w))
    return m.select(m.cmp(">=", x, 0.0), m.sub(1.0, w), w)


def _softplus(m: MathBuilder, x: ir.Value) -> ir.Value:
    # log(1 + e^x) = max(x, 0) + log(1 + e), e = e^-|x| in (0, 1]: never overflows.
    # 1 + e is not rounded: log(1 + e) = k ln2 + log(1 + g) with g = e (k = 0) below
    # 1/2, and (e - 1) / 2 (k = 1) from there, exact by Sterbenz.
    e = _exp_minus_abs(m, x)
    big = m.cmp(">=", e, 0.5)
    g = m.select(big, m.mul_add(e, 0.5, -0.5), e)
    log1p_e = _log_reduced(m, m.select(big, 1.0, 0.0), g, None, const.LOG1P_POLY[m.fmt.name])
    return m.add(m.select(m.cmp(">", x, 0.0), x, 0.0), log1p_e)


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
    "expm1": (1, precise.expm1, False),
    "log": (1, _log, False),
    "log1p": (1, _log1p, False),
    "tanh": (1, _tanh, False),
    "sigmoid": (1, _sigmoid, False),
    "softplus": (1, _softplus, False),
    "pow": (2, precise.power, True),
    "sin": (1, precise.sin, True),
    "cos": (1, precise.cos, True),
}
