"""A printed elementwise body rewritten to build its result in one array.

As one expression, ``t2*(1 - h2**2)`` allocates three arrays (``h2**2``,
``1 - h2**2``, the product). As a chain it allocates one and updates it in
place::

    t3 = h2**2
    np.subtract(1, t3, out=t3)
    t3 *= t2

and none when a dead input of the result's shape can hold the first step
(``h1 = np.add(b1, z1, out=z1)`` then ``np.tanh(h1, out=h1)``). Every step
is the very operation of the expression on the very operands (only the two
sides of a ``+`` or ``*`` may swap, which is exact), so the result has the
same bits; it does keep the memory layout of the array it reuses, which can
make a later matrix product add in another order (a rounding difference).
The rewrite works on the printed text's Python syntax tree; what it does
not know stays one expression.

Shapes are tuples with ``BATCH`` for the batch axis, aligned from the right
as NumPy broadcasts.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from dlc.backends.numpy.printer import HELPERS, TENSOR_HELPERS

Shape = tuple[int, ...]
BATCH = -1

#: Binary operators as the ufuncs they call, and which of them may swap sides.
UFUNC = {ast.Add: "np.add", ast.Sub: "np.subtract", ast.Mult: "np.multiply", ast.Div: "np.divide"}
AUGMENTED = {ast.Add: "+=", ast.Sub: "-=", ast.Mult: "*=", ast.Div: "/="}
COMMUTATIVE = (ast.Add, ast.Mult)
#: Functions of one array that are ufuncs with a float result (so they take ``out=``).
UNARY = {"abs": "np.abs"} | {
    f"np.{f}": f"np.{f}"
    for f in (
        "abs", "exp", "expm1", "exp2", "log", "log1p", "log2", "log10", "sqrt", "cbrt", "sin", "cos",
        "tan", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh",
        "sign", "floor", "ceil",
    )
}  # fmt: skip
#: Calls that always return a new float array (never a view of an argument).
FRESH_CALLS = {*UNARY, *HELPERS, *TENSOR_HELPERS, "np.select", "np.where", "np.concatenate", "np.logaddexp",
               "np.arctan2", "np.maximum", "np.minimum", "np.power", "np.clip"}  # fmt: skip
FRESH_METHODS = {"sum", "mean", "max", "min", "prod", "astype"}


def fresh(expr: str) -> bool:
    """Whether the expression's value is always an array of its own (for a result of rank >= 1).

    Operators, ufuncs, the helpers and reductions allocate their result;
    a name, a subscript or an unknown call may share memory with an input.
    """
    return _fresh(ast.parse(expr, mode="eval").body)


def _fresh(e: ast.expr) -> bool:
    if isinstance(e, ast.BinOp):
        return isinstance(e.op, (*UFUNC, ast.Pow, ast.MatMult))
    if isinstance(e, ast.UnaryOp):
        return isinstance(e.op, ast.USub)
    if isinstance(e, ast.Call):
        f = e.func
        if isinstance(f, ast.Attribute) and f.attr in FRESH_METHODS and not _is_np(f.value):
            return True
        return ast.unparse(f) in FRESH_CALLS
    if isinstance(e, ast.Attribute) and e.attr == "T":  # the transpose of an array nothing else sees
        return _fresh(e.value)
    return False


def _is_np(e: ast.expr) -> bool:
    return isinstance(e, ast.Name) and e.id == "np"


def broadcast(*shapes: Shape | None) -> Shape | None:
    """NumPy's broadcast of shapes (BATCH is a size of its own); None if unknown or incompatible."""
    if any(s is None for s in shapes):
        return None
    rank = max((len(s) for s in shapes if s is not None), default=0)
    dims = [1] * rank
    for s in shapes:
        assert s is not None
        for i, d in enumerate(s, start=rank - len(s)):
            if dims[i] == 1:
                dims[i] = d
            elif d not in (1, dims[i]):
                return None
    return tuple(dims)


@dataclass
class Shapes:
    """The shape of every leaf (an input's text, a temporary's name; None if unknown).

    Any other name (a module constant, ``B``) is a scalar.
    """

    leaves: dict[str, Shape | None] = field(default_factory=dict)

    def of(self, e: ast.expr) -> Shape | None:
        if isinstance(e, (ast.Name, ast.Subscript)):
            text = ast.unparse(e)
            if text in self.leaves:
                return self.leaves[text]
            return () if isinstance(e, ast.Name) else None  # a module constant, B; an unknown subscript
        if isinstance(e, (ast.Constant, ast.Attribute)):
            return () if isinstance(e, ast.Constant) or _is_np(e.value) else None
        if isinstance(e, ast.Call):
            return broadcast(*(self.of(a) for a in e.args), *(self.of(k.value) for k in e.keywords))
        if isinstance(e, (ast.List, ast.Tuple)):
            return broadcast(*(self.of(a) for a in e.elts))
        return broadcast(*(self.of(c) for c in ast.iter_child_nodes(e) if isinstance(c, ast.expr)))

    def define(self, line: str) -> None:
        """Record the shape of a temporary from its assignment ``name = expr``."""
        (stmt,) = ast.parse(line).body
        assert isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name)
        self.leaves[stmt.targets[0].id] = self.of(stmt.value)


@dataclass
class _First:
    """The chain's first operation: as an expression, and as a ufunc call that can take ``out=``."""

    text: str
    ufunc: str | None = None  # with "{out}" where ", out=..." goes
    operands: list[ast.expr] = field(default_factory=list)


@dataclass
class _Plan:
    first: _First
    steps: list[str] = field(default_factory=list)  # in-place statements, "{o}" for the result's name


def chain(
    expr: str, shapes: Shapes, full: Shape, name: str, targets: list[str], floats: set[str]
) -> tuple[list[str], str | None] | None:
    """Statements that compute ``expr`` into ``name`` with fewer new arrays, and the target they overwrite.

    None if the expression is best left as it is.

    Args:
        expr: the printed body (its temporaries already defined in ``shapes``).
        shapes: the shapes of its leaves.
        full: the result's shape.
        name: the variable that receives the result.
        targets: dead float inputs with the result's shape, that the result may overwrite.
        floats: the leaves that are surely float arrays. The first step must read
            one: a caller may pass integer X or Y, and the later steps could not
            write a float into an integer array.
    """
    tree = ast.parse(expr, mode="eval").body
    plan = _Planner(expr, shapes, full).plan(tree)
    if plan is None or not any(_reads_any(o, floats) for o in plan.first.operands):
        return None
    target = next((t for t in targets if _only_in(t, tree, plan.first)), None)
    if target is not None:
        assert plan.first.ufunc is not None
        first = plan.first.ufunc.format(out=f", out={target}")
        head = f"{name} = {first}  # in {target}'s memory ({target} is not read again)"
    elif plan.steps:
        head = f"{name} = {plan.first.text}"
    else:
        return None  # one operation and nowhere to put it: the expression as it is
    return [head, *(s.format(o=name) for s in plan.steps)], target


def _only_in(target: str, tree: ast.expr, first: _First) -> bool:
    """Whether the first operation reads ``target`` and nothing after it does (so it may overwrite it)."""
    if first.ufunc is None:
        return False
    inside = sum(_reads(target, o) for o in first.operands)
    return inside > 0 and inside == _reads(target, tree)


def reads_any(expr: str, leaves: set[str]) -> bool:
    """Whether the expression reads one of ``leaves``."""
    return _reads_any(ast.parse(expr, mode="eval"), leaves)


def _reads_any(e: ast.AST, leaves: set[str]) -> bool:
    return any(isinstance(n, (ast.Name, ast.Subscript)) and ast.unparse(n) in leaves for n in ast.walk(e))


def _reads(target: str, e: ast.expr) -> int:
    return sum(isinstance(n, ast.Name) and n.id == target for n in ast.walk(e))


def _compound(e: ast.expr) -> bool:
    return isinstance(e, (ast.BinOp, ast.UnaryOp, ast.Call))


@dataclass
class _Planner:
    source: str
    shapes: Shapes
    full: Shape

    def text(self, e: ast.expr) -> str:
        """A part of the expression as the printer wrote it."""
        return ast.get_source_segment(self.source, e) or ast.unparse(e)

    def plan(self, e: ast.expr) -> _Plan | None:
        """How to build ``e`` (which has the result's shape) in one array; None if not at all."""
        if self.shapes.of(e) != self.full or not _compound(e):
            return None
        if isinstance(e, ast.BinOp) and type(e.op) in UFUNC:
            for seed, other, left in ((e.left, e.right, True), (e.right, e.left, False)):
                inner = self.plan(seed) or self.opaque(seed)
                if inner is not None:
                    inner.steps.append(_combine(e.op, self.text(other), left))
                    return inner
            ufunc = f"{UFUNC[type(e.op)]}({self.text(e.left)}, {self.text(e.right)}{{out}})"
            return _Plan(_First(self.text(e), ufunc, [e.left, e.right]))
        if isinstance(e, ast.BinOp) and isinstance(e.op, ast.Pow) and _is_two(e.right):
            return self.unary(e, e.left, "np.square")
        if isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.USub):
            return self.unary(e, e.operand, "np.negative")
        if isinstance(e, ast.Call) and ast.unparse(e.func) in UNARY and len(e.args) == 1 and not e.keywords:
            return self.unary(e, e.args[0], UNARY[ast.unparse(e.func)])
        return None

    def unary(self, e: ast.expr, arg: ast.expr, ufunc: str) -> _Plan:
        inner = self.plan(arg) or self.opaque(arg)
        if inner is not None:
            inner.steps.append(f"{ufunc}({{o}}, out={{o}})")
            return inner
        return _Plan(_First(self.text(e), f"{ufunc}({self.text(arg)}{{out}})", [arg]))

    def opaque(self, e: ast.expr) -> _Plan | None:
        """A part the chain cannot split (a helper call): it starts the chain if it makes a new array."""
        if _compound(e) and _fresh(e) and self.shapes.of(e) == self.full:
            return _Plan(_First(self.text(e), operands=[e]))
        return None


def _combine(op: ast.operator, other: str, seed_left: bool) -> str:
    """The in-place step ``o = o op other`` (seed on the left) or ``o = other op o``."""
    if seed_left or isinstance(op, COMMUTATIVE):
        return f"{{o}} {AUGMENTED[type(op)]} {other}"
    return f"{UFUNC[type(op)]}({other}, {{o}}, out={{o}})"


def _is_two(e: ast.expr) -> bool:
    return isinstance(e, ast.Constant) and type(e.value) in (int, float) and e.value == 2
