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
    log       0.81  0.84  subnormal inputs; log(0) = -inf, log(x < 0) = nan
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
from dlc.backends.llvm.mathir import F32, F64, FloatFormat, MathBuilder, format_of

INF, NAN = math.inf, math.nan
LN2 = math.log(2.0)
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


def _exp_range(fmt: FloatFormat) -> tuple[float, float]:
    """Arguments beyond which exp is 0 (below half the smallest subnormal) or inf; kept for ldexp."""
    return (1 - fmt.bias - fmt.mant - 2) * LN2, (fmt.bias + 1.5) * LN2


def _exp_reduced(
    m: MathBuilder, x: ir.Value, tail: ir.Value | None = None
) -> tuple[ir.Value, ir.Value, ir.Value]:
    """(n, r, lo) with e^(x + tail) = 2^n (1 + r + lo), n an integer, |r| <= ln2/2, |lo| < r^2.

    Cody–Waite: n = rint(x / ln2) and a = x - n ln2_hi are exact (n ln2_hi is
    exact, then Sterbenz); r = a - n ln2_lo is rounded, and what that rounding
    drops (d) is kept, with the tiny ``tail``, in lo, so that 1 + r + lo has
    one rounding.
    """
    f = m.fmt.name
    n, n_int = m.round_int(x, const.LOG2E[f])
    a = m.sub(x, m.mul(n, const.LN2_HI[f]))
    c = m.mul(n, const.LN2_LO[f])
    r = m.sub(a, c)
    d = m.sub(m.sub(a, r), c)
    if tail is not None:
        d = m.add(d, tail)
    # e^(r + d) = 1 + r + r^2 E(r) + d e^r, to first order in the tiny d.
    poly = m.mul(m.mul(r, r), m.horner(r, const.EXP_POLY[f]))
    return n_int, r, m.add(poly, m.mul_add(d, m.add(r, poly), d))


def _one_plus(m: MathBuilder, r: ir.Value, lo: ir.Value) -> ir.Value:
    """1 + r + lo, rounded once (up to the rounding of the small lo + error term)."""
    s, err = m.fast_two_sum(m.v(1.0), r)
    return m.add(s, m.add(err, lo))


def _scaled_plus(
    m: MathBuilder, n: ir.Value, r: ir.Value, lo: ir.Value, c: float
) -> tuple[ir.Value, ir.Value]:
    """(u, err): u = 2^n (1 + r + lo) + c rounded once, err = the exact sum minus u; c = +-1.

    The sum is (2^n + c) + 2^n r + 2^n lo. For |n| <= mant the first two terms
    are exact and the first is the larger (or 0), so one fast two-sum adds them
    exactly, and only the last addition rounds.
    """
    scale = m.pow2(n)
    s, err = m.fast_two_sum(m.add(scale, c), m.mul(scale, r))
    tail = m.mul_add(scale, lo, err)
    u = m.add(s, tail)
    return u, m.add(m.sub(s, u), tail)


def _exp(m: MathBuilder, x: ir.Value) -> ir.Value:
    n, r, lo = _exp_reduced(m, m.clamp(x, *_exp_range(m.fmt)))
    return m.select(m.isnan(x), x, m.ldexp(_one_plus(m, r, lo), n))


def _expm1(m: MathBuilder, x: ir.Value) -> ir.Value:
    # For n > mant + 1, e^x - 1 = 2^n (1 + r + lo - 2^-n), and 2^-n is a small
    # correction (capped where it no longer matters, to stay a normal number).
    # Below -(mant + 3) ln2 the result rounds to -1, which the clamp gives.
    fmt, b = m.fmt, m.b
    n, r, lo = _exp_reduced(m, m.clamp(x, -(fmt.mant + 3) * LN2, _exp_range(fmt)[1]))
    big = b.icmp_signed(">", n, m.i(fmt.mant + 1))
    small, _ = _scaled_plus(m, b.select(big, m.i(0), n), r, lo, -1.0)
    cap = m.i(2 * fmt.mant + 4)
    inverse = m.pow2(b.neg(b.select(b.icmp_signed("<", n, cap), n, cap)))
    y = m.select(big, m.ldexp(_one_plus(m, r, m.sub(lo, inverse)), n), small)
    # Tiny |x| (and -0, whose sign the sum loses) is its own expm1; so is NaN.
    return m.select(m.cmp_or_nan("<", m.fabs(x), 2.0 ** -(fmt.mant + 2)), x, y)


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
    n, r, lo = _exp_reduced(m, m.clamp(m.neg(m.fabs(x)), _exp_range(m.fmt)[0], 0.0))
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


def _log_kernel(m: MathBuilder, u: ir.Value, k_adjust: ir.Value | None, extra: ir.Value | None) -> ir.Value:
    """log(u * 2^k_adjust) + extra for a positive normal u, extra a tiny correction.

    u = 2^k (1 + f), sqrt(1/2) <= 1 + f < sqrt(2); with s = f / (2 + f),
    log(1 + f) = 2 atanh(s) = 2s + s R(s^2), and 2s = f - hfsq + s hfsq with
    hfsq = f^2 / 2, so log(1 + f) = f - (hfsq - s (hfsq + R)): the leading f is
    exact and everything after it is small (fdlibm's arrangement).
    """
    f = m.fmt.name
    k, mant = m.frexp_sqrt2(u)
    if k_adjust is not None:
        k = m.add(k, k_adjust)
    g = m.sub(mant, 1.0)  # exact
    s = m.div(g, m.add(g, 2.0))
    z = m.mul(s, s)
    hfsq = m.mul(m.mul(g, g), 0.5)
    low = m.mul(k, const.LN2_LO[f]) if extra is None else m.mul_add(k, const.LN2_LO[f], extra)
    tail = m.mul_add(s, m.add(hfsq, m.mul(z, m.horner(z, const.LOG_POLY[f]))), low)
    return m.add(m.mul(k, const.LN2_HI[f]), m.sub(g, m.sub(hfsq, tail)))


def _log(m: MathBuilder, x: ir.Value) -> ir.Value:
    fmt = m.fmt
    # Subnormals are scaled into the normal range first.
    sub = m.cmp("<", x, fmt.min_normal)
    u = m.select(sub, m.mul(x, 2.0 ** (fmt.mant + 2)), x)
    y = _log_kernel(m, u, m.select(sub, -(fmt.mant + 2.0), 0.0), None)
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


# -- sin, cos ----------------------------------------------------------------------------------


def _sin_cos(m: MathBuilder, x: ir.Value, quadrant_shift: int) -> ir.Value:
    """sin(x) (shift 0) or cos(x) = sin(x + pi/2) (shift 1), in f64.

    x = n pi/2 + r, |r| <= pi/4, with pi/2 in four parts of which the first three
    times n are exact for |n| < 2^23, and r carried as r + r_lo: r is then
    accurate for |x| < 1.3e7, even next to a multiple of pi/2. Beyond, r is
    clamped so that the result stays in [-1, 1].
    """
    n, q = m.round_int(x, const.TWO_OVER_PI)
    p1, p2, p3, p4 = const.PIO2_PARTS
    a = m.sub(x, m.mul(n, p1))  # exact
    r, err2 = m.fast_two_sum(a, m.mul(n, -p2))  # n p2 and n p3 are exact, each sum's error kept
    r, err3 = m.fast_two_sum(r, m.mul(n, -p3))
    r, r_lo = m.fast_two_sum(r, m.sub(m.add(err2, err3), m.mul(n, p4)))
    inside = m.cmp_or_nan("<=", m.fabs(r), 0.79)  # always, in the accurate range; NaN stays NaN
    r, r_lo = m.select(inside, r, m.copysign(m.v(0.79), r)), m.select(inside, r_lo, 0.0)
    z = m.mul(r, r)
    half = m.mul(z, 0.5)
    w = m.sub(1.0, half)
    # sin(r + r_lo) = r + r z S(z) + r_lo cos(r); cos(r + r_lo) = cos(r) - r_lo sin(r), with
    # cos(r) = 1 - z/2 + z^2 C(z): w = 1 - z/2 rounded, and what the rounding dropped put back.
    sin_r = m.add(r, m.mul_add(m.mul(r, z), m.horner(z, const.SIN_POLY), m.mul(r_lo, w)))
    cos_tail = m.sub(m.sub(m.sub(1.0, w), half), m.mul(r, r_lo))
    cos_r = m.add(w, m.mul_add(m.mul(z, z), m.horner(z, const.COS_POLY), cos_tail))
    # Quadrant q: sin(x) = sin r, cos r, -sin r, -cos r for q mod 4 = 0, 1, 2, 3.
    b = m.b
    q = b.add(q, m.i(quadrant_shift))
    odd = b.icmp_unsigned("!=", b.and_(q, m.i(1)), m.i(0))
    sign = b.shl(b.and_(q, m.i(2)), m.i(m.fmt.width - 2))
    return m.from_bits(b.xor(m.bits(m.select(odd, cos_r, sin_r)), sign))


def _sin(m: MathBuilder, x: ir.Value) -> ir.Value:
    return m.select(m.cmp("==", x, 0.0), x, _sin_cos(m, x, 0))  # sin(-0) = -0


def _cos(m: MathBuilder, x: ir.Value) -> ir.Value:
    return _sin_cos(m, x, 1)


# -- pow: exp(y log|x|) with log|x| and the product in double-double ---------------------------
#
# An error d in y log|x| is a relative error d in the result, and y log|x|
# reaches 745: plain f64 would lose up to ten bits there. So log|x| is carried
# as hi + lo to about 2^-63, y times it by an exact product (Dekker), and the
# low part is added into exp's reduced argument.


def _ratio_dd(m: MathBuilder, g: ir.Value) -> tuple[ir.Value, ir.Value]:
    """s = g / (2 + g) as hi + lo."""
    v = m.add(g, 2.0)
    v_lo = m.sub(g, m.sub(v, 2.0))  # 2 + g == v + v_lo exactly
    s = m.div(g, v)
    p, p_lo = m.two_prod(s, v)
    residual = m.sub(m.sub(m.sub(g, p), p_lo), m.mul(s, v_lo))  # g - s (v + v_lo); g - p is exact
    return s, m.div(residual, v)


def _log1p_dd(m: MathBuilder, g: ir.Value) -> tuple[ir.Value, ir.Value]:
    """log(1 + g) = 2s + s^3 (2/3 + z L5(z)) as hi + lo, z = s^2, for sqrt(1/2) <= 1 + g < sqrt(2).

    s, s^3, the bracket and its product with s^3 are all carried in double-double;
    only w = z L5(z), under 2% of the bracket, is plain f64. Error about 2^-64.
    """
    s, s_lo = _ratio_dd(m, g)
    z, z_lo = m.two_prod(s, s)
    z_lo = m.mul_add(m.mul(s, 2.0), s_lo, z_lo)
    c, c_lo = m.two_prod(z, s)
    c_lo = m.add(c_lo, m.mul_add(z_lo, s, m.mul(z, s_lo)))
    bracket, bracket_lo = m.fast_two_sum(m.v(const.TWO_THIRDS_HI), m.mul(z, m.horner(z, const.POW_LOG_POLY)))
    t, t_lo = m.two_prod(c, bracket)
    t_lo = m.add(t_lo, m.mul_add(c_lo, bracket, m.mul(c, m.add(bracket_lo, const.TWO_THIRDS_LO))))
    hi, lo = m.fast_two_sum(m.mul(s, 2.0), t)
    return hi, m.add(lo, m.mul_add(s_lo, 2.0, t_lo))


def _log_dd(m: MathBuilder, ax: ir.Value) -> tuple[ir.Value, ir.Value]:
    """log(ax) as hi + lo for a positive finite ax (f64)."""
    sub = m.cmp("<", ax, F64.min_normal)
    k, mant = m.frexp_sqrt2(m.select(sub, m.mul(ax, 2.0**54), ax))
    k = m.add(k, m.select(sub, -54.0, 0.0))
    hi, lo = _log1p_dd(m, m.sub(mant, 1.0))
    hi, e = m.two_sum(m.mul(k, const.LN2_HI["f64"]), hi)  # k ln2_hi is exact
    return m.fast_two_sum(hi, m.add(e, m.mul_add(k, const.LN2_LO["f64"], lo)))


def _exp_dd(m: MathBuilder, hi: ir.Value, lo: ir.Value) -> ir.Value:
    """exp(hi + lo); hi may be anything (inf, NaN), lo counts only where hi is in range."""
    lo_limit, hi_limit = _exp_range(F64)
    inside = m.b.and_(m.cmp(">", hi, lo_limit), m.cmp("<", hi, hi_limit))
    n, r, rest = _exp_reduced(m, m.clamp(hi, lo_limit, hi_limit), m.select(inside, lo, 0.0))
    return m.ldexp(_one_plus(m, r, rest), n)


def _pow_limits(m: MathBuilder, ax: ir.Value, y: ir.Value, mag: ir.Value) -> ir.Value:
    """|x|^y where |x| is 0 or inf, or |y| is so large that the result is 0, 1 or inf."""
    b, below = m.b, m.cmp("<", y, 0.0)
    is_inf = m.cmp("==", ax, INF)
    edge = b.or_(m.cmp("==", ax, 0.0), is_inf)
    mag = m.select(edge, m.select(b.xor(is_inf, below), INF, 0.0), mag)
    # |y| >= 2^900 (inf included): |y log|x|| overflows unless |x| == 1.
    limit = m.select(m.cmp("==", ax, 1.0), 1.0, m.select(b.xor(m.cmp(">", ax, 1.0), below), INF, 0.0))
    return m.select(m.cmp(">=", m.fabs(y), 2.0**900), limit, mag)


def _pow(m: MathBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    b, ax, ay = m.b, m.fabs(x), m.fabs(y)
    hi, lo = _log_dd(m, ax)
    p, p_lo = m.two_prod(y, hi)
    mag = _pow_limits(m, ax, y, _exp_dd(m, p, m.mul_add(y, lo, p_lo)))
    # Sign: negative for a negative base (-0 and -inf included) and an odd integer y.
    y_int = m.is_integer(ay)
    odd = b.and_(y_int, b.not_(m.is_integer(m.mul(ay, 0.5))))
    negative = b.icmp_signed("<", m.bits(x), m.i(0))
    y_out = m.select(b.and_(negative, odd), m.neg(mag), mag)
    # A finite negative base and a non-integer y: no real result.
    no_real = b.and_(m.cmp("<", x, 0.0), b.and_(m.cmp("!=", ax, INF), b.not_(y_int)))
    y_out = m.select(no_real, NAN, y_out)
    y_out = m.select(m.isnan(x, y), m.add(x, y), y_out)
    return m.select(b.or_(m.cmp("==", y, 0.0), m.cmp("==", x, 1.0)), 1.0, y_out)  # even for NaN


#: name -> (number of arguments, body builder, whether f32 is computed in f64)
FUNCTIONS: dict[str, tuple[int, Callable[..., ir.Value], bool]] = {
    "exp": (1, _exp, False),
    "expm1": (1, _expm1, False),
    "log": (1, _log, False),
    "log1p": (1, _log1p, False),
    "tanh": (1, _tanh, False),
    "sigmoid": (1, _sigmoid, False),
    "softplus": (1, _softplus, False),
    "pow": (2, _pow, True),
    "sin": (1, _sin, True),
    "cos": (1, _cos, True),
}
