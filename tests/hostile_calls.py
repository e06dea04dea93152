"""Every entry point of both backends' modules, called with wrong arguments as a hostile user would.

Run as a script (``python -m tests.hostile_calls --examples N``) in a process
of its own, so that a crash is seen as a crash (tests/test_module_api.py
does that). Hypothesis draws a call: a model, a dtype, an entry point, and
for each argument either the right value or one of many wrong ones (shapes,
batch sizes that disagree, dtypes, None, empty, non-contiguous, read-only,
reshaped in place, lists, swapped or aliased dicts, bad settings). The call
runs on the NumPy module and on the LLVM module, each with fresh copies of
the arguments, and must:

- raise TypeError or ValueError (or FloatingPointError for a diverging
  step) with the same message from both, or return the same result;
- leave every guard region around its arrays untouched, and every array it
  was not asked to write unchanged.

Before each call the case is written to standard error, so a crash leaves
the case that caused it as the last line.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

MODELS = {
    "classifier": """
input  x : [4]
target y : [3]
param W1 : [8, 4] = glorot
param b1 : [8] = zeros
param W2 : [3, 8] = glorot
param b2 : [3] = zeros
h = tanh(W1 @ x + b1)
output softmax(W2 @ h + b2)
loss softmax_cross_entropy(W2 @ h + b2, y)
""",
    "regression": """
input  x : [3]
target y : [1]
param w : [1, 3] = normal(0.5)
param c : [1] = zeros
param s : [] = constant(1)
output tanh(s) * (w @ x) + c
loss mse(tanh(s) * (w @ x) + c, y)
""",
    "surface": """
param p : [2] = constant(1)
loss sum(p * p) + sin(sum(p))
""",
}
ROWS = 6
GUARD = 8  # elements of guard before and after each array
SENTINEL = -7.25e-3
ALLOWED = (TypeError, ValueError, FloatingPointError)
#: The entry points; hvp takes the velocity argument as its direction v.
ENTRIES = ("predict", "loss", "value_and_grad", "hvp", "train_step", "train")
#: How the modules' own messages start: with the argument they are about.
OUR_WORDS = ("X ", "Y ", "params", "state", "v ", "v[", "epochs ", "batch_size ", "lr ", "momentum ",
             "seed ", "start_epoch ", "callback ", "on_step ", "this model declares")  # fmt: skip

ARRAY_WRONGS = [
    "other_dtype", "int", "bool", "complex", "object", "str", "list", "none", "strided", "fortran",
    "readonly", "reshaped", "wrong_shape", "extra_axis", "flat", "scalar", "nan", "huge",
]  # fmt: skip
DATA_WRONGS = [*ARRAY_WRONGS, "empty", "rows_off", "one_row"]
DICT_WRONGS = ["missing", "extra", "swapped", "rotated", "not_dict", "none", "one_bad"]
VELOCITY_WRONGS = [*DICT_WRONGS, "params_itself", "alias_one", "overlap"]
RATES = [
    0.1,
    0,
    -1.0,
    float("nan"),
    float("inf"),
    "0.1",
    None,
    np.float32(0.05),
    True,
    [0.1],
    3,
]  # None: the model's
COUNTS = [0, 1, 2, -1, 1.5, None, "2", True]
BATCH_SIZES = [1, 2, 3, 4, 10**20, 2**63, 0, -2, 2.5, None, True]
SEEDS = [0, 5, -1, 2**70, "x", None]
CALLBACKS = [None, "not callable", "returns_none", "stop", "predict_other", "replace_param"]


@dataclass
class Arena:
    """Arrays handed to a call, each inside a buffer whose guard regions must stay as they are."""

    buffers: list[np.ndarray] = field(default_factory=list)
    frozen: list[tuple[str, np.ndarray, np.ndarray]] = field(default_factory=list)  # name, array, copy

    def guarded(self, values: np.ndarray, dtype: Any) -> np.ndarray:
        size = values.size
        buffer = np.full(size + 2 * GUARD, SENTINEL, dtype=dtype)
        buffer[GUARD : GUARD + size] = values.ravel()
        self.buffers.append(buffer)
        return buffer[GUARD : GUARD + size].reshape(values.shape)

    def strided(self, values: np.ndarray, dtype: Any) -> np.ndarray:
        size = values.size
        buffer = np.full(2 * size + 2 * GUARD, SENTINEL, dtype=dtype)
        view = buffer[GUARD : GUARD + 2 * size : 2]
        view[...] = values.ravel()
        self.buffers.append(buffer)
        return view.reshape(values.shape) if values.ndim else view[0:1].reshape(())

    def freeze(self, name: str, a: Any) -> None:
        """``a`` must not change (it is not one of the arrays the call may write)."""
        if isinstance(a, np.ndarray):
            self.frozen.append((name, a, a.copy()))

    def problems(self) -> list[str]:
        found = []
        for i, buffer in enumerate(self.buffers):
            for part in (buffer[:GUARD], buffer[-GUARD:]):
                if not np.array_equal(part, np.full(GUARD, SENTINEL, dtype=buffer.dtype)):
                    found.append(f"guard region of buffer {i} was written")
        for name, a, before in self.frozen:
            same = a.shape == before.shape and np.array_equal(a, before, equal_nan=a.dtype.kind in "fc")
            if not same:
                found.append(f"{name} changed, though the call was not asked to write it")
        return found


def array_variant(kind: str, right: np.ndarray, dtype: Any, arena: Arena) -> Any:
    """A wrong (or right) version of an array argument."""
    other = np.float32 if np.dtype(dtype) == np.float64 else np.float64
    makers = {
        "ok": lambda: arena.guarded(right, dtype),
        "other_dtype": lambda: arena.guarded(right, other),
        "int": lambda: arena.guarded(np.round(right * 3), np.int64),
        "bool": lambda: arena.guarded(right > 0, np.bool_),
        "complex": lambda: arena.guarded(right + 1j, np.complex128),
        "object": lambda: np.array(right.tolist() if right.ndim else [right.item()], dtype=object),
        "str": lambda: right.astype(str),
        "list": lambda: right.tolist(),
        "none": lambda: None,
        "strided": lambda: arena.strided(right, dtype),
        "fortran": lambda: np.asfortranarray(arena.guarded(right, dtype).T).T,
        "readonly": lambda: _readonly(arena.guarded(right, dtype)),
        "reshaped": lambda: _reshaped(arena.guarded(right, dtype)),
        "wrong_shape": lambda: arena.guarded(np.resize(right, _grown(right.shape)), dtype),
        "extra_axis": lambda: arena.guarded(right[None], dtype),
        "flat": lambda: arena.guarded(right.ravel(), dtype),
        "scalar": lambda: np.float64(0.5),
        "nan": lambda: arena.guarded(np.full(right.shape, np.nan), dtype),
        "huge": lambda: arena.guarded(np.full(right.shape, 1e30), dtype),
        "empty": lambda: arena.guarded(right[:0], dtype),
        "rows_off": lambda: arena.guarded(right[:-1], dtype),
        "one_row": lambda: arena.guarded(right[:1], dtype),
    }
    return makers[kind]()


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _reshaped(a: np.ndarray) -> np.ndarray:
    """The same array with another shape of the same size, set in place (where there is one)."""
    if a.ndim >= 2:
        a.shape = a.shape[::-1] if a.shape[0] != a.shape[-1] else (a.size,)
    elif a.size > 1 and a.size % 2 == 0:
        a.shape = (2, a.size // 2)
    else:
        a.shape = (*a.shape, 1)
    return a


def _grown(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[0] + 1, *shape[1:]) if shape else (2,)


@dataclass(frozen=True)
class Case:
    model: str
    dtype: str
    entry: str
    params: str
    param_array: str
    bad_param: int
    X: str
    Y: str
    velocity: str
    lr: Any
    momentum: Any
    epochs: Any
    batch_size: Any
    seed: Any
    start_epoch: Any
    callback: Any
    on_step: bool
    rows: int


#: Each argument's right value and its wrong ones.
CHOICES: dict[str, tuple[Any, list[Any]]] = {
    "params": ("ok", DICT_WRONGS),
    "X": ("ok", DATA_WRONGS),
    "Y": ("ok", DATA_WRONGS),
    "velocity": ("ok", VELOCITY_WRONGS),
    "lr": (0.1, RATES),
    "momentum": (0.9, RATES),
    "epochs": (2, COUNTS),
    "batch_size": (4, BATCH_SIZES),
    "seed": (0, SEEDS),
    "start_epoch": (0, [1, 3, -1, 0.5]),
    "callback": (None, CALLBACKS),
}


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """A call with up to three arguments drawn from their wrong values (some of which are right too)."""
    wrong = draw(st.sets(st.sampled_from(sorted(CHOICES)), max_size=3))
    args = {k: draw(st.sampled_from(bad)) if k in wrong else right for k, (right, bad) in CHOICES.items()}
    return Case(
        model=draw(st.sampled_from(sorted(MODELS))),
        dtype=draw(st.sampled_from(["float64", "float32"])),
        entry=draw(st.sampled_from(ENTRIES)),
        param_array=draw(st.sampled_from(ARRAY_WRONGS)),
        bad_param=draw(st.integers(0, 3)),
        on_step=draw(st.booleans()),
        rows=draw(st.sampled_from([1, ROWS, 2 * ROWS + 1])),
        **args,
    )


def single_mistakes() -> list[Case]:
    """Every call with one argument wrong (or one parameter array wrong), in every model, dtype and entry."""
    right = {k: r for k, (r, _) in CHOICES.items()}
    calls = []
    for model in sorted(MODELS):
        for dtype in ("float64", "float32"):
            for entry in ENTRIES:
                base = {"model": model, "dtype": dtype, "entry": entry, "param_array": "ok", "bad_param": 0,
                        "on_step": entry == "train", "rows": ROWS, **right}  # fmt: skip
                calls.append(Case(**base))
                for name, (_, wrongs) in CHOICES.items():
                    calls += [Case(**{**base, name: w}) for w in wrongs if w != "one_bad"]
                for index in range(3):
                    calls += [
                        Case(**{**base, "params": "one_bad", "param_array": v, "bad_param": index})
                        for v in ARRAY_WRONGS
                    ]
    return calls


class Call:
    """The arguments of one case for one module, built afresh (the same values for every module)."""

    def __init__(self, case: Case, module: Any) -> None:
        self.case, self.m = case, module
        self.arena = Arena()
        self.records: list[Any] = []
        dtype = np.dtype(case.dtype)
        rng = np.random.default_rng(7)
        right = {k: np.asarray(v, dtype=dtype) for k, v in module.init_params(1).items()}
        self.params = self._dict(case.params, right, dtype)
        shifted = {k: (v + 0.01).astype(dtype) for k, v in right.items()}
        self.velocity = self._velocity(case.velocity, shifted, dtype)
        X = Y = None
        if module.INPUT_SHAPE is not None:
            X = rng.standard_normal((case.rows, *module.INPUT_SHAPE))
            self.x_right = X.astype(dtype)
        if module.TARGET_SHAPE is not None:
            Y = rng.standard_normal((case.rows, *module.TARGET_SHAPE))
            if case.model == "classifier":
                Y = np.eye(module.TARGET_SHAPE[0])[rng.integers(0, module.TARGET_SHAPE[0], case.rows)]
        self.X = self._data(case.X, X, dtype)
        self.Y = self._data(case.Y, Y, dtype)
        self.other = {k: self.arena.guarded(v * 2, dtype) for k, v in right.items()}
        for k, v in self.other.items():
            self.arena.freeze(f"other[{k!r}]", v)
        writes = case.entry in ("train_step", "train")
        for name, value in (("X", self.X), ("Y", self.Y)):
            self.arena.freeze(name, value)
        if not writes:
            for what, d in (("params", self.params), ("velocity", self.velocity)):
                for k, v in d.items() if isinstance(d, dict) else []:
                    self.arena.freeze(f"{what}[{k!r}]", v)

    def _dict(self, kind: str, right: dict[str, np.ndarray], dtype: Any) -> Any:
        names = list(right)
        good = {k: self.arena.guarded(v, dtype) for k, v in right.items()}
        if kind == "missing":
            del good[names[0]]
        elif kind == "extra":
            good["zzz"] = self.arena.guarded(np.ones(3), dtype)
        elif kind == "swapped":
            good = dict(reversed(list(good.items())))
        elif kind == "rotated":
            good = dict(zip(names, [*list(good.values())[1:], good[names[0]]], strict=True))
        elif kind == "not_dict":
            return list(good.values())
        elif kind == "none":
            return None
        elif kind == "one_bad":
            name = names[self.case.bad_param % len(names)]
            good[name] = array_variant(self.case.param_array, right[name], dtype, self.arena)
        return good

    def _velocity(self, kind: str, right: dict[str, np.ndarray], dtype: Any) -> Any:
        if kind == "params_itself":
            return self.params
        if not isinstance(self.params, dict) or not self.params or kind not in ("alias_one", "overlap"):
            return self._dict(kind, right, dtype)
        velocity = self._dict("ok", right, dtype)
        name = next(iter(self.params))
        velocity[name] = self.params[name] if kind == "alias_one" else _view(self.params[name])
        return velocity

    def _data(self, kind: str, right: np.ndarray | None, dtype: Any) -> Any:
        if right is None:  # the model declares no such data: anything but None is wrong
            return None if kind == "ok" else array_variant("ok", np.ones((ROWS, 2)), dtype, self.arena)
        return array_variant(kind, right, dtype, self.arena)

    def callback(self) -> Any:
        kind = self.case.callback
        if kind is None or kind == "not callable":
            return None if kind is None else 5

        def callback(epoch: int, loss: float) -> Any:
            self.records.append(("epoch", epoch, loss))
            if kind == "predict_other" and self.m.INPUT_SHAPE is not None:
                self.records.append(("predict", self.m.predict(self.other, self.x_right)))
            if kind == "replace_param" and isinstance(self.params, dict) and self.params:
                name = next(iter(self.params))
                self.params[name] = np.array(self.params[name])
            return False if kind == "stop" else None

        return callback

    def on_step(self) -> Any:
        if not self.case.on_step:
            return None
        return lambda epoch, step, steps, loss: self.records.append(("step", epoch, step, steps, loss))

    def run(self) -> Any:
        c, m = self.case, self.m
        if c.entry == "predict":
            return m.predict(self.params, self.X)
        if c.entry == "hvp":
            return m.hvp(self.params, self.X, self.Y, self.velocity)
        if c.entry in ("loss", "value_and_grad"):
            return getattr(m, c.entry)(self.params, self.X, self.Y)
        if c.entry == "train_step":
            return m.train_step(self.params, self.state(), self.X, self.Y, lr=c.lr, momentum=c.momentum)
        return m.train(
            self.params, self.X, self.Y, epochs=c.epochs, batch_size=c.batch_size, lr=c.lr,
            momentum=c.momentum, seed=c.seed, start_epoch=c.start_epoch, callback=self.callback(),
            on_step=self.on_step(), state=None if self.velocity is None else self.state(),
        )  # fmt: skip

    def state(self) -> Any:
        """The optimizer's state (sgd's: the step count and a velocity per parameter) around the velocity."""
        if self.case.velocity == "not_dict":
            return self.velocity  # a list where the state's dict goes
        return {"step": 0, "velocity": self.velocity}


def _view(a: Any) -> Any:
    return a[...] if isinstance(a, np.ndarray) else a


def outcome(case: Case, module: Any) -> tuple[str, Any, list[str]]:
    """("ok", what the call returned and left behind) or ("TypeError", message); and the problems seen."""
    call = Call(case, module)
    try:
        with np.errstate(all="ignore"):
            result = call.run()
    except ALLOWED as exc:
        kind, value = type(exc).__name__, "" if isinstance(exc, FloatingPointError) else str(exc)
    except NotImplementedError as exc:  # predict of a model without an output
        kind, value = "NotImplementedError", str(exc)
    else:
        kind, value = "ok", [result, call.params, call.velocity, call.records]
    problems = call.arena.problems()
    if kind in ("TypeError", "ValueError") and not value.startswith(OUR_WORDS):
        problems.append(f"{kind} not of the module's own: {value}")
    if kind == "ok":
        problems += wrong_dtypes(result, np.dtype(case.dtype)) + wrong_shapes(case, module, call, result)
        problems += converted_differently(case, module, call, result)
    return kind, value, problems


def wrong_shapes(case: Case, module: Any, call: Call, result: Any) -> list[str]:
    """Results whose shapes are not the declared ones."""
    if case.entry in ("value_and_grad", "hvp"):
        shapes = {k: g.shape for k, g in (result[1] if case.entry == "value_and_grad" else result).items()}
        want = {k: tuple(s) for k, s in module.PARAM_SHAPES.items()}
        return [] if shapes == want else [f"gradients of shapes {shapes}, not {want}"]
    if case.entry == "predict" and module.INPUT_SHAPE is not None:
        rows = len(call.X)
        return (
            [] if result.shape[:1] == (rows,) else [f"predicted {result.shape[:1]} rows for {rows} examples"]
        )
    return []


def converted_differently(case: Case, module: Any, call: Call, result: Any) -> list[str]:
    """A reading call that accepted arguments must compute what it computes for them as plain arrays."""
    if case.entry not in ("predict", "loss", "value_and_grad", "hvp") or not isinstance(call.params, dict):
        return []
    dtype = np.dtype(case.dtype)
    plain = lambda a: None if a is None else np.array(a, dtype=dtype)  # noqa: E731
    params = {k: plain(v) for k, v in call.params.items()}
    args = (params, plain(call.X)) if case.entry == "predict" else (params, plain(call.X), plain(call.Y))
    if case.entry == "hvp":
        if not isinstance(call.velocity, dict):
            return []
        args = (*args, {k: plain(v) for k, v in call.velocity.items()})
    with np.errstate(all="ignore"):
        want = getattr(module, case.entry)(*args)
    rtol = 1e-12 if case.dtype == "float64" else 1e-6
    return (
        []
        if same(result, want, rtol)
        else [f"computed {result!r:.200} for what is {want!r:.200} as plain arrays"]
    )


def wrong_dtypes(result: Any, dtype: np.dtype) -> list[str]:
    """Arrays in a result that are not of the module's dtype."""
    if isinstance(result, np.ndarray):
        return [] if result.dtype == dtype else [f"returned an array of {result.dtype}, not {dtype}"]
    if isinstance(result, (tuple, list)):
        return [p for r in result for p in wrong_dtypes(r, dtype)]
    if isinstance(result, dict):
        return [p for r in result.values() for p in wrong_dtypes(r, dtype)]
    return []


def same(a: Any, b: Any, rtol: float | None) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k], rtol) for k in a)
    if isinstance(a, (list, tuple)):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(same(x, y, rtol) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, (np.ndarray, float, np.floating)):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.dtype.kind not in "biuf" or b.dtype.kind not in "biuf":
            return a.shape == b.shape and a.dtype == b.dtype and a.tolist() == b.tolist()
        if rtol is None:  # rounding decides the numbers: only their shapes are compared
            return a.dtype == b.dtype
        scale = float(np.max(np.abs(np.where(np.isfinite(a), a, 0)), initial=1.0))
        return bool(np.allclose(a, b, rtol=rtol, atol=rtol * scale, equal_nan=True))
    return bool(a == b)


def compiled() -> dict[tuple[str, str, str], Any]:
    from dlc.compiler import compile_model

    return {
        (model, dtype, backend): compile_model(text, backend=backend, dtype=dtype, hvp=True)
        for model, text in MODELS.items()
        for dtype in ("float64", "float32")
        for backend in ("numpy", "llvm")
    }


OUTCOMES: Counter[str] = Counter()


def check(case: Case, modules: dict[tuple[str, str, str], Any]) -> None:
    print(repr(case), file=sys.stderr, flush=True)
    results = {b: outcome(case, modules[case.model, case.dtype, b]) for b in ("numpy", "llvm")}
    OUTCOMES[f"{case.entry}: {results['numpy'][0]}"] += 1
    for backend, (_, _, problems) in results.items():
        assert not problems, f"{backend}: {problems}"
    (kind_n, value_n, _), (kind_l, value_l, _) = results["numpy"], results["llvm"]
    assert kind_n == kind_l, f"numpy: {kind_n} {value_n!r:.300}\nllvm: {kind_l} {value_l!r:.300}"
    rtol = 1e-9 if case.dtype == "float64" else 2e-3
    if {"huge", "nan"} & {case.X, case.Y, case.param_array if case.params == "one_bad" else ""}:
        rtol = None  # inputs of 1e30 leave numbers that only rounding decides
    if kind_n == "ok":
        assert same(value_n, value_l, rtol), (
            f"results differ:\nnumpy: {value_n!r:.600}\nllvm: {value_l!r:.600}"
        )
    else:
        assert value_n == value_l, f"messages differ:\nnumpy: {value_n}\nllvm: {value_l}"


def main(argv: list[str] | None = None) -> int:
    """Every single mistake (see :func:`single_mistakes`), then ``--examples`` calls drawn by hypothesis."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--examples", type=int, default=300)
    ap.add_argument(
        "--seed", type=int, default=2026, help="hypothesis's seed: the same calls for the same seed"
    )
    args = ap.parse_args(argv)
    modules = compiled()

    @settings(max_examples=args.examples, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), print_blob=True)  # fmt: skip
    @seed(args.seed)
    @given(cases())
    def every_call(case: Case) -> None:
        check(case, modules)

    for case in single_mistakes():
        check(case, modules)
    every_call()
    print("outcomes (entry point: result):")
    for key, count in sorted(OUTCOMES.items()):
        print(f"  {key}: {count}")
    print("all calls checked", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
