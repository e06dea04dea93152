"""Predictions of a trained model, and class labels for classifiers."""

from __future__ import annotations

import numpy as np

from dlc.graph.graph import Graph
from dlc.graph.nodes import Input, Loss, Softmax

#: Loss kinds whose prediction is a vector of class scores.
SOFTMAX_KINDS = frozenset({"softmax_ce", "softmax_ce_index"})


def _loss_kinds(graph: Graph) -> set[str]:
    return {n.kind for n in graph.nodes() if isinstance(n, Loss)}


def _output_is_logit(graph: Graph) -> bool:
    """A bce_with_logits model whose output is the logit itself (threshold 0, not 0.5)."""
    return any(
        isinstance(n, Loss) and n.kind == "bce_logits" and n.inputs[0] in graph.outputs.values()
        for n in graph.nodes()
    )


def _simple(graph: Graph) -> bool:
    """One unnamed output and at most one target, not of class indices: labels as they always were."""
    return not graph.named_outputs and len(graph.targets) <= 1 and not any(t.classes for t in graph.targets)


def classifier(graph: Graph) -> tuple[str, Input] | None:
    """(the output, the target) that accuracy compares, or None if the model classifies nothing.

    A model of one output and one target compares them if its loss is a
    classification loss (see :func:`class_labels`); any other model, the
    output that is the class scores z of a softmax cross-entropy against a
    target (or softmax(z)), with that target.
    """
    if _simple(graph):
        return ("output", graph.targets[0]) if graph.outputs and graph.targets else None
    for n in graph.nodes():
        if isinstance(n, Loss) and n.kind in SOFTMAX_KINDS and n.inputs[1] in graph.targets:
            z = n.inputs[0]
            for name, out in graph.outputs.items():
                if out is z or (isinstance(out, Softmax) and out.inputs[0] is z):
                    return name, n.inputs[1]
    return None


def compared(
    graph: Graph, out: np.ndarray, Y: np.ndarray, target: Input
) -> tuple[np.ndarray, np.ndarray] | None:
    """(predicted classes, true classes) of a batch, for the pair :func:`classifier` found."""
    if _simple(graph):
        predicted = class_labels(graph, out)
        return None if predicted is None else (predicted, target_labels(graph, Y))
    scores = np.asarray(out).reshape(len(out), -1)
    truth = (
        np.asarray(Y).astype(np.int64) if target.classes else np.argmax(np.reshape(Y, (len(Y), -1)), axis=1)
    )
    return np.argmax(scores, axis=1), truth


def class_labels(graph: Graph, out: np.ndarray) -> np.ndarray | None:
    """The class of each example from the model's output, or None if the model is no classifier.

    Softmax cross-entropy: the index of the largest score. Binary cross-entropy
    with one output: 1 where the probability is over 0.5 (the logit over 0).
    """
    kinds = _loss_kinds(graph)
    values = np.asarray(out).reshape(len(out), -1)
    if kinds & SOFTMAX_KINDS:
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


def predictions_csv(graph: Graph, out: np.ndarray | dict[str, np.ndarray]) -> str:
    """One row per example: the output's values, then the class label for classifiers.

    Named outputs give a group of columns each, in declaration order: ``probs_0,
    probs_1, ...`` for a vector, ``value`` for a single number.
    """
    if isinstance(out, dict):
        return _named_csv(out)
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


def _named_csv(outputs: dict[str, np.ndarray]) -> str:
    groups = [np.asarray(v).reshape(len(v), -1) for v in outputs.values()]
    header = []
    for name, values in zip(outputs, groups, strict=True):
        size = values.shape[1]
        header += [f"{name}_{i}" for i in range(size)] if size != 1 else [name]
    table = np.concatenate(groups, axis=1) if groups else np.zeros((0, 0))
    rows = [",".join(header)] + [",".join(repr(float(v)) for v in row) for row in table]
    return "\n".join(rows) + "\n"
