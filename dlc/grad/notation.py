"""Matrix-calculus notation for derived formulas, as SymPy objects with three printers.

Formulas are ordinary SymPy expressions. Symbols stand for whole tensors, and
``*`` between two of them is the elementwise (Hadamard) product; matrix
operations are the function heads below, so that nothing is reordered:
``MatProd(A, x)`` is A x, ``T(A)`` is Aᵀ, ``BatchSum(e)`` is Σ_b e. The
printers write ``⊙`` (``\\odot``) for elementwise products of tensors.
"""

from __future__ import annotations

import re
from typing import Any

import sympy
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter


class MatProd(sympy.Function):
    """The matrix product of its arguments, in order."""


class T(sympy.Function):
    """Transpose."""


class BatchSum(sympy.Function):
    """Sum over the examples of the batch: Σ_b."""


class BatchMean(sympy.Function):
    """Mean over the examples of the batch."""


class Grad(sympy.Function):
    """∂L/∂θ for the parameter named by its argument."""


class Deriv(sympy.Function):
    """f'(u): ``Deriv(f, u)`` with ``f`` a symbol naming the function."""


class Part(sympy.Function):
    """``x[spec]``: a slice of a tensor; ``spec`` is a symbol whose name is the index as written."""


class Total(sympy.Function):
    """Sum over (some) axes of one example's tensor."""


class Average(sympy.Function):
    """Mean over (some) axes of one example's tensor."""


class Option(sympy.Function):
    """A setting of a call, ``stride = 2``: its argument is a symbol whose name is the text."""


_SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
_SUP = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
_GREEK = {"delta": "δ", "ell": "ℓ", "sigmoid": "σ", "yhat": "ŷ"}
_MATRIX_HEADS = (MatProd, T, BatchSum, BatchMean, Total, Average)


def _split_name(name: str) -> tuple[str, str]:
    """``delta3`` -> (``delta``, ``3``); ``W_out`` -> (``W``, ``out``); ``hidden`` -> (``hidden``, "")."""
    m = re.fullmatch(r"([A-Za-z]+?)_?(\d+)", name) or re.fullmatch(r"([A-Za-z]+)_(\w+)", name)
    if m:
        return m.group(1), m.group(2)
    return name, ""


def _numeric(factor: sympy.Expr) -> bool:
    return bool(factor.is_number)


def _simple(expr: sympy.Expr) -> bool:
    """Needs no parentheses as a factor: a name, a number, a call, a power of a name."""
    if expr.is_Pow:
        return _simple(expr.base) and not expr.base.is_Pow
    return bool(expr.is_Symbol or expr.is_number or (expr.is_Function and not isinstance(expr, MatProd)))


def _tensor_factors(expr: sympy.Expr) -> tuple[sympy.Expr, list[sympy.Expr]]:
    """The numeric coefficient and the other factors, matrix products first (as in (Wᵀ δ) ⊙ f')."""
    factors = list(sympy.Mul.make_args(expr))
    coeff = sympy.Mul(*[f for f in factors if _numeric(f)])
    rest = [f for f in factors if not _numeric(f)]
    rest.sort(key=lambda f: not f.has(MatProd))
    return coeff, rest


#: A sum of more terms keeps SymPy's stored order of its terms: ordering them for print
#: compares each term's degree in every symbol of the sum, O(n^2) for n terms.
MAX_ORDERED_TERMS = 64


def _ordered_terms(printer: Any, base: Any, expr: sympy.Expr, order: Any) -> list[sympy.Expr]:
    """The terms of a sum in print order (positive first), as ``base``'s printer orders them, if few."""
    if len(expr.args) > MAX_ORDERED_TERMS:
        return _positive_first(list(expr.args))
    return _positive_first(base._as_ordered_terms(printer, expr, order))


def _positive_first(terms: list[sympy.Expr]) -> list[sympy.Expr]:
    """softmax(z) - y rather than -y + softmax(z)."""
    return sorted(terms, key=lambda t: bool(t.could_extract_minus_sign()))


class TextPrinter(StrPrinter):
    """Unicode one-line notation: z₁ = W₁ x, δ₂ = (W₂ᵀ δ₃) ⊙ (1 - h₂²)."""

    def _as_ordered_terms(self, expr: sympy.Expr, order: Any = None) -> list[sympy.Expr]:
        return _ordered_terms(self, StrPrinter, expr, order)

    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        base, index = _split_name(expr.name)
        base = _GREEK.get(base, base)
        return base + (index.translate(_SUB) if index.isdigit() else (f"_{index}" if index else ""))

    def _print_Function(self, expr: Any) -> str:
        name = type(expr).__name__
        args = ", ".join(self._print(a) for a in expr.args)
        return f"{_GREEK.get(name, name)}({args})"

    def _atom(self, expr: sympy.Expr) -> str:
        text = self._print(expr)
        return text if _simple(expr) else f"({text})"

    def _print_MatProd(self, expr: MatProd) -> str:
        return " ".join(self._atom(a) for a in expr.args)

    def _print_T(self, expr: T) -> str:
        return self._atom(expr.args[0]) + "ᵀ"

    def _print_BatchSum(self, expr: BatchSum) -> str:
        return "Σ_b " + self._atom(expr.args[0])

    def _print_Grad(self, expr: Grad) -> str:
        return f"∂L/∂{self._print(expr.args[0])}"

    def _print_Total(self, expr: Total) -> str:
        return f"sum({self._print(expr.args[0])})"

    def _print_Part(self, expr: Part) -> str:
        return f"{self._atom(expr.args[0])}[{expr.args[1].name}]"

    def _print_Average(self, expr: Average) -> str:
        return f"mean({self._print(expr.args[0])})"

    def _print_Option(self, expr: Option) -> str:
        return str(expr.args[0].name)

    def _print_Deriv(self, expr: Deriv) -> str:
        f, *args = expr.args
        return f"{_GREEK.get(f.name, f.name)}'({', '.join(self._print(a) for a in args)})"

    def _print_BatchMean(self, expr: BatchMean) -> str:
        return "mean_b " + self._atom(expr.args[0])

    def _print_Pow(self, expr: sympy.Pow, rational: bool = False) -> str:
        base, exp = expr.args
        if exp.is_Integer and 1 < int(exp) < 10:
            return self._atom(base) + str(int(exp)).translate(_SUP)
        return super()._print_Pow(expr, rational)

    def _print_Mul(self, expr: sympy.Mul) -> str:
        numer, denom = sympy.fraction(expr, exact=True)
        if denom != 1:
            den = self._print(denom) if denom.is_Atom else f"({self._print(denom)})"
            num = self._product(numer)
            return f"({num})/{den}" if numer.is_Add else f"{num}/{den}"
        return self._product(expr)

    def _product(self, expr: sympy.Expr) -> str:
        coeff, tensors = _tensor_factors(expr)
        if coeff == 1 and len(tensors) == 1:
            return self._print(tensors[0])
        parts = [self._atom(f) for f in tensors]
        head = "-" if coeff == -1 else ("" if coeff == 1 else self._number(coeff) + " ")
        return head + " ⊙ ".join(parts) if parts else self._number(coeff)

    def _number(self, coeff: sympy.Expr) -> str:
        # A product of numbers (-sin(1/2)) printed the plain way: our _print_Mul would
        # split it into the same coefficient again, forever.
        return str(StrPrinter._print_Mul(self, coeff)) if coeff.is_Mul else self._print(coeff)


class MathPrinter(LatexPrinter):
    """LaTeX notation: ``\\delta_{2} = \\left(W_{2}^{T} \\delta_{3}\\right) \\odot ...``."""

    def _as_ordered_terms(self, expr: sympy.Expr, order: Any = None) -> list[sympy.Expr]:
        return _ordered_terms(self, LatexPrinter, expr, order)

    def _print_Symbol(self, expr: sympy.Symbol, style: str = "plain") -> str:
        base, index = _split_name(expr.name)
        greek = {"delta": r"\delta", "ell": r"\ell", "yhat": r"\hat{y}"}.get(
            base, base if len(base) == 1 else rf"\mathrm{{{base}}}"
        )
        if index and not index.isdigit():
            index = rf"\mathrm{{{index}}}".replace("_", r"\_")
        return greek + (f"_{{{index}}}" if index else "")

    def _wrap(self, expr: sympy.Expr) -> str:
        text = self._print(expr)
        return text if _simple(expr) else rf"\left({text}\right)"

    def _print_MatProd(self, expr: MatProd) -> str:
        return " ".join(self._wrap(a) for a in expr.args)

    def _print_T(self, expr: T) -> str:
        return f"{self._wrap(expr.args[0])}^{{T}}"

    def _print_BatchSum(self, expr: BatchSum) -> str:
        return rf"\sum_{{b}} {self._wrap(expr.args[0])}"

    def _print_Grad(self, expr: Grad) -> str:
        return rf"\frac{{\partial L}}{{\partial {self._print(expr.args[0])}}}"

    def _print_Total(self, expr: Total) -> str:
        return rf"\operatorname{{sum}}\left({self._print(expr.args[0])}\right)"

    def _print_Part(self, expr: Part) -> str:
        return rf"{self._wrap(expr.args[0])}\left[{expr.args[1].name}\right]"

    def _print_Average(self, expr: Average) -> str:
        return rf"\operatorname{{mean}}\left({self._print(expr.args[0])}\right)"

    def _print_Option(self, expr: Option) -> str:
        name, _, value = str(expr.args[0].name).partition(" = ")
        return rf"\mathrm{{{name}}} = {value}"

    def _print_Deriv(self, expr: Deriv) -> str:
        f, *args = expr.args
        name = {"sigmoid": r"\sigma", "tanh": r"\tanh", "exp": r"\exp", "log": r"\log"}.get(
            f.name, rf"\operatorname{{{f.name}}}".replace("_", r"\_")
        )
        return rf"{name}'\left({', '.join(self._print(a) for a in args)}\right)"

    def _print_BatchMean(self, expr: BatchMean) -> str:
        return rf"\frac{{1}}{{B}} \sum_{{b}} {self._wrap(expr.args[0])}"

    def _print_sigmoid(self, expr: Any, exp: Any = None) -> str:
        return rf"\sigma\left({self._print(expr.args[0])}\right)"

    def _print_Function(self, expr: Any, exp: Any = None) -> str:
        name = type(expr).__name__
        if name in ("tanh", "exp", "log", "sin", "cos", "sqrt", "Abs"):
            return super()._print_Function(expr, exp)
        args = ", ".join(self._print(a) for a in expr.args)
        escaped = name.replace("_", "\\_")
        return rf"\operatorname{{{escaped}}}\left({args}\right)"

    def _print_Mul(self, expr: sympy.Mul) -> str:
        numer, denom = sympy.fraction(expr, exact=True)
        if denom != 1:
            return rf"\frac{{{self._product(numer)}}}{{{self._print(denom)}}}"
        return self._product(expr)

    def _product(self, expr: sympy.Expr) -> str:
        coeff, tensors = _tensor_factors(expr)
        if coeff == 1 and len(tensors) == 1:
            return self._print(tensors[0])
        parts = [self._wrap(f) for f in tensors]
        head = "-" if coeff == -1 else ("" if coeff == 1 else self._number(coeff) + " ")
        return head + r" \odot ".join(parts) if parts else self._number(coeff)

    def _number(self, coeff: sympy.Expr) -> str:
        # See TextPrinter._number.
        return str(LatexPrinter._print_Mul(self, coeff)) if coeff.is_Mul else self._print(coeff)


def text(expr: sympy.Expr) -> str:
    return TextPrinter().doprint(expr)


def latex(expr: sympy.Expr) -> str:
    return MathPrinter().doprint(expr)
