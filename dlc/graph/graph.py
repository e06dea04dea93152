"""The whole model as a graph: its leaves, its roots, and how it trains.

:class:`Builder` creates nodes so that structurally equal ones are shared
(common-subexpression elimination at construction); :class:`Graph` holds the
result and walks it in topological order without recursion.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sympy

from dlc.graph.nodes import Elementwise, Input, Node, Param, broadcast
from dlc.graph.optimizer import Optimizer
from dlc.graph.scalar import as_real, element_symbol, float_roots, stable_forms, substitute_real

N = TypeVar("N", bound=Node)


@dataclass(frozen=True)
class TrainConfig:
    """The model file's training section, with defaults for what it leaves out."""

    optimizer: Optimizer | None = None  # the front end always chooses one (sgd by default)
    batch_size: int = 32
    epochs: int = 10
    seed: int = 0
    data: str | None = None  # a built-in dataset to train on when none is given
    patience: int | None = None  # epochs without a better validation loss before training stops


@dataclass(frozen=True)
class Graph:
    """A checked model.

    Attributes:
        name: the model's name.
        inputs: the per-example inputs, in declaration order (none, one or several).
        targets: the per-example targets, in declaration order.
        params: the trainable parameters, in declaration order.
        outputs: what ``predict`` returns, by name, in declaration order; a model's
            single unnamed output (``output EXPR``) is named ``output``.
        loss: the scalar loss (a mean over the batch when it depends on the data).
        train: the training settings.
        names: user-given names of intermediate nodes (``h = ...``) and constants.
        activations: the user's elementwise functions (``swish(z) = z * sigmoid(z)``):
            name -> (argument symbols, scalar body).
        named_outputs: whether the outputs were named (``output probs = ...``): then
            ``predict`` gives a dict by name, else the one output's array.
    """

    name: str
    inputs: tuple[Input, ...]
    targets: tuple[Input, ...]
    params: tuple[Param, ...]
    outputs: dict[str, Node]
    loss: Node
    train: TrainConfig = TrainConfig()
    names: dict[Node, str] = field(default_factory=dict)
    activations: dict[str, tuple[tuple[sympy.Symbol, ...], sympy.Expr]] = field(default_factory=dict)
    named_outputs: bool = False

    @property
    def roots(self) -> tuple[Node, ...]:
        return (*self.outputs.values(), self.loss)

    @property
    def data(self) -> tuple[Input, ...]:
        """The leaves fed per example: inputs, then targets (the order of CSV columns and slots)."""
        return (*self.inputs, *self.targets)

    def nodes(self) -> list[Node]:
        """Every node reachable from the roots, each after its inputs."""
        return topological_order(self.roots)

    def consumers(self) -> dict[Node, list[Node]]:
        """For every node, the nodes that take it as an input (each listed once)."""
        return consumers(self.roots)


def consumers(roots: Iterable[Node]) -> dict[Node, list[Node]]:
    """For every node below ``roots``, the nodes that take it as an input (each listed once)."""
    users: dict[Node, list[Node]] = {}
    for node in topological_order(roots):
        users.setdefault(node, [])
        for inp in dict.fromkeys(node.inputs):
            users.setdefault(inp, []).append(node)
    return users


def topological_order(roots: Iterable[Node]) -> list[Node]:
    """Post-order depth-first walk from ``roots``, iterative, deterministic."""
    order: list[Node] = []
    seen: set[Node] = set()
    for root in roots:
        stack: list[tuple[Node, bool]] = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if node in seen:
                continue
            seen.add(node)
            stack.append((node, True))
            stack.extend((i, False) for i in reversed(node.inputs) if i not in seen)
    return order


class Builder:
    """Makes nodes, sharing structurally equal ones."""

    def __init__(self) -> None:
        self._memo: dict[tuple[Any, ...], Node] = {}

    def __len__(self) -> int:
        """How many distinct nodes this builder has made."""
        return len(self._memo)

    def add(self, node: N) -> N:
        if isinstance(node, Elementwise):
            node = canonical_elementwise(node)  # type: ignore[assignment]
            if _is_identity(node):
                return node.inputs[0]  # type: ignore[return-value]
        shared = self._memo.setdefault(node.key(), node)
        return shared  # type: ignore[return-value]


def _is_identity(node: Elementwise) -> bool:
    """``x0`` of a single input of the same shape: the input itself."""
    return (
        node.expr == element_symbol(0)
        and len(node.inputs) == 1
        and (node.inputs[0].shape, node.inputs[0].batched) == (node.shape, node.batched)
    )


def canonical_elementwise(node: Elementwise) -> Elementwise:
    """Inline numeric inputs, merge repeated inputs, drop inputs the body ignores; stable forms.

    An ignored input is kept when dropping it would change the node's shape,
    since it still says how far the value broadcasts.
    """
    expr: sympy.Expr = stable_forms(node.expr)
    if expr is not node.expr:
        node = Elementwise(node.inputs, node.shape, node.batched, expr)
    inlined = {
        element_symbol(i): inp.expr
        for i, inp in enumerate(node.inputs)
        if isinstance(inp, Elementwise) and not inp.inputs
    }
    if inlined:
        # A number may make the body complex (log(-1) = I*pi); real arithmetic gives nan,
        # which the front end refuses where it sees the numbers alone.
        expr = as_real(float_roots(float_roots(expr, inlined).xreplace(inlined)))
    kept, renumber = _kept_inputs(node, expr, set(inlined), merge=True)
    shape = broadcast(*(k.shape for k in kept)) if kept else ()
    if shape != node.shape or any(k.batched for k in kept) != node.batched:
        return node if not inlined else Elementwise(node.inputs, node.shape, node.batched, expr)
    if not renumber and len(kept) == len(node.inputs) and not inlined:
        return node
    merged = substitute_real(expr, renumber)
    if merged is None:  # sqrt(-x0*x1) of one input twice would be I*|x0| (see substitute_real)
        kept, renumber = _kept_inputs(node, expr, set(inlined), merge=False)
        merged = expr.xreplace(renumber)
    return Elementwise(tuple(kept), node.shape, node.batched, merged)


def _kept_inputs(
    node: Elementwise, expr: sympy.Expr, inlined: set[sympy.Symbol], merge: bool
) -> tuple[list[Node], dict[sympy.Symbol, sympy.Expr]]:
    """The inputs ``expr`` reads (an input given twice once, if ``merge``), and their new symbols."""
    kept: list[Node] = []
    renumber: dict[sympy.Symbol, sympy.Expr] = {}
    free = expr.free_symbols
    for i, inp in enumerate(node.inputs):
        sym = element_symbol(i)
        if sym in inlined or sym not in free:
            continue
        if not (merge and inp in kept):
            kept.append(inp)
        renumber[sym] = element_symbol(kept.index(inp) if merge else len(kept) - 1)
    return kept, renumber
