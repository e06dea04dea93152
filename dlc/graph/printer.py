"""Text form of a graph: one line per node, with shapes (``B`` is the batch axis)."""

from __future__ import annotations

import sympy

from dlc.graph.graph import Graph
from dlc.graph.nodes import (
    Constant,
    Elementwise,
    Index,
    Input,
    Loss,
    Node,
    Param,
    Reduce,
    Reshape,
    Slice,
    typed_shape,
)
from dlc.graph.scalar import element_symbol

#: How each loss kind is written in a model file.
LOSS_NAMES = {
    "mse": "mse",
    "bce": "bce",
    "bce_logits": "bce_with_logits",
    "softmax_ce": "softmax_cross_entropy",
    "softmax_ce_index": "softmax_cross_entropy",
}


def node_names(graph: Graph) -> dict[Node, str]:
    """A printable name for every node: leaves and user-named values keep their names."""
    names: dict[Node, str] = {}
    counter = 0
    for node in graph.nodes():
        if isinstance(node, (Input, Param)):
            names[node] = node.name
        elif node in graph.names:
            names[node] = graph.names[node]
        elif isinstance(node, Elementwise) and not node.inputs:
            names[node] = str(node.expr)
        else:
            names[node] = f"%{counter}"
            counter += 1
    return names


def body_text(node: Node, names: dict[Node, str]) -> str:
    """The right-hand side of a node's line: ``matmul(W1, x)``, ``tanh(%0 + b1)``."""
    args = [names[i] for i in node.inputs]
    if isinstance(node, Elementwise):
        # Real symbols, unevaluated: renaming must not send SymPy into its assumption
        # system, which is slow on nested functions of non-real symbols.
        subs = {element_symbol(i): sympy.Symbol(a, real=True) for i, a in enumerate(args)}
        with sympy.evaluate(False):
            return str(node.expr.xreplace(subs))
    if isinstance(node, Constant):
        return f"constant {node.value.tolist()}" if node.size <= 8 else "constant"
    if isinstance(node, Reduce):
        kind = node.kind.value
        if node.batch and not node.axes:
            return f"{kind}_over_batch({args[0]})"
        full = len(node.axes) == len(node.inputs[0].shape)
        axes = "" if full else f", axis={','.join(map(str, node.axes))}"
        return f"{kind}{'_over_batch' if node.batch else ''}({args[0]}{axes})"
    if isinstance(node, Slice):
        step = f":{node.step}" if node.step > 1 else ""
        return f"{args[0]}[{':, ' * node.axis}{node.start}:{node.stop}{step}]"
    if isinstance(node, Index):
        return f"{args[0]}[{':, ' * node.axis}{node.index}]"
    if isinstance(node, Reshape):
        return f"reshape({args[0]}, {list(node.shape)})"
    if isinstance(node, Loss):
        return f"{LOSS_NAMES[node.kind]}({', '.join(args)})"
    attrs = [str(a) for a in node.attrs()]
    return f"{node.op_name}({', '.join(attrs + args)})"


def format_graph(graph: Graph) -> str:
    """The graph as text, leaves first, then each computed node after its inputs."""
    names = node_names(graph)
    lines = [f"model {graph.name}"]
    for leaf in graph.data:
        kind = f" class[{leaf.classes}]" if leaf.classes else ""
        lines.append(f"  {leaf.role:<6} {leaf.name} : {typed_shape(leaf)}{kind}")
    for param in graph.params:
        lines.append(f"  param  {param.name} : {typed_shape(param)} = {param.init}")
    rows = [
        (names[n], body_text(n, names), typed_shape(n))
        for n in graph.nodes()
        if n.inputs or isinstance(n, Constant)
    ]
    width = max((len(a) + len(b) for a, b, _ in rows), default=0) + 3
    for name, body, shape in rows:
        left = f"{name} = {body}"
        lines.append(f"  {left:<{width}} : {shape}")
    for key, node in graph.outputs.items():
        lines.append(f"  output {f'{key} = ' if graph.named_outputs else ''}{names[node]}")
    lines.append(f"  loss   {names[graph.loss]}")
    t = graph.train
    lines.append(
        f"train {t.optimizer.call if t.optimizer else 'sgd'}, "
        f"batch_size={t.batch_size}, epochs={t.epochs}, seed={t.seed}"
        + (f", data={t.data}" if t.data else "")
        + (f", clip_norm={t.optimizer.clip_norm:g}" if t.optimizer and t.optimizer.clip_norm else "")
        + (f", patience={t.patience}" if t.patience is not None else "")
    )
    return "\n".join(lines)
