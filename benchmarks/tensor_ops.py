"""What the tensor language's new ops cost: indexing, max, where, against PyTorch and against dlc's own ops.

    python -m benchmarks.tensor_ops [--rounds 7] [--seconds 0.2] [--threads 1]

Training steps (``train_step`` on one batch, float32), timed round-robin
(every contender runs about ``seconds`` of steps per round; medians over
rounds) with BLAS and PyTorch held to ``--threads`` threads:

1. **The recurrent network** of ``examples/char_rnn.dlc`` (4 steps unrolled
   with ``x[t]``, 32 tanh units, 14 classes, Adam), batch 256: dlc's LLVM
   and NumPy modules against the same network in PyTorch eager
   (``torch.optim.Adam``, foreach).
2. **Max pooling** of a dense layer: ``h = relu(W1 @ x)`` with 512 units,
   ``max(reshape(h, [128, 4]), 1)``, then a 10-way softmax cross-entropy,
   SGD, batch 256; against the same with ``mean`` in place of ``max``
   (dlc's reduction that existed before) and against PyTorch
   (``amax`` of the view).
3. **where against the built-in**: a 256-512-512-10 MLP whose activation is
   ``where(z > 0, z, 0.01 * z)`` against the same with ``leaky_relu(z)``:
   the comparison and the choice fuse into one elementwise body, so the two
   should cost the same.

A round during which other processes kept more than a third of a core busy
is left out (see :func:`benchmarks.optimizers.timed`); rerun if a row says
"disturbed".
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.optimizers import timed

ROOT = Path(__file__).resolve().parents[1]
BATCH = 256

POOLED = """
input  x : [64]
target y : [10]
param W1 : [512, 64] = he
param b1 : [512] = zeros
param W2 : [10, 128] = glorot
h = relu(W1 @ x + b1)
p = {kind}(reshape(h, [128, 4]), 1)
loss softmax_cross_entropy(W2 @ p, y)
train {{ optimizer = sgd(lr = 0.01) }}
"""

ACTIVATED = """
input  x : [256]
target y : [10]
param W1 : [512, 256] = he
param W2 : [512, 512] = he
param W3 : [10, 512] = glorot
act(z) = {activation}
loss softmax_cross_entropy(W3 @ act(W2 @ act(W1 @ x)), y)
train {{ optimizer = sgd(lr = 0.01) }}
"""


def _ms(samples: list[float]) -> float:
    return float(np.median(samples)) * 1e3 if samples else float("nan")


def _dlc_step(source: str, backend: str, X: np.ndarray, Y: np.ndarray) -> Callable[[], object]:
    from dlc.compiler import compile_model

    m = compile_model(source, backend=backend, dtype="float32")
    params = m.init_params(0)
    state = m.init_state(params)
    return lambda: m.train_step(params, state, X, Y)


def _batch(inputs: tuple[int, ...], classes: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((BATCH, *inputs)).astype(np.float32)
    Y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, BATCH)]
    return X, Y


def rnn_block(rounds: int, seconds: float) -> None:
    import torch

    print(f"\n### The recurrent network (examples/char_rnn.dlc), batch {BATCH}, float32, Adam: ms per step\n")
    source = (ROOT / "examples" / "char_rnn.dlc").read_text(encoding="utf-8")
    X, Y = _batch((4, 14), 14)
    contenders: dict[str, Callable[[], object]] = {
        f"dlc {backend}": _dlc_step(source, backend, X, Y) for backend in ("llvm", "numpy")
    }
    g = torch.Generator().manual_seed(0)
    shapes = {"Wx": (32, 14), "Wh": (32, 32), "b": (32,), "V": (14, 32), "c": (14,)}
    p = {k: (0.1 * torch.randn(s, generator=g)).requires_grad_() for k, s in shapes.items()}
    opt = torch.optim.Adam(list(p.values()), lr=0.01, foreach=True)
    tx, ty = torch.tensor(X), torch.tensor(Y).argmax(dim=1)

    def torch_step() -> None:
        h = torch.tanh(tx[:, 0] @ p["Wx"].T + p["b"])
        for t in range(1, 4):
            h = torch.tanh(h @ p["Wh"].T + tx[:, t] @ p["Wx"].T + p["b"])
        loss = torch.nn.functional.cross_entropy(h @ p["V"].T + p["c"], ty)
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()

    contenders["PyTorch eager"] = torch_step
    _table(timed(contenders, rounds, seconds), "PyTorch eager")


def pool_block(rounds: int, seconds: float) -> None:
    import torch

    print(f"\n### Max pooling after a 512-unit layer, batch {BATCH}, float32, SGD: ms per step\n")
    X, Y = _batch((64,), 10)
    contenders = {
        f"dlc {backend} {kind}": _dlc_step(POOLED.format(kind=kind), backend, X, Y)
        for backend in ("llvm", "numpy")
        for kind in ("max", "mean")
    }
    g = torch.Generator().manual_seed(0)
    w1 = (0.1 * torch.randn(512, 64, generator=g)).requires_grad_()
    b1 = torch.zeros(512, requires_grad=True)
    w2 = (0.1 * torch.randn(10, 128, generator=g)).requires_grad_()
    opt = torch.optim.SGD([w1, b1, w2], lr=0.01)
    tx, ty = torch.tensor(X), torch.tensor(Y).argmax(dim=1)

    def torch_step() -> None:
        h = torch.relu(tx @ w1.T + b1)
        pooled = torch.amax(h.view(-1, 128, 4), dim=2)
        loss = torch.nn.functional.cross_entropy(pooled @ w2.T, ty)
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()

    contenders["PyTorch eager max"] = torch_step
    _table(timed(contenders, rounds, seconds), "PyTorch eager max")


def where_block(rounds: int, seconds: float) -> None:
    title = "where(z > 0, z, 0.01 * z) against leaky_relu(z), 256-512-512-10"
    print(f"\n### {title}, batch {BATCH}: ms per step\n")
    X, Y = _batch((256,), 10)
    contenders = {
        f"dlc {backend} {name}": _dlc_step(ACTIVATED.format(activation=activation), backend, X, Y)
        for backend in ("llvm", "numpy")
        for name, activation in (("where", "where(z > 0, z, 0.01 * z)"), ("leaky_relu", "leaky_relu(z)"))
    }
    _table(timed(contenders, rounds, seconds), None)


def _table(times: dict[str, list[float]], peer: str | None) -> None:
    print("| contender | ms/step |" + (f" its time / {peer}'s |" if peer else ""))
    print("|---|---|" + ("---|" if peer else ""))
    base = _ms(times[peer]) if peer else None
    for name, samples in times.items():
        ratio = f" {_ms(samples) / base:.2f} |" if base else ""
        print(f"| {name} | {_ms(samples):.3f} |{ratio}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=1, help="BLAS and PyTorch threads")
    ap.add_argument("--blocks", default="rnn,pool,where")
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits

    torch: Any
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    blocks = args.blocks.split(",")
    print(f"{args.rounds} rounds of about {args.seconds} s per contender, interleaved; ", end="")
    print(f"{args.threads} thread(s)")
    with threadpool_limits(args.threads):
        if "rnn" in blocks and torch is not None:
            rnn_block(args.rounds, args.seconds)
        if "pool" in blocks and torch is not None:
            pool_block(args.rounds, args.seconds)
        if "where" in blocks:
            where_block(args.rounds, args.seconds)


if __name__ == "__main__":
    main()
