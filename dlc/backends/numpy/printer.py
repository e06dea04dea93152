"""SymPy elementwise bodies -> NumPy expressions, and the helpers generated modules carry.

The helper functions are copied, by their source text, from
:mod:`dlc.backends.scalar_numpy`, so the generated module and the reference
evaluator compute with the very same code.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import sympy
from sympy.printing.numpy import NumPyPrinter

from dlc.backends import scalar_numpy
from dlc.graph import scalar

#: dlc's own scalar functions; a body that uses one needs its helper in the module.
HELPERS = tuple(scalar.FUNCTIONS)
#: Tensor helpers (softmax, losses), emitted when an op needs them.
TENSOR_HELPERS = (
    "softmax",
    "logsumexp",
    "mse",
    "bce",
    "bce_logits",
    "softmax_ce",
    "softmax_ce_softmax",
    "softmax_ce_index",
    "class_delta",
    "unfold",
    "fold",
    "reduce_first",
)


class BodyPrinter(NumPyPrinter):
    """NumPy code for one elementwise body, writing ``np.`` and dlc's helpers by name."""

    _module = "np"
    _kf: ClassVar[dict[str, str]] = {k: "np." + v.split(".", 1)[1] for k, v in NumPyPrinter._kf.items()}

    def __init__(self) -> None:
        super().__init__({"fully_qualified_modules": True, "allow_unknown_functions": False})
        self.helpers: set[str] = set()

    def _helper(self, expr: Any) -> str:
        name = type(expr).__name__
        self.helpers.add(name)
        return f"{name}({', '.join(self._print(a) for a in expr.args)})"

    # Constants by their np names (the module imports numpy as np, never as numpy).
    def _print_Exp1(self, expr: Any) -> str:  # noqa: N802
        return "np.e"

    def _print_Pi(self, expr: Any) -> str:  # noqa: N802
        return "np.pi"

    def _print_NaN(self, expr: Any) -> str:  # noqa: N802 - a derivative can be undefined (0 ** w)
        return "np.nan"

    def _print_Infinity(self, expr: Any) -> str:  # noqa: N802
        return "np.inf"

    def _print_NegativeInfinity(self, expr: Any) -> str:  # noqa: N802
        return "(-np.inf)"

    def _print_ComplexInfinity(self, expr: Any) -> str:  # noqa: N802 - 1/0: no sign, so not a number
        return "np.nan"

    def _print_Integer(self, expr: Any) -> str:  # noqa: N802 - NumPy has no arbitrary-size ints
        return str(int(expr)) if abs(int(expr)) < 2**53 else _float(expr)

    def _print_Float(self, expr: Any) -> str:  # noqa: N802
        return _float(expr)

    def _print_Rational(self, expr: Any) -> str:  # noqa: N802
        small = abs(expr.p) < 2**53 and expr.q < 2**53
        return f"({expr.p}/{expr.q})" if small else _float(expr)

    # Python parses ``a + b + c`` as ((a + b) + c): a sum of a few thousand terms nests too
    # deeply for its parser (RecursionError at import). A long sum or product is printed as
    # a balanced tree of brackets instead, nesting log2(n) deep; the same operations, but
    # added in another order (a rounding difference only).
    def _print_Add(self, expr: Any, order: Any = None) -> str:  # noqa: N802
        if len(expr.args) <= MAX_FLAT_TERMS:
            return str(super()._print_Add(expr, order))
        return self._balanced(expr, " + ")

    def _print_Mul(self, expr: Any) -> str:  # noqa: N802
        if len(expr.args) <= MAX_FLAT_TERMS:
            return str(super()._print_Mul(expr))
        return self._balanced(expr, "*")

    def _balanced(self, expr: Any, op: str) -> str:
        """``expr``'s terms (in SymPy's fixed order) in two halves, each printed in brackets."""
        args, half = expr.args, len(expr.args) // 2
        left, right = (type(expr)(*part, evaluate=False) for part in (args[:half], args[half:]))
        return f"({self._print(left)}){op}({self._print(right)})"

    def _print_Pow(self, expr: Any, rational: bool = False) -> str:  # noqa: N802 - SymPy's dispatch name
        if expr.exp == -1:
            return f"1/{self.parenthesize(expr.base, 50)}"
        return str(super()._print_Pow(expr, rational))

    def _print_Function(self, expr: Any) -> str:  # noqa: N802 - SymPy's dispatch name
        raise NotImplementedError(f"the NumPy backend cannot print the function {type(expr).__name__}")


# Each of dlc's functions is printed as a call of its helper (SymPy's printer has its own
# forms for some names, such as maximum, which must not be used).
for _name in HELPERS:
    setattr(BodyPrinter, f"_print_{_name}", BodyPrinter._helper)

#: A sum or product of more terms is printed as a balanced tree of brackets.
MAX_FLAT_TERMS = 64


def _float(value: Any) -> str:
    """A number too big for an exact literal: the nearest float, or an infinity past the range."""
    try:
        number = float(value)
    except OverflowError:
        number = float("inf") if value > 0 else float("-inf")
    if number != number:
        return "np.nan"
    if abs(number) == float("inf"):
        return "np.inf" if number > 0 else "(-np.inf)"
    return repr(number)


def print_body(expr: sympy.Expr, args: list[str], temp: str) -> tuple[list[str], str, set[str]]:
    """Lines that compute shared subexpressions, the final expression, and helpers used.

    Args:
        expr: the body over ``x0, x1, ...``.
        args: the NumPy expression for each input (already aligned for broadcasting).
        temp: a prefix for temporaries (unique within the function being written).
    """
    from dlc.graph.scalar import element_symbol

    printer = BodyPrinter()
    # Real symbols and no re-evaluation: renaming must not start SymPy's assumption
    # queries, which take exponential time on nested functions of non-real symbols.
    symbols = {element_symbol(i): sympy.Symbol(a, real=True) for i, a in enumerate(args)}
    temps = sympy.numbered_symbols(f"{temp}_", real=True)
    replacements, (reduced,) = sympy.cse([expr], symbols=temps, order="none")
    if _reached(replacements, reduced) != expr.free_symbols:
        # Rebuilding the body from its shared parts can cancel terms that SymPy kept
        # apart (x*(a - b) + x*(b - a) -> 0): the result would lose the shape and
        # batch axis its inputs give it, so such a body is printed as it stands.
        replacements, reduced = [], expr
    with sympy.evaluate(False):
        renamed = [(name, value.xreplace(symbols)) for name, value in replacements]
        body = reduced.xreplace(symbols)
    # Printed outside that context: under it, ordering the terms of a sum can call
    # evalf on a number such as exp(tanh(1/2) + 1/2), which then recurses without end.
    lines = [f"{name} = {printer.doprint(value)}" for name, value in renamed]
    return lines, printer.doprint(body), printer.helpers


def _reached(replacements: list[tuple[sympy.Symbol, sympy.Expr]], reduced: sympy.Expr) -> set[sympy.Basic]:
    """The body's symbols that the expression ``reduced`` still reads, through the shared parts."""
    reached = set(reduced.free_symbols)
    for name, value in reversed(replacements):
        if name in reached:
            reached |= value.free_symbols
    return reached - {name for name, _ in replacements}


def helper_source(names: set[str]) -> str:
    """The source of the named helpers, in a fixed order."""
    order = [*HELPERS, *TENSOR_HELPERS]
    parts = []
    for name in sorted(names, key=order.index):
        text = inspect.getsource(getattr(scalar_numpy, name))
        parts.append(_strip_annotations(text))
    return "\n\n".join(parts)


def _strip_annotations(text: str) -> str:
    """Drop type hints (they name types the generated module does not import)."""
    lines = text.splitlines()
    head = lines[0]
    name = head[len("def ") : head.index("(")]
    params = []
    for p in head[head.index("(") + 1 : head.rindex(")")].split(","):
        default = "=" + p.split("=", 1)[1].strip() if "=" in p else ""
        params.append(p.split(":")[0].strip() + default)
    return "\n".join([f"def {name}({', '.join(params)}):", *lines[1:]])
