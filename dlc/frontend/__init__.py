"""The front end: model file -> checked, shape-inferred, fused tensor graph.

Stages, in order: :mod:`~dlc.frontend.parser` (text -> AST),
:mod:`~dlc.frontend.declarations` (the table of names),
:mod:`~dlc.frontend.lower` (names, function expansion, shapes -> graph),
:mod:`~dlc.frontend.settings` (the training section); then the graph's own
elementwise fusion.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sympy

from dlc.errors import DlcError, Span
from dlc.frontend import ast
from dlc.frontend.declarations import Declarations, declare
from dlc.frontend.lower import Lowering
from dlc.frontend.parser import MAX_SOURCE_BYTES, parse
from dlc.frontend.settings import train_config
from dlc.graph import nodes
from dlc.graph import ops as g
from dlc.graph.fuse import fuse, fuse_nodes
from dlc.graph.graph import Graph, topological_order
from dlc.graph.scalar import element_symbol
from dlc.recursion import deep_recursion


@dataclass(frozen=True)
class Model:
    """A checked model file.

    Attributes:
        graph: the fused tensor graph.
        warnings: problems that do not stop compilation (unused parameters ...).
        path: the file it came from, for messages.
        source: its text, for messages.
    """

    graph: Graph
    warnings: tuple[DlcError, ...]
    path: str
    source: str


def load_source(source: str, path: str = "<model>", optimizer: str | None = None) -> Model:
    """Check a model given as text and build its graph.

    Raises:
        DlcError: with ``path`` and ``source`` recorded, for any mistake in the model.

    ``optimizer``: an optimizer call that replaces the train block's (``adam(lr = 3e-4)``).
    """
    source = source.removeprefix("\ufeff")  # a byte-order mark some editors write
    try:
        with deep_recursion():
            graph, warnings = _build(source, default_name(path), optimizer)
    except DlcError as err:
        raise err.in_file(path, source) from None
    return Model(graph, tuple(w.in_file(path, source) for w in warnings), path, source)


def default_name(path: str) -> str:
    """A model's name when it declares none: its file's stem, made an identifier.

    The name reaches generated code (docstrings, module names), so whatever
    characters a file name has, only letters, digits and '_' are kept.
    """
    stem = re.sub(r"[^A-Za-z0-9_]", "_", Path(path).stem) if path != "<model>" else ""
    return stem if stem[:1].isalpha() else "model" + (f"_{stem}" if stem else "")


def load(path: str | Path) -> Model:
    """Read and check a model file.

    Raises:
        DlcError: if the file cannot be read or the model has a mistake.
    """
    name = str(path)
    try:
        size = Path(path).stat().st_size
        if size > MAX_SOURCE_BYTES:
            raise DlcError(f"{name}: the file is larger than {MAX_SOURCE_BYTES >> 20} MiB")
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DlcError(f"cannot read {name}: {exc.strerror or exc}") from None
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        err = DlcError("the file is not valid UTF-8 text", Span(line, column, line, column + 1))
        raise err.in_file(name, data[: exc.start].decode("utf-8") + "\ufffd") from None
    return load_source(source, name)


def _build(source: str, default_name: str, optimizer: str | None = None) -> tuple[Graph, list[DlcError]]:
    module = parse(source)
    decls = declare(module)
    chosen = _optimizer_call(optimizer) if optimizer is not None else (None, None, None)
    lowering = Lowering(decls)
    assert decls.loss is not None  # declare() guarantees it
    outputs = _outputs(decls, lowering)
    loss_expr = decls.loss.expr
    loss = lowering.lower(loss_expr)
    if loss.shape:
        raise DlcError(
            f"the loss must be one number per example, not shape [{', '.join(map(str, loss.shape))}]",
            loss_expr.span,
            hint="use a loss function such as mse(...), or sum(...) / mean(...)",
        )
    if loss.batched:
        loss = lowering.builder.add(g.batch_mean(loss))
    used = set(topological_order([loss]))
    params = [lowering.global_value(p.name, {}) for p in decls.params]
    if not any(p in used for p in params):
        raise DlcError("the loss does not depend on any parameter", loss_expr.span)
    warnings = _unused(decls, lowering, used)
    name = decls.model.name.text if decls.model is not None else default_name
    graph = Graph(
        name=name,
        inputs=tuple(lowering.global_value(d.name, {}) for d in decls.inputs),  # type: ignore[misc]
        targets=tuple(lowering.global_value(d.name, {}) for d in decls.targets),  # type: ignore[misc]
        params=tuple(params),  # type: ignore[arg-type]
        outputs=outputs,
        loss=loss,
        train=train_config(decls.train, decls.optimizers, decls.functions, *chosen),
        names=lowering.names,
        activations=_activations(decls, {key[0] for key in lowering.expanded}),
        named_outputs=any(o.name is not None for o in decls.outputs),
    )
    return fuse(graph), warnings


def _optimizer_call(text: str) -> tuple[ast.Expr, str, Callable[[DlcError], DlcError]]:
    """An optimizer call given apart from the model file (``--optimizer 'adam(lr = 3e-4)'``)."""
    label = "--optimizer"

    def placed(err: DlcError) -> DlcError:
        span, message = err.span, err.message
        if span is not None:  # the text is line 2 of what was parsed
            end = len(text) + 1
            if span.line == 2:
                span = Span(1, span.column, 1, span.end_column if span.end_line == 2 else end)
            elif span.line > 2:  # the closing brace added after it: the text stopped early
                span, message = Span(1, end, 1, end + 1), message.replace("unexpected '}'", "unexpected end")
            else:
                span = Span(1, 1, 1, 2)
        return DlcError(message, span, hint=err.hint).in_file(label, text)

    if "\n" in text or "\r" in text:
        raise DlcError("the optimizer is one line of text, as in the model file").in_file(label, text)
    try:
        block = parse("train { optimizer =\n" + text + "\n}").statements[0]
    except DlcError as err:
        raise placed(err) from None
    assert isinstance(block, ast.TrainBlock)
    return block.settings[0].value, text.strip(), placed


def _outputs(decls: Declarations, lowering: Lowering) -> dict[str, nodes.Node]:
    """The output statements' nodes by name (``output`` for an unnamed one).

    An output must not read a target, which predict is not given.
    """
    found = {}
    for stmt in decls.outputs:
        node = lowering.lower(stmt.expr if stmt.name is None else ast.Name(stmt.name))
        below = topological_order([node])
        for target in decls.targets:
            if lowering.values.get(target.name.text) in below:
                raise DlcError(
                    f"the output cannot depend on the target {target.name.text}: predict has only the input",
                    stmt.expr.span,
                    hint="compute it from the input and the parameters; the loss compares it with the target",
                )
        found["output" if stmt.name is None else stmt.name.text] = node
    return found


def _activations(
    decls: Declarations, used: set[str]
) -> dict[str, tuple[tuple[sympy.Symbol, ...], sympy.Expr]]:
    """The used user functions that act element by element, as scalar SymPy formulas.

    A function is one if its body, called with scalars, is a single fused
    elementwise node over its own arguments (``swish(z) = z * sigmoid(z)``).
    """
    found = {}
    for name in sorted(used):
        fn = decls.functions[name]
        lowering = Lowering(decls)
        scope: dict[str, nodes.Node] = {
            p.text: lowering.builder.add(g.tangent(p.text, ())) for p in fn.params
        }
        try:
            body = lowering.lower(fn.body, scope)
        except DlcError:
            continue  # not a scalar function (it needs vectors, or has a matrix product)
        node = fuse_nodes((body,))[body]
        if not (isinstance(node, nodes.Elementwise) and node.inputs):
            continue
        if not all(isinstance(i, nodes.Tangent) for i in node.inputs):
            continue
        args = {element_symbol(k): sympy.Symbol(i.name, real=True) for k, i in enumerate(node.inputs)}  # type: ignore[attr-defined]
        found[name] = (tuple(sympy.Symbol(p.text, real=True) for p in fn.params), node.expr.xreplace(args))
    return found


def _unused(decls: Declarations, lowering: Lowering, used: set[nodes.Node]) -> list[DlcError]:
    warnings = []
    for name, decl in decls.names.items():
        unused_param = isinstance(decl, ast.ParamDecl) and lowering.values.get(name) not in used
        if unused_param:
            warnings.append(DlcError(f"parameter '{name}' does not affect the loss", decl.name.span))
        elif (
            name not in lowering.values
            and not _called(lowering, name)
            and not isinstance(decl, (ast.InputDecl, ast.TargetDecl, ast.ParamDecl))
        ):
            warnings.append(DlcError(f"'{name}' is defined but never used", decl.name.span))
    return warnings


def _called(lowering: Lowering, name: str) -> bool:
    return any(key[0] == name for key in lowering.expanded)
