"""Scalar functions that SymPy lacks, each with its derivative rule.

Elementwise graph nodes hold SymPy expressions over element symbols; the
activations below appear in them as ordinary SymPy functions, so
``sympy.diff`` differentiates them, and each derivative is written in terms of
the function itself where that is the cheap form (sigmoid' = s (1 - s)).
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import sympy
from sympy import Function, Integer, S


def _numeric(x: sympy.Expr, prec: int) -> sympy.Expr | None:
    """x evaluated to a number at ``prec`` bits, or None where SymPy cannot (a symbol in it)."""
    value = x._eval_evalf(prec)
    return value if value is not None and value.is_Number else None


class step(Function):  # noqa: N801 - SymPy names functions in lower case
    """Heaviside step with step(0) = 0: the derivative of relu."""

    @classmethod
    def eval(cls, x: sympy.Expr) -> sympy.Expr | None:
        if x.is_positive:
            return S.One
        if x.is_nonpositive:
            return S.Zero
        return None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return S.Zero  # almost everywhere

    def _eval_evalf(self, prec: int) -> sympy.Expr | None:
        # eval decides from SymPy's assumptions; a number they cannot place (step(sigmoid(1)))
        # is decided here, numerically.
        x = _numeric(self.args[0], prec)
        return None if x is None else S.NaN if x is S.NaN else (S.One if x > 0 else S.Zero)


class relu(Function):  # noqa: N801
    """max(x, 0)."""

    @classmethod
    def eval(cls, x: sympy.Expr) -> sympy.Expr | None:
        if x.is_nonnegative:
            return x
        if x.is_nonpositive:
            return S.Zero
        return None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return step(self.args[0])

    def _eval_evalf(self, prec: int) -> sympy.Expr | None:
        x = _numeric(self.args[0], prec)
        return None if x is None else S.NaN if x is S.NaN else (x if x > 0 else S.Zero)


class leaky_relu(Function):  # noqa: N801
    """x for x > 0, alpha * x otherwise."""

    nargs = 2
    #: ``dlc grad`` lists d/du leaky_relu(u, alpha): the names of the arguments after u.
    shown_parameters = ("alpha",)

    @classmethod
    def eval(cls, x: sympy.Expr, alpha: sympy.Expr) -> sympy.Expr | None:
        if x.is_positive:
            return x
        if x.is_nonpositive and alpha.is_number:
            return alpha * x
        return None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        x, alpha = self.args
        if argindex == 1:
            return alpha + (1 - alpha) * step(x)
        return x * (1 - step(x))

    def _eval_evalf(self, prec: int) -> sympy.Expr | None:
        x, alpha = (_numeric(a, prec) for a in self.args)
        if x is None or alpha is None:
            return None
        return S.NaN if S.NaN in (x, alpha) else (x if x > 0 else alpha * x)


class sigmoid(Function):  # noqa: N801
    """The logistic function 1 / (1 + exp(-x))."""

    @classmethod
    def eval(cls, x: sympy.Expr) -> sympy.Expr | None:
        if x.is_zero:
            return S.Half
        return None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return self * (1 - self)

    def _eval_rewrite_as_exp(self, x: sympy.Expr, **kwargs: object) -> sympy.Expr:
        return 1 / (1 + sympy.exp(-x))

    def _eval_evalf(self, prec: int) -> sympy.Expr:
        return (1 / (1 + sympy.exp(-self.args[0])))._eval_evalf(prec)


class softplus(Function):  # noqa: N801
    """log(1 + exp(x)), computed stably by the backends."""

    @classmethod
    def eval(cls, x: sympy.Expr) -> sympy.Expr | None:
        if x.is_zero:
            return sympy.log(Integer(2))
        return None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, x: sympy.Expr, **kwargs: object) -> sympy.Expr:
        return sympy.log(1 + sympy.exp(x))

    def _eval_evalf(self, prec: int) -> sympy.Expr:
        return sympy.log(1 + sympy.exp(self.args[0]))._eval_evalf(prec)


def stable_forms(expr: sympy.Expr) -> sympy.Expr:
    """``expr`` with ``log(1 + exp(a))`` written ``softplus(a)``, as the backends compute it stably.

    As written, exp(a) overflows past a = 709 (88 in float32): the value is
    inf, and the derivative exp(a) / (1 + exp(a)) is inf / inf = nan, where
    softplus(a) is about a and its derivative sigmoid(a) about 1; for a
    below -37, 1 + exp(a) rounds to 1 and the value to 0, where softplus
    keeps exp(a). The same rewrite as bce of sigmoid(z) into bce_with_logits.
    """
    if not expr.has(sympy.log):
        return expr
    found = _softplus_argument
    return expr.replace(lambda e: found(e) is not None, lambda e: softplus(found(e)))


def _softplus_argument(e: sympy.Basic) -> sympy.Expr | None:
    """``a`` if ``e`` is log(1 + exp(a)), else None."""
    if not (isinstance(e, sympy.log) and isinstance(e.args[0], sympy.Add) and len(e.args[0].args) == 2):
        return None
    one, other = sorted(e.args[0].args, key=lambda t: t != 1)
    return other.args[0] if one == 1 and isinstance(other, sympy.exp) else None


def element_symbol(index: int) -> sympy.Symbol:
    """The symbol that stands for one element of an elementwise node's ``index``-th input."""
    return sympy.Symbol(f"x{index}", real=True)


def not_real(expr: sympy.Expr) -> bool:
    """Whether ``expr`` holds a number that is not real: I, or a negative number to a fractional power."""
    return expr.has(sympy.I) or any(_complex_power(p) for p in expr.atoms(sympy.Pow))


def _complex_power(p: sympy.Pow) -> bool:
    # SymPy cannot always tell ((-5)**E is_real is None), but a negative base to an
    # exponent that is not a whole number has no real value: e**(i pi q) is not real.
    if not p.is_number:
        return False
    if p.is_extended_real is False or bool(p.base.is_extended_negative and p.exp.is_integer is False):
        return True
    if p.base.is_extended_negative and p.exp.is_integer is None:
        # An exponent SymPy cannot place (softplus(-2), a function of dlc's): its value decides.
        value = _numeric(p.exp, 64)
        return value is not None and value.is_finite is not False and value != int(value)
    return False


def substitute_real(expr: sympy.Expr, mapping: dict[sympy.Basic, sympy.Basic]) -> sympy.Expr | None:
    """``expr`` with ``mapping`` substituted, or None where that would make a real body complex.

    Element symbols are real, so SymPy evaluates sqrt(-x**2) to I*Abs(x): true
    of complex numbers, but the backends compute in reals, where the square
    root of a negative number is nan (as NumPy has it). Composing sqrt(x0)
    with -x0*x0 would turn that nan into a complex number; the caller keeps
    the two apart instead, so the model computes its formula as written.
    """
    result = float_roots(expr.xreplace(mapping))
    if not_real(result) and not not_real(expr) and not any(not_real(v) for v in mapping.values()):
        return None
    return result


#: A power to a fraction with a larger denominator is computed with a float exponent.
MAX_ROOT = 1000


def float_roots(expr: sympy.Expr, mapping: dict[sympy.Basic, sympy.Basic] | None = None) -> sympy.Expr:
    """``expr`` with each power to a fraction p/q, q > MAX_ROOT, taken to the float nearest p/q.

    SymPy treats x**(p/q) as the q-th root of x**p: its assumptions and
    derivatives then work with polynomials of degree q (x**0.0008, q = 1250,
    is slow; x**1e-21 exhausts the memory), and a number to such a power is
    folded exactly by factoring. The backends compute the power in floating
    point anyway, with this very exponent. With ``mapping``, an exponent is
    judged as it will be once ``mapping`` is substituted into ``expr``, so
    that the substitution itself folds numbers in floating point.
    """
    subs = mapping or {}

    def exponent(p: sympy.Basic) -> sympy.Basic:
        return p.exp.xreplace(subs) if subs else p.exp

    def is_root(e: sympy.Basic) -> bool:
        if not isinstance(e, sympy.Pow):
            return False
        q = exponent(e)
        return isinstance(q, sympy.Rational) and q.q > MAX_ROOT

    if not any(is_root(p) for p in expr.atoms(sympy.Pow)):
        return expr
    return expr.replace(is_root, lambda e: sympy.Pow(e.base, sympy.Float(float(exponent(e)))))


def as_real(expr: sympy.Expr) -> sympy.Expr:
    """``expr`` with its non-real numbers made nan, which is what real arithmetic gives for them.

    SymPy's derivative of (-2)**x is (-2)**x*(log(2) + I*pi); in reals, and
    in NumPy, log(-2) is nan, and so is the derivative.
    """
    if not not_real(expr):
        return expr
    roots = {p: sympy.nan for p in expr.atoms(sympy.Pow) if _complex_power(p)}
    return expr.xreplace({**roots, sympy.I: sympy.nan})


#: Probabilities are clipped to [EPS, 1 - EPS] before a logarithm (as Keras does).
EPS = sympy.Rational(1, 10**7)


class inside01(Function):  # noqa: N801
    """1 where EPS < p < 1 - EPS, else 0: the derivative of clip01."""

    @classmethod
    def eval(cls, p: sympy.Expr) -> sympy.Expr | None:
        if p.is_number and p.is_real:
            return S.One if EPS < p < 1 - EPS else S.Zero
        return None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return S.Zero


class clip01(Function):  # noqa: N801
    """p clipped to [EPS, 1 - EPS], so that log(p) and log(1 - p) stay finite."""

    @classmethod
    def eval(cls, p: sympy.Expr) -> sympy.Expr | None:
        if p.is_number and p.is_real:
            return sympy.Min(sympy.Max(p, EPS), 1 - EPS)
        return None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return inside01(self.args[0])


# ------------------------------------------------- comparisons and choices


class _Comparison(Function):
    """1 where ``a <op> b`` holds, else 0 (NaN compares false, and unequal): a step, not differentiated."""

    nargs = 2
    symbol: str = "?"

    @classmethod
    def eval(cls, a: sympy.Expr, b: sympy.Expr) -> sympy.Expr | None:
        if a.is_number and b.is_number and a.is_extended_real and b.is_extended_real:
            return S.One if cls.holds(float(a), float(b)) else S.Zero
        return None

    #: Whether ``a <op> b`` holds, for two floats.
    holds: Callable[[float, float], bool]

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return S.Zero  # piecewise constant: its derivative is 0 wherever it has one

    def _sympystr(self, printer: object) -> str:
        a, b = (printer._print(x) for x in self.args)  # type: ignore[attr-defined]
        return f"({a} {self.symbol} {b})"

    def _latex(self, printer: object) -> str:
        a, b = (printer._print(x) for x in self.args)  # type: ignore[attr-defined]
        op = {"<=": r"\le", ">=": r"\ge", "!=": r"\ne", "==": "="}.get(self.symbol, self.symbol)
        return rf"\left[{a} {op} {b}\right]"


class gt(_Comparison):  # noqa: N801
    symbol = ">"
    holds = staticmethod(operator.gt)


class ge(_Comparison):  # noqa: N801
    symbol = ">="
    holds = staticmethod(operator.ge)


class lt(_Comparison):  # noqa: N801
    symbol = "<"
    holds = staticmethod(operator.lt)


class le(_Comparison):  # noqa: N801
    symbol = "<="
    holds = staticmethod(operator.le)


class eq(_Comparison):  # noqa: N801
    symbol = "=="
    holds = staticmethod(operator.eq)


class ne(_Comparison):  # noqa: N801
    symbol = "!="
    holds = staticmethod(operator.ne)


class where(Function):  # noqa: N801
    """``a`` where ``c`` is not 0, else ``b``; differentiated into the branch taken."""

    nargs = 3

    @classmethod
    def eval(cls, c: sympy.Expr, a: sympy.Expr, b: sympy.Expr) -> sympy.Expr | None:
        if c.is_number and c.is_extended_real:
            return a if c != 0 else b
        if a == b:
            return a
        return None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        c = self.args[0]
        if argindex == 1:
            return S.Zero
        return where(c, S.One, S.Zero) if argindex == 2 else where(c, S.Zero, S.One)

    def _latex(self, printer: object) -> str:
        c, a, b = (printer._print(x) for x in self.args)  # type: ignore[attr-defined]
        return rf"\begin{{cases}} {a} & \text{{if }} {c} \\ {b} & \text{{otherwise}} \end{{cases}}"


class _Extreme(Function):
    """The larger (``sign`` 1) or smaller (-1) of a and b, NaN if either is. At a tie each gets
    half the gradient, as in torch."""

    nargs = 2
    sign = 1

    @classmethod
    def eval(cls, a: sympy.Expr, b: sympy.Expr) -> sympy.Expr | None:
        if a == b:
            return a
        if a.is_number and b.is_number and a.is_extended_real and b.is_extended_real:
            return a if cls.sign * (a - b) > 0 else b
        return None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        a, b = self.args
        toward_a = self.sign * sympy.sign(a - b)  # 1 where a wins, -1 where b does, 0 at a tie
        return (1 + toward_a) / 2 if argindex == 1 else (1 - toward_a) / 2


class maximum(_Extreme):  # noqa: N801
    """The larger of a and b (NaN if either is); half the gradient to each at a tie."""


class minimum(_Extreme):  # noqa: N801
    """The smaller of a and b (NaN if either is); half the gradient to each at a tie."""

    sign = -1


#: dlc's own scalar functions by name: each backend has code for every one (its NumPy form in
#: :mod:`dlc.backends.scalar_numpy` under the same name, its LLVM form in the body emitter),
#: so a new elementwise function is one class here and one entry per backend.
FUNCTIONS: dict[str, type[Function]] = {
    f.__name__: f
    for f in (
        sigmoid, softplus, relu, step, leaky_relu, clip01, inside01,
        gt, ge, lt, le, eq, ne, where, maximum, minimum,
    )
}  # fmt: skip
