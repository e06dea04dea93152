"""Predictions of a trained model, and class labels for classifiers."""

from __future__ import annotations

import numpy as np

from dlc.graph.graph import Graph
from dlc.graph.nodes import Loss


def _loss_kinds(graph: Graph) -> set[str]:
    return {n.kind for n in graph.nodes() if isinstance(n, Loss)}


def _output_is_logit(graph: Graph) -> bool:
    """A bce_with_logits model whose output is the logit itself (threshold 0, not 0.5)."""
    return any(
        isinstance(n, Loss) and n.kind == "bce_logits" and n.inputs[0] is graph.output for n in graph.nodes()
    )


def class_labels(graph: Graph, out: np.ndarray) -> np.ndarray | None:
    """The class of each example from the model's output, or None if the model is no classifier.

    Softmax cross-entropy: the index of the largest score. Binary cross-entropy
    with one output: 1 where the probability is over 0.5 (the logit over 0).
    """
    kinds = _loss_kinds(graph)
    values = np.asarray(out).reshape(len(out), -1)
    if "softmax_ce" in kinds:
        return np.argmax(values, axis=1)
    if kinds & {"bce", "bce_logits"} and values.shape[1] == 1:
        return (values[:, 0] > (0.0 if _output_is_logit(graph) else 0.5)).astype(int)
    return None


def target_labels(graph: Graph, Y: np.ndarray) -> np.ndarray:
    """The class of each example from its target (one-hot or 0/1)."""
    values = np.asarray(Y).reshape(len(Y), -1)
    if "softmax_ce" in _loss_kinds(graph):
        return np.argmax(values, axis=1)
    return (values[:, 0] > 0.5).astype(int)


def predictions_csv(graph: Graph, out: np.ndarray) -> str:
    """One row per example: the output's values, then the class label for classifiers."""
    values = np.asarray(out).reshape(len(out), -1)
    header = [f"output{i}" for i in range(values.shape[1])] if values.shape[1] > 1 else ["output"]
    labels = class_labels(graph, values)
    if labels is not None:
        header.append("label")
    rows = [",".join(header)]
    for i, row in enumerate(values):
        fields = [repr(float(v)) for v in row] + ([str(int(labels[i]))] if labels is not None else [])
        rows.append(",".join(fields))
    return "\n".join(rows) + "\n"
