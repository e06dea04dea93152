"""Ops that the backends compute together: one decision, which both backends follow.

A softmax cross-entropy of logits z, and softmax(z) (which its gradient
needs), both start with exp(z - max z): computed together they take one
pass of exp instead of two. :func:`softmax_pairs` says which losses pair
with which softmax; a backend then only decides when to compute a pair
(where the loss is, unless something reads the softmax earlier).
"""

from __future__ import annotations

from collections.abc import Iterable

from dlc.graph.nodes import Loss, Node, Softmax


def softmax_pairs(nodes: Iterable[Node]) -> dict[Node, Node]:
    """Each softmax cross-entropy (per example, over a batch) whose logits' softmax is also among ``nodes``.

    Not paired: a loss whose target is that very softmax (it is read before the
    loss is computed), and losses of parameters alone (no batch axis).
    """
    listed = list(nodes)
    softmax = {n.inputs[0]: n for n in listed if isinstance(n, Softmax) and n.batched}
    return {
        n: softmax[n.inputs[0]]
        for n in listed
        if isinstance(n, Loss)
        and n.kind == "softmax_ce"
        and n.batched
        and n.inputs[0] in softmax
        and softmax[n.inputs[0]] not in n.inputs
    }
