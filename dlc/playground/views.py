"""What the page shows of a model: its diagram, formulas as MathML, and the pictures of a frame.

Pictures are computed from a snapshot's parameters by the reference
evaluator (:mod:`dlc.backends.reference`), in NumPy, never by the module
that trains: a frame never waits for a training step, and a training step
never waits for a frame. Heat maps go to the page as bytes (0..255), row 0
at the top.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np
import sympy

from dlc.backends import reference
from dlc.backends.common import update_formulas
from dlc.grad import notation as nt
from dlc.grad.formulas import derive
from dlc.graph.graph import Graph
from dlc.graph.nodes import Constant, Input, Node, Param, typed_shape
from dlc.playground.mathml import equation_mathml, mathml, matrix_latex
from dlc.playground.session import Session, Snapshot
from dlc.train.arrays import count, take

#: Pixels of a side of the output's heat map, and of each hidden unit's: every other point of the output's.
UNIT = 32
PLANE = 2 * UNIT - 1
#: At most this many units of a layer get a map, and layers wider than this get none.
MAX_UNITS = 64
#: Rows of the data drawn as points, and used for the gradients' norms.
MAX_POINTS, GRAD_ROWS = 1000, 256


def encode(values: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype=np.uint8).tobytes()).decode("ascii")


def scaled(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``values`` from [low, high] to 0..255 (a flat map's values all at the middle)."""
    span = high - low
    if not span > 0 or not math.isfinite(span):
        return np.full(values.shape, 128, dtype=np.uint8)
    with np.errstate(all="ignore"):  # infinities and overflows are clipped to the ends of the scale
        return np.clip(np.nan_to_num((values - low) / span * 255, nan=128), 0, 255).astype(np.uint8)


class Views:
    """The model's page: built once per session; :meth:`frame` for each snapshot."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.graph: Graph = session.graph
        self.derivation = derive(self.graph)
        self.symbols, self.gradients = self.derivation.symbols, self.derivation.gradient_nodes
        self.equations: list[tuple[str, sympy.Expr, sympy.Expr]] = []  # by id: what plug() shows
        self.sections = self._sections()
        self.plane = self._plane()
        self.surface = self._surface(session.snapshot().path[:1]) if session.two_numbers else None
        self.weights = self._weights() if self.plane is None and self.surface is None else None
        self.last: Snapshot | None = None
        self.checked = self.checked_run = 0  # points of the path checked against the surface's extent

    # --- the model, once

    def model(self) -> dict[str, Any]:
        s = self.session
        data = None
        if s.data_name is not None:
            data = {"name": s.data_name, "rows": s.n, "val_rows": 0 if s.val is None else _rows(s.val)}
        views = {
            "plane": self.plane and self.plane.describe(),
            "surface": self.surface,
            "weights": self.weights,
        }
        return {
            "name": self.graph.name, "backend": s.backend, "dtype": s.dtype, "data": data,
            "diagram": diagram(self.graph), "formulas": self.formulas(), "optimizers": optimizers(s),
            "controls": s.controls.as_json(), "views": views,
        }  # fmt: skip

    def formulas(self) -> list[dict[str, Any]]:
        """The derived formulas by section, as the page shows them (the optimizer's update apart)."""
        return self.sections

    def _sections(self) -> list[dict[str, Any]]:
        return [
            {"title": title, "equations": [self._equation(e.lhs, e.rhs, "=", e.shape) for e in eqs]}
            for title, eqs in self.derivation.sections()
            if eqs
        ]

    def _equation(self, lhs: sympy.Expr, rhs: sympy.Expr, op: str, shape: str) -> dict[str, Any]:
        self.equations.append((op, lhs, rhs))
        text = f"{nt.text(lhs)} {op} {nt.text(rhs)}"
        return {"id": len(self.equations) - 1, "mathml": equation_mathml(lhs, rhs, op), "text": text,
                "shape": shape}  # fmt: skip

    def update(self) -> dict[str, Any]:
        """The optimizer's update, as the module in use has it (it changes with the optimizer)."""
        module = self.session.module
        optimizer = self.session.optimizer
        eqs = [
            self._equation(sympy.Symbol(k, real=True), f, op, "") for k, op, f in update_formulas(optimizer)
        ]
        return {"title": f"Update, {module.OPTIMIZER} (every element w of every parameter, g its gradient)",
                "equations": eqs}  # fmt: skip

    def plug(self, index: int) -> str:
        """Equation ``index`` with the current values of its symbols, for the first training example."""
        if not isinstance(index, int) or not 0 <= index < len(self.equations):
            raise KeyError(index)
        op, lhs, rhs = self.equations[index]
        shot = self.session.snapshot()
        values = self._values(shot, [lhs, rhs])
        rows = [(nt.latex(sympy.Symbol(name, real=True)), matrix_latex(v)) for name, v in values]
        names = {str(s) for e in (lhs, rhs) for s in e.free_symbols}
        rows += [
            (nt.latex(sympy.Symbol(k, real=True)), matrix_latex(np.array(v)))
            for k, v in self.session.controls.settings.items()
            if k in names
        ]
        if "t" in names:  # the step count of the next step
            rows.append(("t", str(shot.taken + 1)))
        return mathml(lhs, rhs, op, rows, data=self.session.data_name is not None)

    def _values(self, shot: Snapshot, exprs: list[sympy.Expr]) -> list[tuple[str, np.ndarray]]:
        """The values of the symbols in ``exprs`` that name a value of the graph, in order of appearance."""
        wanted: list[tuple[str, Node]] = []
        for e in exprs:
            for s in sorted(e.free_symbols, key=str):
                if str(s) in self.symbols and all(str(s) != k for k, _ in wanted):
                    wanted.append((str(s), self.symbols[str(s)]))
            for g in e.atoms(nt.Grad):
                name = str(g.args[0])
                if name in self.gradients and all(f"∂L/∂{name}" != k for k, _ in wanted):
                    wanted.append((f"∂L/∂{name}", self.gradients[name]))
        if not wanted:
            return []
        feeds = self._feeds(shot.params, slice(0, 1))
        results = reference.evaluate([n for _, n in wanted], feeds)
        return [(k, _one_example(v, n)) for (k, n), v in zip(wanted, results, strict=True)]

    def _feeds(self, params: dict[str, np.ndarray], rows: Any) -> dict[str, np.ndarray]:
        s = self.session
        feeds: dict[str, np.ndarray] = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
        for leaves, data in ((self.graph.inputs, s.X), (self.graph.targets, s.Y)):
            if data is None:
                continue
            part = take(data, rows)
            arrays = part if isinstance(part, dict) else {leaves[0].name: part}
            feeds.update({k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()})
        return feeds

    # --- what the network learned

    def _plane(self) -> Plane | None:
        s = self.session
        inputs = self.graph.inputs
        if len(inputs) != 1 or inputs[0].shape != (2,) or s.X is None or isinstance(s.X, dict):
            return None
        return Plane(self.graph, s.X, s.Y, s.snapshot().params, s.rows)

    def _surface(self, path: list[tuple[float, ...]], version: int = 1) -> dict[str, Any]:
        """The loss over a square of the two numbers around 0, wide enough for the ``path``."""
        s = self.session
        half = max(2.0, 1.5 * float(np.max(np.abs(np.array(path)))))
        axis = np.linspace(-half, half, PLANE)
        params = {k: v.copy() for k, v in s.snapshot().params.items()}
        flat = [(k, i) for k, v in params.items() for i in range(v.size)]
        losses = np.empty((PLANE, PLANE))
        for row, b in enumerate(axis[::-1]):  # row 0 at the top: the largest second number
            for col, a in enumerate(axis):
                for (k, i), value in zip(flat, (a, b), strict=True):
                    params[k].reshape(-1)[i] = value
                losses[row, col] = s.module.loss(params, s.X, s.Y)
        finite = losses[np.isfinite(losses)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        names = [k if v.size == 1 else f"{k}[{i}]" for (k, i), v in ((f, params[f[0]]) for f in flat)]
        return {"names": names, "extent": [-half, half, -half, half], "size": PLANE, "version": version,
                "values": encode(scaled(losses, low, high)), "low": low, "high": high}  # fmt: skip

    def _widened(self, shot: Snapshot) -> None:
        """The surface again, wider, once the path has left it."""
        assert self.surface is not None
        half = self.surface["extent"][1]
        path = shot.path[: shot.points]
        if shot.generation != self.checked_run:  # a reset: the path starts again
            self.checked, self.checked_run = 0, shot.generation
        if any(abs(v) > half for p in path[self.checked :] for v in p):
            self.surface = self._surface(path, self.surface["version"] + 1)
        self.checked = len(path)

    def _weights(self) -> list[dict[str, Any]] | None:
        shown = []
        inputs = {math.prod(i.shape) for i in self.graph.inputs}
        for p in self.graph.params:
            shape = _image_rows(p, inputs)
            if shape is not None:
                rows, h, w = shape
                shown.append({"name": p.name, "rows": rows, "h": h, "w": w})
        return shown or None

    def frame(self, shot: Snapshot, sent: int, points: int, stats: bool, surface: int = 1,
              units: bool = True) -> dict[str, Any]:  # fmt: skip
        """The page's frame for ``shot``: history after entry ``sent``, path after point ``points``, the
        loss surface when it is newer than version ``surface`` (it widens when the path leaves it), and
        the hidden units' maps if ``units``."""
        if self.surface is not None:
            self._widened(shot)
        out: dict[str, Any] = {
            "epoch": shot.epoch, "step": shot.step, "steps": shot.steps, "playing": shot.playing,
            "loss": _finite(shot.loss), "error": shot.error, "taken": shot.taken,
            "history": [_epoch(e) for e in shot.history[sent : shot.recorded]],
            "plane": self.plane.frame(shot.params, units) if self.plane else None,
            "path": [list(p) for p in shot.path[points : shot.points]] if self.surface else None,
            "weights": self._weight_images(shot.params) if self.weights else None,
        }  # fmt: skip
        if stats:
            out["stats"] = self._stats(shot)
        if self.surface is not None and self.surface["version"] != surface:
            out["surface"] = self.surface
        return out

    def _weight_images(self, params: dict[str, np.ndarray]) -> dict[str, str]:
        out = {}
        for w in self.weights or ():
            value = np.asarray(params[w["name"]], dtype=np.float64).reshape(-1, w["h"] * w["w"])[: w["rows"]]
            top = np.max(np.abs(value), axis=1, keepdims=True)
            top[~(top > 0)] = 1
            out[w["name"]] = encode(np.clip(128 + 127 * np.nan_to_num(value / top), 0, 255))
        return out

    def _stats(self, shot: Snapshot) -> list[dict[str, Any]]:
        """Each parameter's norm, its gradient's on up to GRAD_ROWS examples, and its step's size."""
        s = self.session
        grads = {}
        try:
            feeds = self._feeds(shot.params, slice(0, min(GRAD_ROWS, s.n, s.rows)))
            values = reference.evaluate(list(self.gradients.values()), feeds)
            grads = dict(zip(self.gradients, values, strict=True))
        except (NotImplementedError, ValueError, FloatingPointError):
            grads = {}
        last = self.last
        steps = shot.taken - last.taken if last is not None and last.generation == shot.generation else 0
        out = []
        for p in self.graph.params:
            w = shot.params[p.name]
            moved = None
            if steps > 0 and last is not None:
                moved = float(np.linalg.norm(w - last.params[p.name])) / steps
            grad = grads.get(p.name)
            out.append({"name": p.name, "shape": list(p.shape), "weight": _finite(float(np.linalg.norm(w))),
                        "grad": None if grad is None else _finite(float(np.linalg.norm(grad))),
                        "update": _finite(moved)})  # fmt: skip
        self.last = shot
        return out


class Plane:
    """The output over the input plane, and each hidden unit's value, for a model of 2-D inputs."""

    def __init__(self, graph: Graph, X: np.ndarray, Y: Any, params: dict[str, np.ndarray], rows: int) -> None:
        self.graph = graph
        self.input = graph.inputs[0]
        x = np.asarray(X, dtype=np.float64)
        low, high = x.min(axis=0), x.max(axis=0)
        margin = np.maximum((high - low) * 0.1, 0.1)
        self.extent = [float(low[0] - margin[0]), float(high[0] + margin[0]),
                       float(low[1] - margin[1]), float(high[1] + margin[1])]  # fmt: skip
        self.output = next((o for o in graph.outputs.values() if o.batched), None)  # one value per point
        self.rows = rows  # grid points per pass (dlc.train.run.eval_rows: about EVAL_BYTES of values)
        picked = np.linspace(0, len(x) - 1, min(len(x), MAX_POINTS)).astype(int)
        labels = _labels(Y, picked)
        self.points = [[float(a), float(b), c] for (a, b), c in zip(x[picked], labels, strict=True)]
        self.units = [
            (name, node) for node, name in graph.names.items()
            if node.batched and len(node.shape) == 1 and 1 < node.shape[0] <= MAX_UNITS
            and not isinstance(node, (Input, Param, Constant)) and node not in graph.outputs.values()
        ]  # fmt: skip
        self.grid = self._grid(PLANE).astype(np.float32)
        self.kind, self.classes = "value", 0
        if self.output is not None:
            (y,) = self._evaluate([self.output], params, np.float64)
            self.kind, self.classes = _output_kind(y.reshape(len(self.grid), -1), labels)

    def _evaluate(self, roots: list[Node], params: dict[str, np.ndarray], dtype: Any) -> list[np.ndarray]:
        """``roots`` (batched) at every point of the grid, ``self.rows`` points at a time."""
        feeds = {k: np.asarray(v, dtype=dtype) for k, v in params.items()}
        parts = []
        with np.errstate(all="ignore"):
            for s in range(0, len(self.grid), self.rows):
                feeds[self.input.name] = self.grid[s : s + self.rows].astype(dtype)
                parts.append(reference.evaluate(roots, feeds, dtype))
        return [np.concatenate(p) for p in zip(*parts, strict=True)]

    def _grid(self, size: int) -> np.ndarray:
        x0, x1, y0, y1 = self.extent
        xs, ys = np.linspace(x0, x1, size), np.linspace(y1, y0, size)  # row 0 at the top
        gx, gy = np.meshgrid(xs, ys)
        return np.stack([gx.ravel(), gy.ravel()], axis=1)

    def describe(self) -> dict[str, Any]:
        return {"extent": self.extent, "size": PLANE, "points": self.points, "output": self.kind,
                "classes": self.classes, "units": [{"name": n, "count": u.shape[0]} for n, u in self.units],
                "unit_size": UNIT}  # fmt: skip

    def frame(self, params: dict[str, np.ndarray], units: bool = True) -> dict[str, Any] | None:
        """The output's map and every unit's, from one pass over the plane's grid, in float32 (the maps
        are 8-bit pictures); a unit's map takes every other point of the grid each way."""
        out: dict[str, Any] = {"confidence": None, "low": 0.0, "high": 1.0, "units": None, "unit_range": {}}
        shown = self.units if units else []
        roots = [u for _, u in shown] + ([self.output] if self.output is not None else [])
        if not roots:
            return out
        values = self._evaluate(roots, params, np.float32)
        if self.output is not None:
            self._output(out, values.pop().reshape(len(self.grid), -1))
        if shown:
            out["units"], out["unit_range"] = {}, {}
            for (name, _), v in zip(shown, values, strict=True):
                v = v.reshape(PLANE, PLANE, -1)[::2, ::2].reshape(UNIT * UNIT, -1)
                finite = v[np.isfinite(v)]
                low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
                low, high = min(low, -high), max(high, -low)  # symmetric: 0 is the middle colour
                out["units"][name] = encode(scaled(v.T, low, high))  # unit k's map at k * UNIT^2
                out["unit_range"][name] = [low, high]
        return out

    def _output(self, out: dict[str, Any], y: np.ndarray) -> None:
        if self.kind == "classes":
            out["output"] = encode(np.argmax(y, axis=1))
            out["confidence"] = encode(scaled(np.max(y, axis=1), 0.0, 1.0))
            return
        v = y[:, 0]
        if self.kind == "binary":
            out["output"] = encode(scaled(v, 0.0, 1.0))
            return
        finite = v[np.isfinite(v)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        out["output"], out["low"], out["high"] = encode(scaled(v, low, high)), low, high


def _labels(Y: Any, picked: np.ndarray) -> list[Any]:
    if Y is None or isinstance(Y, dict):
        return [0] * len(picked)
    y = np.asarray(Y, dtype=np.float64)[picked]
    if y.ndim == 2 and y.shape[1] > 1:
        return [int(k) for k in np.argmax(y, axis=1)]
    y = y.reshape(len(picked), -1)[:, 0]
    if np.all(y == np.round(y)) and np.all((y >= 0) & (y < 64)):
        return [int(k) for k in y]
    return [float(k) for k in y]


def _output_kind(y: np.ndarray, labels: list[Any]) -> tuple[str, int]:
    """binary (the probability of class 1), classes (probabilities of k classes), or value, and the
    class count, from the output ``y`` over the plane at the start and the data's labels."""
    whole = all(isinstance(c, int) for c in labels)
    classes = max(labels) + 1 if whole and labels else 0
    probabilities = bool(np.all((y >= 0) & (y <= 1)))
    if whole and classes <= 2 and y.shape[1] == 1 and probabilities:
        return "binary", 2
    sums = np.abs(y.sum(axis=1) - 1) < 1e-6
    if whole and y.shape[1] == classes >= 2 and probabilities and bool(np.all(sums)):
        return "classes", classes
    return "value", classes


def _image_rows(p: Param, inputs: set[int]) -> tuple[int, int, int] | None:
    """Rows of ``p`` shown as small square images: the weights of a layer that reads an input of a
    square number of values (``inputs``: the inputs' sizes), or a convolution's kernels."""
    square = len(p.shape) == 2 and p.shape[1] >= 16 and math.isqrt(p.shape[1]) ** 2 == p.shape[1]
    if square and p.shape[1] in inputs:
        side = math.isqrt(p.shape[1])
        return min(p.shape[0], MAX_UNITS), side, side
    if len(p.shape) == 4 and p.shape[2] * p.shape[3] >= 4:
        return min(p.shape[0] * p.shape[1], MAX_UNITS), p.shape[2], p.shape[3]
    return None


def diagram(graph: Graph) -> dict[str, Any]:
    """The model as boxes: inputs, targets, named values, outputs and the loss, with the parameters
    each reads, and arrows from the boxes each is computed from."""
    kinds: dict[Node, str] = {n: "input" for n in graph.inputs}
    titles: dict[Node, str] = {}
    kinds.update({n: "target" for n in graph.targets})
    titles.update({n: n.name for n in (*graph.inputs, *graph.targets)})
    for node, name in graph.names.items():
        if not isinstance(node, (Input, Param, Constant)):
            kinds[node], titles[node] = "value", name
    for name, node in graph.outputs.items():
        kinds[node] = "output"
        titles.setdefault(node, name)
    kinds[graph.loss], titles[graph.loss] = "loss", "loss"
    order = [n for n in graph.nodes() if n in kinds]
    ids = {n: k for k, n in enumerate(order)}
    nodes: list[dict[str, Any]] = []
    edges: list[list[int]] = []
    depth: dict[Node, int] = {}
    for n in order:
        sources, params = _sources(n, kinds)
        depth[n] = 1 + max((depth[s] for s in sources), default=-1)
        read = [f"{p.name} {list(p.shape)}" for p in params]
        nodes.append({"id": ids[n], "name": titles[n], "kind": kinds[n], "shape": typed_shape(n),
                      "params": read, "depth": depth[n]})  # fmt: skip
        edges += [[ids[s], ids[n]] for s in sources]
    return {"nodes": nodes, "edges": edges}


def _sources(node: Node, shown: dict[Node, str]) -> tuple[list[Node], list[Param]]:
    """The shown nodes and the parameters ``node`` is computed from directly (through unshown nodes)."""
    sources: list[Node] = []
    params: list[Param] = []
    seen: set[int] = set()
    stack = list(node.inputs)
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if n in shown:
            sources.append(n)
        elif isinstance(n, Param):
            params.append(n)
        else:
            stack.extend(n.inputs)
    return sorted(sources, key=lambda n: shown[n]), sorted(params, key=lambda p: p.name)


def optimizers(session: Session) -> dict[str, list[dict[str, Any]]]:
    """Every optimizer the page offers, with its settings' defaults (the one in use: its values)."""
    from dlc.frontend.optimizers import defaults

    out = {name: [{"name": k, "value": v} for k, v in values] for name, values in defaults().items()}
    out[session.controls.optimizer] = [{"name": k, "value": v} for k, v in session.controls.settings.items()]
    return out


def _one_example(value: np.ndarray, node: Node) -> np.ndarray:
    return value[0] if node.batched and value.ndim and value.shape[0] == 1 else value


def _rows(val: tuple[Any, Any]) -> int:
    return count(val[0] if val[0] is not None else val[1])


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _epoch(e: Any) -> dict[str, Any]:
    return {"epoch": e.epoch, "loss": _finite(e.loss), "accuracy": e.accuracy,
            "val_loss": _finite(e.val_loss), "val_accuracy": e.val_accuracy}  # fmt: skip
