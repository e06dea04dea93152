"""Symbolic differentiation: the gradient of the loss with respect to every parameter.

:func:`differentiate` runs the reverse sweep of :mod:`dlc.grad.backprop`
(rules in :mod:`dlc.grad.rules`) and fuses the result, giving a
:class:`Program`: forward values, loss and gradients in one shared graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from dlc.grad.backprop import backward
from dlc.grad.rules import ew
from dlc.graph import ops
from dlc.graph.fuse import fuse_nodes
from dlc.graph.graph import Builder, Graph, topological_order
from dlc.graph.nodes import Node, Param, ReduceKind, Tangent
from dlc.recursion import deep_recursion


@dataclass(frozen=True)
class Program:
    """A model's forward pass and its gradients, sharing nodes.

    Attributes:
        graph: the forward graph (with ``output`` and ``loss`` remapped into this program).
        grads: parameter name -> gradient node (same shape as the parameter).
        extra: further named roots (Hessian-vector products use it).
    """

    graph: Graph
    grads: dict[str, Node]
    extra: dict[str, Node]

    @property
    def roots(self) -> tuple[Node, ...]:
        return (*self.graph.roots, *self.grads.values(), *self.extra.values())

    def nodes(self) -> list[Node]:
        return topological_order(self.roots)


def differentiate(graph: Graph) -> Program:
    """Derive dL/dθ for every parameter θ of ``graph``; returns the fused program."""
    with deep_recursion():
        builder = Builder()
        grads = backward(graph.loss, graph.params, builder)
        named = {p.name: grads[p] for p in graph.params}
        return _fused(graph, named, {})


def hessian_vector_program(graph: Graph) -> Program:
    """The program of H·v: for tangent leaves ``v:<name>``, ``extra['hvp:<name>']`` is (H v)_θ.

    H is the Hessian of the loss in all parameters together; v is fed as one
    tangent per parameter. It is the gradient of <∇L, v>, so it comes from
    differentiating the gradient graph a second time.
    """
    with deep_recursion():
        builder = Builder()
        grads = backward(graph.loss, graph.params, builder)
        terms = []
        for p in graph.params:
            v = builder.add(ops.tangent(f"v:{p.name}", p.shape))
            product = ew(builder, lambda a, b: a * b, grads[p], v)
            terms.append(builder.add(ops.reduce_axes(ReduceKind.SUM, product, tuple(range(len(p.shape))))))
        inner = ew(builder, lambda *xs: sympy.Add(*xs), *terms) if len(terms) > 1 else terms[0]
        second = backward(inner, graph.params, builder)
        extra = {f"hvp:{p.name}": second[p] for p in graph.params}
        return _fused(graph, {p.name: grads[p] for p in graph.params}, extra)


def _fused(graph: Graph, grads: dict[str, Node], extra: dict[str, Node]) -> Program:
    roots = (*graph.roots, *grads.values(), *extra.values())
    new = fuse_nodes(roots)
    forward = Graph(
        name=graph.name,
        inputs=graph.inputs,
        targets=graph.targets,
        params=graph.params,
        outputs={k: new[v] for k, v in graph.outputs.items()},
        loss=new[graph.loss],
        train=graph.train,
        names={new[n]: name for n, name in graph.names.items() if n in new},
        named_outputs=graph.named_outputs,
    )
    return Program(
        forward,
        {k: new[v] for k, v in grads.items()},
        {k: new[v] for k, v in extra.items()},
    )


__all__ = ["Param", "Program", "Tangent", "differentiate", "hessian_vector_program"]
