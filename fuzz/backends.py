"""The two backends against each other on generated models: ``python -m fuzz.backends --count 300``.

Every valid model the grammar-aware generator of :mod:`fuzz` makes is
compiled by the NumPy backend and by the LLVM backend, and both modules run
on the same random data: loss, gradients, output, and a training step must
agree (to 1e-9 relative, on a scale of the values' size) wherever the NumPy
module's numbers are finite. A model one backend compiles and the other
refuses is a disagreement too. Each JIT compilation takes a fraction of a
second, so the counts are in the hundreds, not the hundred thousands.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import warnings
from dataclasses import dataclass

import numpy as np

import fuzz

RTOL = 1e-9


@dataclass
class Disagreement(Exception):  # noqa: N818 - what the oracle reports, as fuzz.Failure
    """The backends computed different things for one model."""

    what: str
    detail: str

    def __str__(self) -> str:
        return f"{self.what}: {self.detail}"


def _close(name: str, a: object, b: object) -> None:
    """``a`` (LLVM) equals ``b`` (NumPy) where b is finite, relative to b's scale."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise Disagreement(name, f"shape {a.shape} against {b.shape}")
    finite = np.isfinite(b)
    if not np.any(finite):
        return
    scale = max(1.0, float(np.max(np.abs(b[finite]))))
    error = float(np.max(np.abs(a[finite] - b[finite]), initial=0.0)) / scale
    if not error <= RTOL:
        raise Disagreement(name, f"differs by {error:.2e} (relative to {scale:.3g})")


def _run(module: object, X: object, Y: object) -> dict[str, object]:
    """Everything a module computes from its initial parameters on (X, Y)."""
    m = module
    params = m.init_params(0)  # type: ignore[attr-defined]
    out: dict[str, object] = {"loss": m.loss(params, X, Y)}  # type: ignore[attr-defined]
    _, grads = m.value_and_grad(params, X, Y)  # type: ignore[attr-defined]
    out.update({f"gradient of {k}": np.array(g) for k, g in grads.items()})
    with contextlib.suppress(NotImplementedError):
        out["output"] = np.array(m.predict(params, X))  # type: ignore[attr-defined]
    state = m.init_state(params)  # type: ignore[attr-defined]
    try:
        m.train_step(params, state, X, Y, **fuzz.step_settings(vars(m)))  # type: ignore[attr-defined]
    except FloatingPointError:
        return out
    out.update({f"{k} after a step": v for k, v in params.items()})
    return out


def compare(text: str) -> str:
    """'compiled' or 'rejected' (both backends alike); raises Disagreement otherwise."""
    from dlc.compiler import compile_source, load_module
    from dlc.errors import DlcError
    from dlc.frontend import load_source

    try:
        model = load_source(text, "fuzz.dlc")
        numpy_source = compile_source(model, backend="numpy")
    except DlcError:
        return "rejected"
    try:
        native_source = compile_source(model, backend="llvm")
    except DlcError as err:
        raise Disagreement("refused by the LLVM backend only", err.message) from None
    numpy_module = load_module(numpy_source, "fuzz_numpy")
    native = load_module(native_source, "fuzz_llvm")
    X, Y = fuzz.random_batch(vars(numpy_module), 3, 0)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = _run(numpy_module, X, Y)
        got = _run(native, X, Y)
    for key, value in want.items():
        if key not in got:
            raise Disagreement(key, "computed by the NumPy module only")
        _close(key, got[key], value)
    return "compiled"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--only", default="", help="comma-separated words: count only models that use one (conv,pool)"
    )
    args = parser.parse_args(argv)
    words = [w for w in args.only.split(",") if w]
    tally = {"compiled": 0, "rejected": 0, "disagreed": 0}
    index = made = 0
    while made < args.count:
        text = fuzz.generate_model(random.Random(f"dlc-backends:{args.seed}:{index}"))
        index += 1
        if words and not any(w in text for w in words):
            continue
        made += 1
        try:
            tally[compare(text)] += 1
        except Disagreement as bad:
            tally["disagreed"] += 1
            print(f"input {index}: {bad}\n{text}", file=sys.stderr)
    print(", ".join(f"{k} {v}" for k, v in tally.items()))
    return 1 if tally["disagreed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
