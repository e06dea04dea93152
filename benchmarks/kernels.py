"""Where an LLVM module's time goes, kernel by kernel: a profile of one entry point.

    python -m benchmarks.kernels MODEL [--entry train_step] [--batch 128] [--steps 50] [--dtype float32]

Compiles MODEL with every kernel call of the entry functions wrapped in reads
of the CPU's cycle counter (``llvm.readcyclecounter``), runs the entry point
``--steps`` times on random data of the model's shapes, and prints each
kernel's share of the cycles, largest first, with what it computes (its
formula or its op and shape). The instrumented module is compiled in this
process and never cached; its kernels are the ones a module gets.
"""

from __future__ import annotations

import argparse
import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from llvmlite import ir

SLOTS = 4096
I64 = ir.IntType(64)
COUNTER = "dlc_profile_cycles"


@contextmanager
def instrumented() -> Iterator[list[str]]:
    """While active, modules compiled here count cycles per kernel call; yields the kernels' names."""
    from dlc.backends.llvm import frame

    names: list[str] = []
    original = frame.Frame.compute

    def compute(self: Any, nodes: Any, done: Any, later: Any = None) -> None:
        b = self.b
        plain_call = b.call
        module = b.module
        counter = module.globals.get(COUNTER)
        if counter is None:
            counter = ir.GlobalVariable(module, ir.ArrayType(I64, SLOTS), COUNTER)
            counter.initializer = ir.Constant(ir.ArrayType(I64, SLOTS), [0] * SLOTS)
        clock = module.globals.get("llvm.readcyclecounter") or ir.Function(
            module, ir.FunctionType(I64, []), "llvm.readcyclecounter"
        )

        def call(fn: Any, args: Any, *rest: Any, **kw: Any) -> Any:
            if getattr(fn, "name", "").startswith("k_"):
                if fn.name not in names:
                    names.append(fn.name)
                slot = b.gep(counter, [ir.Constant(I64, 0), ir.Constant(I64, names.index(fn.name))])
                start = plain_call(clock, [])
                result = plain_call(fn, args, *rest, **kw)
                spent = b.sub(plain_call(clock, []), start)
                b.store(b.add(b.load(slot, typ=I64), spent), slot)
                return result
            return plain_call(fn, args, *rest, **kw)

        b.call = call
        try:
            original(self, nodes, done, later)
        finally:
            del b.call

    frame.Frame.compute = compute  # type: ignore[method-assign]
    try:
        yield names
    finally:
        frame.Frame.compute = original  # type: ignore[method-assign]


def profile(model: str, entry: str, batch: int, steps: int, dtype: str) -> list[tuple[str, float, str]]:
    """(kernel, share of the cycles, what it computes) for ``steps`` calls of ``entry``."""
    from dlc.compiler import compile_model

    cache = os.environ.get("DLC_CACHE_DIR")
    os.environ["DLC_CACHE_DIR"] = ""  # compile here: an instrumented module is never cached
    try:
        with instrumented() as names:
            module = compile_model(model, backend="llvm", dtype=dtype)
            native = module._native()
    finally:
        if cache is None:
            del os.environ["DLC_CACHE_DIR"]
        else:
            os.environ["DLC_CACHE_DIR"] = cache
    rng = np.random.default_rng(0)
    params = module.init_params(0)
    X = rng.standard_normal((batch, *module.INPUT_SHAPE)).astype(dtype)
    shape = module.TARGET_SHAPE
    Y = rng.uniform(size=(batch, *shape)).astype(dtype)
    if shape:
        Y /= Y.sum(axis=-1, keepdims=True)
    calls = {
        "loss": lambda: module.loss(params, X, Y),
        "value_and_grad": lambda: module.value_and_grad(params, X, Y),
    }
    if entry == "train_step":
        state = module.init_state(params)
        calls["train_step"] = lambda: module.train_step(params, state, X, Y, lr=1e-6)
    run = calls[entry]
    run()
    engine = native.engine[0]
    counts = np.ctypeslib.as_array(
        (ctypes.c_int64 * SLOTS).from_address(engine.get_global_value_address(COUNTER))
    )
    counts[:] = 0
    for _ in range(steps):
        run()
    total = counts[: len(names)].sum()
    comments = native_comments(model, dtype)
    rows = [(name, counts[i] / total, comments.get(name, "")) for i, name in enumerate(names)]
    return sorted(rows, key=lambda r: -r[1])


def native_comments(model: str, dtype: str) -> dict[str, str]:
    """What each kernel computes, as the module's IR comments say it."""
    from dlc.backends.llvm.program import native_program
    from dlc.compiler import read_model
    from dlc.grad import differentiate

    graph = read_model(model, None).graph
    native = native_program(differentiate(graph), dtype)
    described = {}
    for node, fn in native.kernels.items():
        described[fn.name] = native.comments.get(fn.name) or f"{node.op_name} {node.shape}"
    return described


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.kernels", description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--entry", default="train_step", choices=["loss", "value_and_grad", "train_step"])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args(argv)
    rows = profile(args.model, args.entry, args.batch, args.steps, args.dtype)
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    print(f"{args.entry} of {args.model}, batch {args.batch}, {args.dtype}, BLAS threads: {threads}\n")
    print("| kernel | share of cycles | computes |\n|---|---|---|")
    for name, share, what in rows:
        print(f"| {name} | {share:.1%} | {what[:90]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
