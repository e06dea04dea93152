"""Instruction helpers for the math library: IEEE formats, exact float tricks, double-double.

Everything here emits straight-line scalar IR (arithmetic, compares, selects,
bitcasts, integer ops, and the llvm.fabs / llvm.copysign intrinsics, which are
bit operations on x86), so that a loop calling the math functions vectorizes.
No rounding intrinsic is used: rounding to an integer is the "shifter" trick
below, exact in the default rounding mode, and needs neither SSE4.1 nor libm.

Only `contract` is ever set as a fast-math flag, and only by `mul_add` (and
the polynomials built on it), where fusing into an FMA can only make the
result more accurate; some callers count on the FMA being there for exact
remainders, and measure what its absence costs. The exact tricks (two_sum,
two_prod) are emitted without flags, so LLVM may neither fuse nor
reassociate them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from llvmlite import ir

CONTRACT = ("contract",)
Operand: TypeAlias = "ir.Value | float"


@dataclass(frozen=True)
class FloatFormat:
    """An IEEE binary format: the suffix of function names and the fields of its bit pattern."""

    name: str
    width: int
    mant: int  # stored fraction bits
    bias: int

    def float_type(self) -> ir.Type:
        return ir.DoubleType() if self.width == 64 else ir.FloatType()

    @property
    def min_normal(self) -> float:
        return 2.0 ** (1 - self.bias)


F64 = FloatFormat("f64", 64, 52, 1023)
F32 = FloatFormat("f32", 32, 23, 127)


def format_of(ty: ir.Type) -> FloatFormat:
    """The format of ``ir.DoubleType()`` or ``ir.FloatType()``; any other type is an error."""
    if isinstance(ty, ir.DoubleType):
        return F64
    if isinstance(ty, ir.FloatType):
        return F32
    raise TypeError(f"the math library has no functions for the type {ty}")


def float_bits(value: float, fmt: FloatFormat) -> int:
    """The bit pattern of ``value`` (exactly representable in ``fmt``) as an unsigned integer."""
    import struct

    code = ("<d", "<Q") if fmt.width == 64 else ("<f", "<I")
    result: int = struct.unpack(code[1], struct.pack(code[0], value))[0]
    return result


class MathBuilder:
    """An `ir.IRBuilder` for one float format, with the operations the math kernels are written in.

    Float operands may be Python floats; they become constants of the format.
    """

    def __init__(self, builder: ir.IRBuilder, fmt: FloatFormat) -> None:
        self.b = builder
        self.fmt = fmt
        self.ty = fmt.float_type()
        self.ity = ir.IntType(fmt.width)

    # -- values -----------------------------------------------------------------------------

    def v(self, x: Operand) -> ir.Value:
        return x if isinstance(x, ir.Value) else ir.Constant(self.ty, x)

    def i(self, n: int) -> ir.Constant:
        return ir.Constant(self.ity, n)

    def bits(self, x: Operand) -> ir.Value:
        return self.b.bitcast(self.v(x), self.ity)

    def from_bits(self, n: ir.Value) -> ir.Value:
        return self.b.bitcast(n, self.ty)

    # -- float arithmetic: exact IEEE operations, no flags ------------------------------------

    def add(self, x: Operand, y: Operand) -> ir.Value:
        return self.b.fadd(self.v(x), self.v(y))

    def sub(self, x: Operand, y: Operand) -> ir.Value:
        return self.b.fsub(self.v(x), self.v(y))

    def mul(self, x: Operand, y: Operand) -> ir.Value:
        return self.b.fmul(self.v(x), self.v(y))

    def div(self, x: Operand, y: Operand) -> ir.Value:
        return self.b.fdiv(self.v(x), self.v(y))

    def neg(self, x: Operand) -> ir.Value:
        return self.b.fneg(self.v(x))

    def mul_add(self, x: Operand, y: Operand, z: Operand) -> ir.Value:
        """x*y + z, which LLVM may fuse into one FMA where the CPU has it."""
        return self.b.fadd(self.b.fmul(self.v(x), self.v(y), flags=CONTRACT), self.v(z), flags=CONTRACT)

    def horner(self, x: ir.Value, coeffs: tuple[float, ...]) -> ir.Value:
        """The polynomial sum(coeffs[k] * x**k), by Horner's rule."""
        acc = self.v(coeffs[-1])
        for c in reversed(coeffs[:-1]):
            acc = self.mul_add(acc, x, c)
        return acc

    def horner_pairs(self, x: ir.Value, x2: ir.Value, coeffs: tuple[float, ...]) -> ir.Value:
        """The polynomial sum(coeffs[k] * x**k) as pairs c[2i] + c[2i+1] x, by Horner's rule in x2 = x^2.

        As many multiply-adds as Horner's rule (and a register copy per pair, as
        x86's multiply-add overwrites an operand), but half as long a chain of
        them, so that more of a loop's iterations overlap in the CPU.
        """
        pairs = [self.mul_add(x, c1, c0) for c0, c1 in zip(coeffs[::2], coeffs[1::2], strict=False)]
        if len(coeffs) % 2:
            pairs.append(self.v(coeffs[-1]))
        acc = pairs[-1]
        for pair in reversed(pairs[:-1]):
            acc = self.mul_add(acc, x2, pair)
        return acc

    def fabs(self, x: ir.Value) -> ir.Value:
        fn = self.b.module.declare_intrinsic("llvm.fabs", [self.ty])
        return self.b.call(fn, [x])

    def copysign(self, magnitude: ir.Value, sign: ir.Value) -> ir.Value:
        fnty = ir.FunctionType(self.ty, [self.ty, self.ty])
        fn = self.b.module.declare_intrinsic("llvm.copysign", [self.ty], fnty)
        return self.b.call(fn, [magnitude, sign])

    # -- compares and selects ---------------------------------------------------------------

    def cmp(self, op: str, x: Operand, y: Operand) -> ir.Value:
        """Ordered compare: false when either side is NaN."""
        return self.b.fcmp_ordered(op, self.v(x), self.v(y))

    def cmp_or_nan(self, op: str, x: Operand, y: Operand) -> ir.Value:
        """Unordered compare: true when either side is NaN."""
        return self.b.fcmp_unordered(op, self.v(x), self.v(y))

    def isnan(self, x: ir.Value, y: ir.Value | None = None) -> ir.Value:
        return self.b.fcmp_unordered("uno", x, x if y is None else y)

    def select(self, cond: ir.Value, x: Operand, y: Operand) -> ir.Value:
        return self.b.select(cond, self.v(x), self.v(y))

    def clamp(self, x: ir.Value, lo: float, hi: float) -> ir.Value:
        """x limited to [lo, hi]; NaN becomes ``hi`` (callers that care select NaN back in)."""
        below_hi = self.select(self.cmp("<", x, hi), x, hi)
        return self.select(self.cmp(">", below_hi, lo), below_hi, lo)

    def limit(self, x: ir.Value, lo: float | None, hi: float | None) -> ir.Value:
        """x limited to [lo, hi] (a bound may be None); NaN stays NaN.

        Each bound is a compare that is false for NaN, then a select that keeps
        x: on x86 one minpd / maxpd each, whose NaN operand rule gives x back.
        """
        if hi is not None:
            x = self.select(self.cmp("<", hi, x), hi, x)
        if lo is not None:
            x = self.select(self.cmp("<", x, lo), lo, x)
        return x

    # -- exact tricks -----------------------------------------------------------------------

    def round_int(self, x: Operand, y: float = 1.0) -> tuple[ir.Value, ir.Value]:
        """n = the integer nearest to x*y, as a float and as an integer, for |x*y| < 2^(mant-1).

        Adding 1.5 * 2^mant puts the value in a binade whose ulp is 1, so the sum
        is rounded to an integer (ties to even), whose two's complement sits in the
        low bits of the sum; subtracting the constant back is exact.
        """
        shifter = 1.5 * 2.0**self.fmt.mant
        t = self.mul_add(x, y, shifter) if y != 1.0 else self.add(x, shifter)
        n_int = self.b.sub(self.bits(t), self.i(float_bits(shifter, self.fmt)))
        return self.sub(t, shifter), n_int

    def round_shifted(self, x: ir.Value, y: float) -> tuple[ir.Value, ir.Value]:
        """(n, t): n = the integer nearest to x*y as a float, and t the shifter sum whose low bits hold n.

        As `round_int`, without the integer subtraction: `pow2_shifted` reads n
        from t's bits directly. For |x*y| < 2^(mant-2).
        """
        shifter = 1.5 * 2.0**self.fmt.mant
        t = self.mul_add(x, y, shifter)
        return self.sub(t, shifter), t

    def pow2_shifted(self, t: ir.Value, offset: ir.Value | int = 0) -> ir.Value:
        """2^(n + offset) for the n held by a shifter sum t (see `round_shifted`); it must be normal.

        t's bits are the shifter's plus n; shifted left by mant, the shifter's
        bits fall off the top (its low bits are zero) and n lands in the
        exponent field, to which the bits of 2^offset add the bias and offset.
        ``offset`` is a Python int, or an integer value holding the bits of
        2^offset already (see `exponent_bits`).
        """
        if isinstance(offset, int):
            offset = self.i(self.exponent_bits(offset))
        return self.from_bits(self.b.add(self.b.shl(self.bits(t), self.i(self.fmt.mant)), offset))

    def exponent_bits(self, k: int) -> int:
        """The bit pattern of 2^k (a normal power of two)."""
        return (k + self.fmt.bias) << self.fmt.mant

    def is_integer(self, ax: ir.Value) -> ir.Value:
        """Whether ax (>= 0, not NaN) is an integer: all floats from 2^mant up are."""
        big = 2.0**self.fmt.mant
        rounded = self.sub(self.add(ax, big), big)
        return self.b.or_(self.cmp(">=", ax, big), self.cmp("==", rounded, ax))

    def pow2(self, n: ir.Value) -> ir.Value:
        """2^n for an integer n in the normal exponent range, built from its exponent bits."""
        biased = self.b.add(n, self.i(self.fmt.bias))
        return self.from_bits(self.b.shl(biased, self.i(self.fmt.mant)))

    def ldexp(self, x: ir.Value, n: ir.Value) -> ir.Value:
        """x * 2^n for 0.25 <= x < 2 and n from emin - mant - 3 to emax + 2, rounded once.

        2^n itself may overflow or be subnormal, so the scale is applied in two
        steps: 2^(n + a), with a chosen to keep it normal, then the constant 2^-a.
        The first product is exact; only the second rounds (to inf, or through
        the subnormals to 0).
        """
        shift = self.fmt.mant + 3
        negative = self.b.icmp_signed("<", n, self.i(0))
        adjust = self.b.select(negative, self.i(shift), self.i(-2))
        second = self.select(negative, 2.0**-shift, 4.0)
        return self.mul(self.mul(x, self.pow2(self.b.add(n, adjust))), second)

    def frexp_sqrt2(self, x: ir.Value, k_shift: Operand = 0.0) -> tuple[ir.Value, ir.Value]:
        """(k - k_shift, m) with x = 2^k * m and sqrt(1/2) <= m < sqrt(2), for a positive normal x.

        Adding bits(1) - bits(sqrt(1/2)) to the bit pattern carries into the
        exponent field exactly when the significand is >= sqrt(2)'s, so the
        exponent field of the sum is k + bias. k is read as a float by
        or-ing it into the significand of 2^mant, then subtracting 2^mant +
        bias + k_shift (an integral float; a select of two constants folds into
        the subtraction's constant, so it costs no instruction).
        """
        fmt, b = self.fmt, self.b
        sqrt_half = float_bits(0.7071067811865476 if fmt.width == 64 else 0.70710677, fmt)
        shifted = b.add(self.bits(x), self.i(float_bits(1.0, fmt) - sqrt_half))
        field = b.lshr(shifted, self.i(fmt.mant))
        two_mant = 2.0**fmt.mant
        offset = (
            self.add(k_shift, two_mant + fmt.bias)
            if isinstance(k_shift, ir.Value)
            else two_mant + fmt.bias + k_shift
        )
        k = self.sub(self.from_bits(b.or_(field, self.i(float_bits(two_mant, fmt)))), offset)
        mant_mask = (1 << fmt.mant) - 1
        m = self.from_bits(b.add(b.and_(shifted, self.i(mant_mask)), self.i(sqrt_half)))
        return k, m

    def reciprocal_estimate(self, x: ir.Value) -> ir.Value:
        """1/x to 0.3% for a positive normal x, without a division.

        The seed magic - bits(x) negates x's exponent and, roughly, its
        significand (5% off at worst); one Newton step y + y (1 - x y)
        squares that error.
        """
        magic = 0x7FDE623822FC16E6 if self.fmt.width == 64 else 0x7EF311C7
        y = self.from_bits(self.b.sub(self.i(magic), self.bits(x)))
        return self.mul_add(y, self.mul_add(self.neg(x), y, 1.0), y)

    # -- double-double: a value as an unevaluated sum hi + lo ---------------------------------

    def fast_two_sum(self, x: ir.Value, y: ir.Value) -> tuple[ir.Value, ir.Value]:
        """s + e == x + y exactly, s = fl(x + y); requires |x| >= |y| (or x == 0)."""
        s = self.add(x, y)
        return s, self.sub(y, self.sub(s, x))

    def two_sum(self, x: ir.Value, y: ir.Value) -> tuple[ir.Value, ir.Value]:
        """s + e == x + y exactly, s = fl(x + y), for any order of magnitude (Knuth)."""
        s = self.add(x, y)
        yy = self.sub(s, x)
        xx = self.sub(s, yy)
        return s, self.add(self.sub(x, xx), self.sub(y, yy))

    def split(self, x: ir.Value) -> tuple[ir.Value, ir.Value]:
        """hi + lo == x with each half short enough that products of halves are exact (Veltkamp)."""
        c = self.mul(x, 2.0 ** ((self.fmt.mant + 2) // 2) + 1.0)
        hi = self.sub(c, self.sub(c, x))
        return hi, self.sub(x, hi)

    def two_prod(self, x: ir.Value, y: ir.Value) -> tuple[ir.Value, ir.Value]:
        """p + e == x * y exactly, p = fl(x * y), without an FMA (Dekker); |x|, |y| < 2^995."""
        p = self.mul(x, y)
        xh, xl = self.split(x)
        yh, yl = self.split(y)
        e = self.sub(self.mul(xh, yh), p)
        e = self.add(e, self.mul(xh, yl))
        e = self.add(e, self.mul(xl, yh))
        return p, self.add(e, self.mul(xl, yl))
