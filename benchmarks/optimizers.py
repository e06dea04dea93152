"""What an optimizer costs: Adam against SGD, and the SimpleChains.jl network against PyTorch and JAX.

    python -m benchmarks.optimizers [--rounds 7] [--seconds 0.2] [--threads 1]

Three blocks, each timed round-robin (every contender runs about
``seconds`` of steps per round; the table gives medians over rounds) with
BLAS, PyTorch and XLA held to ``--threads`` threads:

1. **Adam against SGD on the tiny network** (``benchmarks/models/mlp_tiny.dlc``,
   its batch size, float32 and float64): ``train()`` per step, one epoch of
   100 steps per call, with ``sgd(lr = 0.01, momentum = 0.9)`` and with
   ``adam``. Goal: Adam within 1.3x SGD.
2. **The SimpleChains.jl benchmark**: a 4-32-16-4 tanh MLP, squared error,
   10,000 examples, full batch, float32, Adam. dlc's LLVM module
   (``train_step`` of the whole batch), PyTorch (``torch.optim.Adam``, its
   default foreach implementation) and JAX (``jax.jit`` of gradient and an
   Adam written in ``jax.numpy``). GFLOP/s count the multiply-adds of the
   forward pass, the weight gradients and the gradients of the hidden
   layers, two flops each. Goals: dlc at least 5x PyTorch and 2x JAX, and
   60 GFLOP/s per core.
3. **The update's own cost on the large MLP** (784-1024-1024-10, batch 256,
   float32): the step with Adam minus the step with plain SGD, for dlc's
   LLVM module and for PyTorch (``foreach=True``). Goal: dlc's no more than
   PyTorch's.

A round during which other processes kept more than a third of a core busy
is marked ``*`` and its samples are left out (rerun if a row has none).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from benchmarks.measure import OtherLoad
from benchmarks.neighbour import SIMPLE_CHAINS

MODELS = Path(__file__).parent / "models"
SC_ROWS = 10_000
SC_DIMS = (4, 32, 16, 4)
BUSY = 1 / 3


def flops(dims: tuple[int, ...], rows: int) -> int:
    """Multiply-adds x 2 of forward, weight gradients and hidden-layer gradients."""
    macs = sum(a * b for a, b in itertools.pairwise(dims))
    hidden = sum(a * b for a, b in itertools.pairwise(dims[1:]))
    return 2 * rows * (2 * macs + hidden)


def timed(
    contenders: Mapping[str, Callable[[], object]], rounds: int, seconds: float
) -> dict[str, list[float]]:
    """Seconds per call of each contender, one median per round, interleaved.

    Rounds during which other processes kept more than a third of a core busy
    are left out where others are not; a contender with only disturbed rounds
    keeps them, and its name in the result ends in " (busy)".
    """
    quiet: dict[str, list[float]] = {k: [] for k in contenders}
    busy: dict[str, list[float]] = {k: [] for k in contenders}
    names = list(contenders)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            f = contenders[name]
            f()  # settle
            load = OtherLoad()
            load.start()
            samples: list[float] = []
            end = time.perf_counter() + seconds
            while time.perf_counter() < end or len(samples) < 3:
                t0 = time.perf_counter()
                f()
                samples.append(time.perf_counter() - t0)
            other = load.stop()
            (quiet if other is None or other <= BUSY else busy)[name].append(float(np.median(samples)))
    if any(not quiet[k] for k in names):
        disturbed = ", ".join(k for k in names if not quiet[k])
        print(f"  * disturbed by other load: {disturbed} (rerun when quiet)")
    return {k: quiet[k] or busy[k] for k in names}


def hold_threads(threads: int) -> contextlib.AbstractContextManager[object]:
    """Hold XLA, PyTorch and every BLAS library (NumPy's, SciPy's: dlc's gemm) to ``threads`` threads.

    XLA reads its flags when it starts, so this must come before JAX is first
    imported (an XLA_FLAGS already set is left as it is). The BLAS limit holds
    inside the returned context; child processes get it from the environment.
    """
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, str(threads))
    os.environ.setdefault(
        "XLA_FLAGS",
        f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
        f"intra_op_parallelism_threads={threads}",
    )
    from threadpoolctl import threadpool_limits

    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    return threadpool_limits(threads)


def _us(samples: list[float]) -> str:
    return f"{np.median(samples) * 1e6:.1f}" if samples else "disturbed"


def tiny_block(rounds: int, seconds: float) -> None:
    from benchmarks.spec import load_spec
    from dlc.compiler import compile_model

    print("\n### Adam against SGD, tiny network: train() per step (an epoch of 100 steps per call)\n")
    print("| backend | dtype | sgd µs/step | adam µs/step | adam / sgd |")
    print("|---|---|---|---|---|")
    path = MODELS / "mlp_tiny.dlc"
    spec = load_spec("tiny")
    for backend in ("llvm", "numpy"):
        for dtype in ("float32", "float64"):
            runs = {}
            for name, call in (("sgd", "sgd(lr = 0.01, momentum = 0.9)"), ("adam", "adam(lr = 0.001)")):
                m = compile_model(path, backend=backend, dtype=dtype, optimizer=call)
                rng = np.random.default_rng(0)
                n = 100 * spec.batch
                X = rng.standard_normal((n, spec.dims[0])).astype(dtype)
                Y = np.eye(spec.dims[-1], dtype=dtype)[rng.integers(0, spec.dims[-1], n)]
                params = m.init_params(0)
                state = m.init_state(params)
                runs[name] = lambda m=m, p=params, s=state, X=X, Y=Y, b=spec.batch: m.train(
                    p, X, Y, epochs=1, batch_size=b, state=s
                )
            t = timed(runs, rounds, seconds)
            sgd, adam = (np.median(t[k]) / 100 if t[k] else float("nan") for k in ("sgd", "adam"))
            print(f"| {backend} | {dtype} | {sgd * 1e6:.2f} | {adam * 1e6:.2f} | {adam / sgd:.2f} |")


def _torch_mlp(dims: tuple[int, ...], params: dict[str, np.ndarray], optimizer: str) -> Callable[..., object]:
    import torch

    ws = [torch.tensor(params[f"W{i + 1}"], requires_grad=True) for i in range(len(dims) - 1)]
    bs = [torch.tensor(params[f"b{i + 1}"], requires_grad=True) for i in range(len(dims) - 1)]
    opt = (
        torch.optim.Adam([*ws, *bs], lr=1e-3, foreach=True)
        if optimizer == "adam"
        else torch.optim.SGD([*ws, *bs], lr=1e-3)
    )

    def step(X: torch.Tensor, Y: torch.Tensor, kind: str) -> None:
        h = X
        for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
            h = h @ w.T + b
            if i < len(ws) - 1:
                h = torch.tanh(h)
        if kind == "mse":
            loss = ((h - Y) ** 2).sum(dim=1).mean()
        else:
            loss = torch.nn.functional.cross_entropy(h, Y.argmax(dim=1))
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()

    return step


def _jax_adam(params: dict[str, np.ndarray]) -> Callable[..., object]:
    import jax
    import jax.numpy as jnp

    def loss(p: dict, X: jax.Array, Y: jax.Array) -> jax.Array:
        h = jnp.tanh(X @ p["W1"].T + p["b1"])
        h = jnp.tanh(h @ p["W2"].T + p["b2"])
        out = h @ p["W3"].T + p["b3"]
        return jnp.mean(jnp.sum((out - Y) ** 2, axis=1))

    @jax.jit
    def step(p: dict, m: dict, v: dict, t: jax.Array, X: jax.Array, Y: jax.Array) -> tuple:
        g = jax.grad(loss)(p, X, Y)
        b1, b2, lr, eps = 0.9, 0.999, 1e-3, 1e-8
        m = {k: b1 * m[k] + (1 - b1) * g[k] for k in p}
        v = {k: b2 * v[k] + (1 - b2) * g[k] * g[k] for k in p}
        size = lr / (1 - b1**t)
        root = jnp.sqrt(1 - b2**t)
        p = {k: p[k] - size * m[k] / (jnp.sqrt(v[k]) / root + eps) for k in p}
        return p, m, v, t + 1

    box = [{k: jnp.asarray(a) for k, a in params.items()}]
    box += [{k: jnp.zeros_like(a) for k, a in box[0].items()} for _ in range(2)]
    box.append(jnp.asarray(1.0, dtype=jnp.float32))

    def run(X: jax.Array, Y: jax.Array) -> None:
        out = step(*box, X, Y)
        jax.block_until_ready(out[0])
        box[:] = list(out)

    return run


def simple_chains_block(rounds: int, seconds: float, threads: int) -> None:
    from dlc.compiler import compile_model

    print("\n### SimpleChains.jl network: 4-32-16-4 tanh, squared error, 10,000 rows, full batch, Adam\n")
    m = compile_model(SIMPLE_CHAINS, backend="llvm", dtype="float32", optimizer="adam(lr = 0.001)")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((SC_ROWS, 4)).astype(np.float32)
    Y = rng.standard_normal((SC_ROWS, 4)).astype(np.float32)
    params = m.init_params(0)
    state = m.init_state(params)
    contenders: dict[str, Callable[[], object]] = {"dlc LLVM": lambda: m.train_step(params, state, X, Y)}
    try:
        import torch

        tx, ty = torch.from_numpy(X), torch.from_numpy(Y)
        torch_step = _torch_mlp(SC_DIMS, {k: v.copy() for k, v in params.items()}, "adam")
        contenders["PyTorch"] = lambda: torch_step(tx, ty, "mse")
    except ImportError:
        print("(PyTorch is not installed)")
    try:
        import jax.numpy as jnp

        jx, jy = jnp.asarray(X), jnp.asarray(Y)
        jax_step = _jax_adam({k: v.copy() for k, v in params.items()})
        contenders["JAX jit"] = lambda: jax_step(jx, jy)
    except ImportError:
        print("(JAX is not installed)")
    t = timed(contenders, rounds, seconds)
    work = flops(SC_DIMS, SC_ROWS)
    dlc = np.median(t["dlc LLVM"]) if t["dlc LLVM"] else float("nan")
    print(f"{work / 1e6:.1f} MFLOP per step; {threads} thread(s) each\n")
    print("| implementation | µs/step | GFLOP/s per core | its time / dlc's |")
    print("|---|---|---|---|")
    for name, samples in t.items():
        sec = float(np.median(samples)) if samples else float("nan")
        print(f"| {name} | {sec * 1e6:.0f} | {work / sec / 1e9 / threads:.1f} | {sec / dlc:.2f} |")


def update_cost_block(rounds: int, seconds: float) -> None:
    from dlc.compiler import compile_model

    print("\n### The update's own cost (Adam step - SGD step): MLP 784-1024-1024-10, batch 256, float32\n")
    path = MODELS / "mlp_large.dlc"
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 784)).astype(np.float32)
    Y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 256)]
    contenders: dict[str, Callable[[], object]] = {}
    for kind, call in (("sgd", "sgd(lr = 0.001)"), ("adam", "adam(lr = 0.001)")):
        m = compile_model(path, backend="llvm", dtype="float32", optimizer=call)
        p = m.init_params(0)
        s = m.init_state(p)
        contenders[f"dlc {kind}"] = lambda m=m, p=p, s=s: m.train_step(p, s, X, Y)
    try:
        import torch

        tx, ty = torch.from_numpy(X), torch.from_numpy(Y)
        start = compile_model(path, dtype="float32").init_params(0)
        for kind in ("sgd", "adam"):
            f = _torch_mlp((784, 1024, 1024, 10), {k: v.copy() for k, v in start.items()}, kind)
            contenders[f"PyTorch {kind}"] = lambda f=f: f(tx, ty, "ce")
    except ImportError:
        print("(PyTorch is not installed)")
    t = timed(contenders, rounds, seconds)
    med = {k: float(np.median(v)) if v else float("nan") for k, v in t.items()}
    print("| implementation | step with SGD, ms | step with Adam, ms | Adam's update, ms |")
    print("|---|---|---|---|")
    for who in ("dlc", "PyTorch"):
        if f"{who} sgd" in med:
            sgd, adam = med[f"{who} sgd"], med[f"{who} adam"]
            print(f"| {who} | {sgd * 1e3:.2f} | {adam * 1e3:.2f} | {(adam - sgd) * 1e3:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=1, help="BLAS, PyTorch and XLA threads")
    ap.add_argument("--blocks", default="tiny,simple_chains,update")
    args = ap.parse_args()
    blocks = args.blocks.split(",")
    print(
        f"{args.rounds} rounds of about {args.seconds} s per contender, interleaved; {args.threads} thread(s)"
    )
    with hold_threads(args.threads):
        if "tiny" in blocks:
            tiny_block(args.rounds, args.seconds)
        if "simple_chains" in blocks:
            simple_chains_block(args.rounds, args.seconds, args.threads)
        if "update" in blocks:
            update_cost_block(args.rounds, args.seconds)


if __name__ == "__main__":
    main()
