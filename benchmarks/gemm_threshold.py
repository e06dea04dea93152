"""Where BLAS starts to beat the LLVM backend's generated matrix products.

    python -m benchmarks.gemm_threshold [--dtype float64] [--repeat 7]

For square-ish layers (a batch of B examples through a [n, n] weight matrix)
of growing size, the training step of a one-layer model is timed twice in
one process, interleaved: every product through the generated register-tiled
loops (no BLAS), and every product through BLAS (threshold 0). The table gives
the multiply-adds of the layer's forward product and both times; the first
size from which BLAS wins for good is the threshold the backend uses
(``GEMM_MIN_FLOPS`` in dlc/backends/llvm/tensor.py). The machine's noise
is visible in the spread of the repeats; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dlc.compiler import compile_model

SIZES = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384)


def model(n: int) -> str:
    return f"input x : [{n}]\ntarget y : [{n}]\nparam W : [{n}, {n}] = glorot\nloss mse(tanh(W @ x), y)\n"


def time_steps(
    module: object, params: dict, state: dict, X: np.ndarray, Y: np.ndarray, seconds: float
) -> float:
    """Seconds per training step, over as many steps as fit in ``seconds``."""
    step = module.train_step  # type: ignore[attr-defined]
    count, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds or count < 3:
        step(params, state, X, Y, lr=1e-6, momentum=0.0)
        count += 1
    return (time.perf_counter() - began) / count


def measure(n: int, dtype: str, repeat: int) -> tuple[float, float]:
    """Median seconds per step with generated loops, and with BLAS, for a batch of n through [n, n]."""
    module = compile_model(model(n), backend="llvm", dtype=dtype)
    rng = np.random.default_rng(0)
    params = module.init_params(0)
    state = module.init_state(params)
    X, Y = (rng.normal(size=(n, n)).astype(dtype) for _ in range(2))
    native = module._native()
    gemm, threshold = native.slot["GEMM"], native.slot["BLAS_MIN"]
    blas = int(native.ctx[gemm])
    if blas == 0:
        raise SystemExit("SciPy's BLAS is not available: nothing to compare")
    times: dict[str, list[float]] = {"loops": [], "blas": []}
    for _ in range(repeat):
        for how in ("loops", "blas"):
            native.ctx[gemm], native.ctx[threshold] = (0, 0) if how == "loops" else (blas, 0)
            times[how].append(time_steps(module, params, state, X, Y, 0.05))
    return float(np.median(times["loops"])), float(np.median(times["blas"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    args = parser.parse_args(argv)
    print(f"{args.dtype}: a batch of n through [n, n], one training step")
    print("| n | multiply-adds | loops µs/step | BLAS µs/step | BLAS / loops |")
    print("|---|---|---|---|---|")
    for n in (int(s) for s in args.sizes.split(",")):
        loops, blas = measure(n, args.dtype, args.repeat)
        print(f"| {n} | {n**3:,} | {loops * 1e6:.1f} | {blas * 1e6:.1f} | {blas / loops:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
