"""Math library functions that carry extra precision: expm1, pow, sin, cos.

These keep the low-order parts of their reductions (double-double pieces,
Cody–Waite remainders) where the fast exp family in `functions` drops them:
expm1 because its result cancels, pow because an error in y log|x| is
magnified up to 745 times, sin and cos because reductions by pi/2 cancel.
pow, sin and cos serve f32 by computing in f64 (see `math_function`).
"""

from __future__ import annotations

import math

from llvmlite import ir

from dlc.backends.llvm.mathlib import constants as const
from dlc.backends.llvm.mathlib.builder import F64, FloatFormat, MathBuilder

INF, NAN = math.inf, math.nan
LN2 = math.log(2.0)


# -- the exponential with its remainder kept -----------------------------------------------------


def exp_range(fmt: FloatFormat) -> tuple[float, float]:
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


def expm1(m: MathBuilder, x: ir.Value) -> ir.Value:
    # For n > mant + 1, e^x - 1 = 2^n (1 + r + lo - 2^-n), and 2^-n is a small
    # correction (capped where it no longer matters, to stay a normal number).
    # Below -(mant + 3) ln2 the result rounds to -1, which the clamp gives.
    fmt, b = m.fmt, m.b
    n, r, lo = _exp_reduced(m, m.clamp(x, -(fmt.mant + 3) * LN2, exp_range(fmt)[1]))
    big = b.icmp_signed(">", n, m.i(fmt.mant + 1))
    small, _ = _scaled_plus(m, b.select(big, m.i(0), n), r, lo, -1.0)
    cap = m.i(2 * fmt.mant + 4)
    inverse = m.pow2(b.neg(b.select(b.icmp_signed("<", n, cap), n, cap)))
    y = m.select(big, m.ldexp(_one_plus(m, r, m.sub(lo, inverse)), n), small)
    # Tiny |x| (and -0, whose sign the sum loses) is its own expm1; so is NaN.
    return m.select(m.cmp_or_nan("<", m.fabs(x), 2.0 ** -(fmt.mant + 2)), x, y)


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


def sin(m: MathBuilder, x: ir.Value) -> ir.Value:
    return m.select(m.cmp("==", x, 0.0), x, _sin_cos(m, x, 0))  # sin(-0) = -0


def cos(m: MathBuilder, x: ir.Value) -> ir.Value:
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
    lo_limit, hi_limit = exp_range(F64)
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


def power(m: MathBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
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
