"""SymPy elementwise bodies -> LLVM IR values, one element at a time.

An elementwise node's body is a SymPy expression over ``x0, x1, ...``; here
it becomes straight-line IR over the loaded elements, inside the kernel's
innermost loop. Equal subexpressions are emitted once. Transcendental
functions come from :mod:`dlc.backends.llvm.mathlib` (vectorizable, no libm
calls); a function this printer does not know is an error that names it.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy
from llvmlite import ir

from dlc.backends.llvm.kernels import ARITH, Kernel
from dlc.backends.llvm.mathlib import math_function
from dlc.graph import scalar as dlc_scalar

#: SymPy function -> the mathlib function of the same meaning.
LIBRARY = {
    sympy.exp: "exp",
    sympy.log: "log",
    sympy.tanh: "tanh",
    sympy.sin: "sin",
    sympy.cos: "cos",
    dlc_scalar.sigmoid: "sigmoid",
    dlc_scalar.softplus: "softplus",
}
#: Integer powers up to this are products; beyond, the general pow.
MAX_PRODUCT_POWER = 16


class UnsupportedError(Exception):
    """A body uses a function the LLVM backend has no code for."""


def intrinsic(k: Kernel, name: str, nargs: int = 1, ty: ir.Type | None = None) -> ir.Function:
    """An LLVM intrinsic that is one instruction (fabs, sqrt, maximum ...), of ``ty`` or the kernel's type."""
    ty = ty or k.ty
    full = f"llvm.{name}.{'f64' if isinstance(ty, ir.DoubleType) else 'f32'}"
    if full in k.module.globals:
        return k.module.globals[full]
    return ir.Function(k.module, ir.FunctionType(ty, [ty] * nargs), full)


class BodyEmitter:
    """Emits one body; ``args[i]`` is the IR value of symbol ``x<i>``."""

    def __init__(self, k: Kernel, args: list[ir.Value]) -> None:
        self.k = k
        self.b = k.b
        self.args = args
        self.memo: dict[sympy.Basic, ir.Value] = {}

    def emit(self, expr: sympy.Basic) -> ir.Value:
        """The value of ``expr``; walks the tree without recursion (bodies may be deep)."""
        stack: list[tuple[sympy.Basic, bool]] = [(expr, False)]
        while stack:
            node, ready = stack.pop()
            if node in self.memo:
                continue
            if ready or not self._needs_args(node):
                self.memo[node] = self._one(node)
                continue
            stack.append((node, True))
            stack.extend((a, False) for a in reversed(node.args) if a not in self.memo)
        return self.memo[expr]

    @staticmethod
    def _needs_args(node: sympy.Basic) -> bool:
        return bool(node.args) and not isinstance(node, sympy.Number)

    def _arg(self, node: sympy.Basic) -> ir.Value:
        return self.memo[node]

    def _one(self, node: sympy.Basic) -> ir.Value:
        if isinstance(node, sympy.Symbol):
            return self._symbol(node)
        if node.is_Number or isinstance(node, sympy.NumberSymbol) or node in _SPECIAL:
            return self.k.const(number(node))
        if node.is_number and node.has(sympy.sin, sympy.cos) and not node.has(*_SPECIAL):
            # sin or cos of numbers alone (cos(1e300)): folded here, as NumPy computes it (of the
            # numbers rounded to floats), rather than by mathlib, which is accurate for |x| < 1.3e7.
            return self.k.const(number(_rounded_numbers(node)))
        for kind, method in _DISPATCH:
            if isinstance(node, kind):
                return method(self, node)
        func = node.func
        if func in LIBRARY:
            fn = math_function(self.k.module, LIBRARY[func], self.k.ty)
            return self.b.call(fn, [self._arg(a) for a in node.args])
        if func in _HELPERS:
            return _HELPERS[func](self, *(self._arg(a) for a in node.args))
        raise UnsupportedError(f"the LLVM backend has no code for the function {type(node).__name__}")

    def _symbol(self, node: sympy.Symbol) -> ir.Value:
        name = node.name
        if name.startswith("x") and name[1:].isdigit() and int(name[1:]) < len(self.args):
            return self.args[int(name[1:])]
        raise UnsupportedError(f"the LLVM backend met the free symbol {name} in a body")

    def _add(self, node: sympy.Add) -> ir.Value:
        terms = [self._arg(a) for a in node.args]
        total = terms[0]
        for t in terms[1:]:
            total = self.b.fadd(total, t, flags=ARITH)
        return total

    def _mul(self, node: sympy.Mul) -> ir.Value:
        """A product; factors with a negative whole exponent divide, as a person writes x/y."""
        top, bottom = [], []
        for a in node.args:
            if isinstance(a, sympy.Pow) and a.exp.is_Integer and a.exp < 0 and a.exp >= -MAX_PRODUCT_POWER:
                bottom.append(self.power(self.memo[a.base], -int(a.exp)))
            else:
                top.append(self._arg(a))
        value = self._fold(self.b.fmul, top) if top else self.k.const(1.0)
        if bottom:
            value = self.b.fdiv(value, self._fold(self.b.fmul, bottom), flags=ARITH)
        return value

    def _fold(self, op: Callable[..., ir.Value], values: list[ir.Value]) -> ir.Value:
        result = values[0]
        for v in values[1:]:
            result = op(result, v, flags=ARITH)
        return result

    def _pow(self, node: sympy.Pow) -> ir.Value:
        base, exp = self._arg(node.base), node.exp
        if exp.is_Integer and abs(int(exp)) <= MAX_PRODUCT_POWER:
            n = int(exp)
            if n == 0:
                return self.k.const(1.0)
            value = self.power(base, abs(n))
            return value if n > 0 else self.b.fdiv(self.k.const(1.0), value, flags=ARITH)
        if exp == sympy.S.Half:
            return self.b.call(intrinsic(self.k, "sqrt"), [base])
        if exp == -sympy.S.Half:
            root = self.b.call(intrinsic(self.k, "sqrt"), [base])
            return self.b.fdiv(self.k.const(1.0), root, flags=ARITH)
        fn = math_function(self.k.module, "pow", self.k.ty)
        return self.b.call(fn, [base, self._arg(exp)])

    def power(self, base: ir.Value, n: int) -> ir.Value:
        """base ** n for a whole n >= 1, by repeated squaring."""
        result: ir.Value | None = None
        square = base
        while n:
            if n & 1:
                result = square if result is None else self.b.fmul(result, square, flags=ARITH)
            n >>= 1
            if n:
                square = self.b.fmul(square, square, flags=ARITH)
        assert result is not None
        return result

    # ------------------------------------------------- piecewise helpers

    def select(self, cond: str, a: ir.Value, b: ir.Value, then: ir.Value, other: ir.Value) -> ir.Value:
        return self.b.select(self.b.fcmp_ordered(cond, a, b), then, other)

    def relu(self, x: ir.Value) -> ir.Value:
        # max(x, 0) that keeps a NaN, as np.maximum does: only x < 0 becomes 0.
        return self.select("<", x, self.k.const(0.0), self.k.const(0.0), x)

    def step(self, x: ir.Value) -> ir.Value:
        return self.select(">", x, self.k.const(0.0), self.k.const(1.0), self.k.const(0.0))

    def leaky_relu(self, x: ir.Value, alpha: ir.Value) -> ir.Value:
        return self.select(">", x, self.k.const(0.0), x, self.b.fmul(alpha, x))

    def clip01(self, p: ir.Value) -> ir.Value:
        eps = float(dlc_scalar.EPS)
        low = self.select("<", p, self.k.const(eps), self.k.const(eps), p)
        return self.select(">", low, self.k.const(1 - eps), self.k.const(1 - eps), low)

    def inside01(self, p: ir.Value) -> ir.Value:
        eps = float(dlc_scalar.EPS)
        above = self.b.fcmp_ordered(">", p, self.k.const(eps))
        below = self.b.fcmp_ordered("<", p, self.k.const(1 - eps))
        return self.b.select(self.b.and_(above, below), self.k.const(1.0), self.k.const(0.0))

    def compare(self, cond: str, a: ir.Value, b: ir.Value) -> ir.Value:
        """1 where ``a cond b``, else 0; NaN compares false, except that it is unequal (as in NumPy)."""
        test = self.b.fcmp_unordered(cond, a, b) if cond == "!=" else self.b.fcmp_ordered(cond, a, b)
        return self.b.select(test, self.k.const(1.0), self.k.const(0.0))

    def where(self, c: ir.Value, a: ir.Value, b: ir.Value) -> ir.Value:
        return self.b.select(self.b.fcmp_unordered("!=", c, self.k.const(0.0)), a, b)

    def abs(self, x: ir.Value) -> ir.Value:
        return self.b.call(intrinsic(self.k, "fabs"), [x])

    def sign(self, x: ir.Value) -> ir.Value:
        # np.sign: -1, 0 or 1, and NaN for NaN.
        zero = self.k.const(0.0)
        positive = self.select(">", x, zero, self.k.const(1.0), x)
        return self.select("<", x, zero, self.k.const(-1.0), positive)

    def maximum(self, *xs: ir.Value) -> ir.Value:
        return self._fold(lambda a, c, flags: self.b.call(intrinsic(self.k, "maximum", 2), [a, c]), list(xs))

    def minimum(self, *xs: ir.Value) -> ir.Value:
        return self._fold(lambda a, c, flags: self.b.call(intrinsic(self.k, "minimum", 2), [a, c]), list(xs))


_DISPATCH: list[tuple[type, Callable[[BodyEmitter, sympy.Basic], ir.Value]]] = [
    (sympy.Add, BodyEmitter._add),
    (sympy.Mul, BodyEmitter._mul),
    (sympy.Pow, BodyEmitter._pow),
]

_HELPERS: dict[object, Callable[..., ir.Value]] = {
    dlc_scalar.relu: BodyEmitter.relu,
    dlc_scalar.step: BodyEmitter.step,
    dlc_scalar.leaky_relu: BodyEmitter.leaky_relu,
    dlc_scalar.clip01: BodyEmitter.clip01,
    dlc_scalar.inside01: BodyEmitter.inside01,
    dlc_scalar.where: BodyEmitter.where,
    dlc_scalar.maximum: BodyEmitter.maximum,
    dlc_scalar.minimum: BodyEmitter.minimum,
    **{
        f: lambda self, a, b, cond=f.symbol: self.compare(cond, a, b)
        for f in (dlc_scalar.gt, dlc_scalar.ge, dlc_scalar.lt, dlc_scalar.le, dlc_scalar.eq, dlc_scalar.ne)
    },
    sympy.Abs: BodyEmitter.abs,
    sympy.sign: BodyEmitter.sign,
    sympy.Max: BodyEmitter.maximum,
    sympy.Min: BodyEmitter.minimum,
}

_SPECIAL = (sympy.nan, sympy.zoo, sympy.oo, -sympy.oo)


def _rounded_numbers(expr: sympy.Basic) -> sympy.Basic:
    """``expr`` with each rational number in it replaced by the float a generated module reads."""
    rounded = {}
    for q in expr.atoms(sympy.Rational):
        try:
            rounded[q] = sympy.Float(float(q), 53)
        except OverflowError:
            rounded[q] = sympy.oo if q > 0 else -sympy.oo
    return expr.xreplace(rounded)


def number(value: sympy.Basic) -> float:
    """A folded SymPy number as a float: NaN for an undefined one, an infinity past the range."""
    if value in (sympy.nan, sympy.zoo):
        return float("nan")
    try:
        result = complex(sympy.N(value, 20))
    except (OverflowError, TypeError):
        return float("inf") if value > 0 else float("-inf")
    if result.imag:
        raise UnsupportedError(f"the LLVM backend cannot compute with the complex number {value}")
    return result.real
