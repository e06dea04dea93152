"""A training step with a busy neighbour: BLAS threads left to themselves, and as dlc sets them.

    python -m benchmarks.neighbour [--rounds 5] [--seconds 0.5]

On a small machine another busy process is the usual case. OpenBLAS's
threads wait for each other by spinning, so a product split over every core
while one core runs something else can take a hundred times as long. For
each network this times one training step (``train_step`` of a whole batch)
of both backends, quiet and beside one process that keeps a core busy, with
BLAS threads at the library's default and at what ``dlc.blas`` chooses for
the model, and prints the times and the ratio busy / quiet.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from dlc.train.threads import blas_threads, step_flops

SIMPLE_CHAINS = """
# The SimpleChains.jl benchmark network: a 4-32-16-4 tanh MLP, squared error.
input x : [4]
target y : [4]
param W1 : [32, 4] = glorot
param b1 : [32] = zeros
param W2 : [16, 32] = glorot
param b2 : [16] = zeros
param W3 : [4, 16] = glorot
param b3 : [4] = zeros
h1 = tanh(W1 @ x + b1)
h2 = tanh(W2 @ h1 + b2)
loss mse(W3 @ h2 + b3, y)
"""
MODELS = Path(__file__).parent / "models"
NETWORKS = {  # name: (model, rows in the batch)
    "4-32-16-4, 10,000 rows": (SIMPLE_CHAINS, 10_000),
    "small, 64 rows": ((MODELS / "mlp_small.dlc").read_text(), 64),
    "medium, 128 rows": ((MODELS / "mlp_medium.dlc").read_text(), 128),
    "large, 256 rows": ((MODELS / "mlp_large.dlc").read_text(), 256),
}
SPIN = "import time\nend = time.time() + 3600\nwhile time.time() < end: pass\n"


def step_time(module: object, rows: int, seconds: float, threads: int | None) -> float:
    """Median seconds of a training step over about ``seconds``, with ``threads`` BLAS threads."""
    from threadpoolctl import threadpool_limits

    m = module
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, *m.INPUT_SHAPE)).astype(m.DTYPE)  # type: ignore[attr-defined]
    Y = rng.standard_normal((rows, *m.TARGET_SHAPE)).astype(m.DTYPE)  # type: ignore[attr-defined]
    params = m.init_params(0)  # type: ignore[attr-defined]
    state = m.init_state(params)  # type: ignore[attr-defined]
    times = []
    with threadpool_limits(limits=threads, user_api="blas"):
        m.train_step(params, state, X, Y, lr=1e-9, momentum=0.0)  # type: ignore[attr-defined]
        end = time.perf_counter() + seconds
        while time.perf_counter() < end or len(times) < 3:
            t0 = time.perf_counter()
            m.train_step(params, state, X, Y, lr=1e-9, momentum=0.0)  # type: ignore[attr-defined]
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def measure(dtype: str, rounds: int, seconds: float) -> list[dict]:
    from dlc.compiler import compile_model, read_model

    rows = []
    for name, (text, batch) in NETWORKS.items():
        graph = read_model(text).graph
        for backend in ("llvm", "numpy"):
            m = compile_model(text, backend=backend, dtype=dtype)
            cells: dict[tuple[str, str], list[float]] = {}
            chosen: dict[str, int] = {}
            for _ in range(rounds):
                for busy in ("quiet", "busy"):
                    spinner = subprocess.Popen([sys.executable, "-c", SPIN]) if busy == "busy" else None
                    try:
                        time.sleep(0.2 if spinner else 0)
                        chosen[busy] = blas_threads(graph, batch)  # as dlc train decides, at its start
                        for label, threads in (("default", None), ("dlc", chosen[busy])):
                            cells.setdefault((label, busy), []).append(step_time(m, batch, seconds, threads))
                    finally:
                        if spinner is not None:
                            spinner.kill()
                            spinner.wait()
            med = {k: float(np.median(v)) for k, v in cells.items()}
            threads = f"{chosen['quiet']} quiet, {chosen['busy']} busy"
            rows.append({"network": name, "backend": backend, "dlc threads": threads,
                         "flops": step_flops(graph, batch), **med})  # fmt: skip
    return rows


def table(rows: list[dict]) -> str:
    ms = lambda s: f"{s * 1e3:.3f}"  # noqa: E731
    lines = [
        "| network | backend | step Mflop | dlc's BLAS threads | default quiet | default busy | busy/quiet "
        "| dlc quiet | dlc busy | busy/quiet |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        keys = (("default", "quiet"), ("default", "busy"), ("dlc", "quiet"), ("dlc", "busy"))
        dq, db, cq, cb = (r[k] for k in keys)
        lines.append(
            f"| {r['network']} | {r['backend']} | {r['flops'] / 1e6:.1f} | {r['dlc threads']} | {ms(dq)} "
            f"| {ms(db)} | {db / dq:.2f} | {ms(cq)} | {ms(cb)} | {cb / cq:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.neighbour", description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.3, help="per sample")
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args(argv)
    os.environ.setdefault("DLC_CACHE_DIR", "")
    rows = measure(args.dtype, args.rounds, args.seconds)
    print(f"{os.cpu_count()} cores; {args.dtype}; times in ms per step, medians of {args.rounds} rounds\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
