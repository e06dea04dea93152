"""LeNet-5: dlc's training step against PyTorch eager and JAX jit, its compile time, and where the time goes.

    python -m benchmarks.conv [--rounds 7] [--seconds 0.3] [--threads 1] [--compile-runs 3]

The network is ``benchmarks/models/lenet5.dlc``: conv 6@5x5, max pool 2,
conv 16@5x5, max pool 2, dense 120, 84, 10 (relu), softmax cross-entropy,
SGD with momentum 0.9, on generated data of MNIST's shape (28x28 pixels in
[0, 1), one channel, random one-hot labels), batch 128, float32. PyTorch and
JAX run the same network from the same parameter values (dlc's ``K1`` is
PyTorch's ``conv1.weight``, ...). BLAS (NumPy's and SciPy's, which dlc's
gemm calls), PyTorch and XLA are held to ``--threads`` threads; the "cores
used" column is the process's CPU time over wall time while a contender ran,
to show that they were.

Blocks (``--blocks``, all by default):

0. **check**: at float64, dlc's loss and gradients (LLVM and NumPy modules)
   against PyTorch's for the same parameters and batch, and the parameters
   after two SGD-momentum steps, to a relative 1e-8 (largest difference over
   the largest magnitude, per array); the float32 implementations timed
   below against the same PyTorch float64 reference, to 1e-4.
1. **step**: one training step, timed round-robin (every contender runs
   about ``seconds`` of steps per round; medians over rounds): dlc LLVM
   ``train_step``, dlc NumPy ``train_step``, PyTorch eager
   (``torch.optim.SGD``, momentum 0.9), JAX (one ``jax.jit`` step:
   ``value_and_grad`` and the momentum update; ``block_until_ready``).
   Goals: dlc LLVM at least 3x faster than PyTorch eager, and no slower than
   JAX jit.
2. **compile**: model file to the end of the first ``train_step``, LLVM
   backend, cold: every measurement is a fresh Python process
   (``benchmarks.firststep``'s child) with a fresh, empty ``DLC_CACHE_DIR``.
   Start-up (importing dlc, compiling and JIT-compiling a one-line model) is
   shown apart. Goal: under 1 s.
3. **breakdown**: forward only (``loss``), ``value_and_grad`` and
   ``train_step`` for dlc LLVM, PyTorch and JAX; and the cost of each part
   of the network for dlc LLVM and PyTorch, from prefixes of it (the first
   conv block with a linear 10-way head; both conv blocks with that head;
   the whole network).

A round during which other processes kept more than a third of a core busy
is left out (see :func:`benchmarks.optimizers.timed`); rerun if a row says
"disturbed".
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.measure import relative_error
from benchmarks.optimizers import hold_threads, timed

MODEL = Path(__file__).parent / "models" / "lenet5.dlc"
BATCH = 128
LR, MOMENTUM = 0.05, 0.9  # as lenet5.dlc's train block
CHECK_RTOL = 1e-8  # float64 implementations against PyTorch float64
CHECK_RTOL_32 = 1e-4  # float32 implementations against PyTorch float64
CHECK_STEPS = 2
SPEEDUP_GOAL = 3.0  # dlc LLVM's step at least this many times faster than PyTorch eager's
COMPILE_GOAL_S = 1.0

#: dlc's parameters as PyTorch's (the conv biases are [O, 1, 1] in dlc, [O] in PyTorch).
TORCH_NAMES = {
    "K1": "conv1.weight",
    "c1": "conv1.bias",
    "K2": "conv2.weight",
    "c2": "conv2.bias",
    "W1": "fc1.weight",
    "b1": "fc1.bias",
    "W2": "fc2.weight",
    "b2": "fc2.bias",
    "W3": "fc3.weight",
    "b3": "fc3.bias",
    "H": "head.weight",  # the linear head of the prefixes (breakdown)
    "d": "head.bias",
}

#: The first conv block, or both, then a linear 10-way head: prefixes of LeNet-5 for the breakdown.
PREFIX = """
input  x : [1, 28, 28]
target y : [10]
param K1 : [6, 1, 5, 5] = he
param c1 : [6, 1, 1] = zeros
{params}
param H : [10, {width}] = glorot
param d : [10] = zeros
h1 = max_pool2d(relu(conv2d(x, K1) + c1), 2)
{lines}
loss softmax_cross_entropy(H @ flatten({last}) + d, y)
train {{ optimizer = sgd(lr = 0.05, momentum = 0.9)  batch_size = 128 }}
"""
PREFIXES = {
    "conv1 block + head": PREFIX.format(params="", width=6 * 12 * 12, lines="", last="h1"),
    "conv1, conv2 blocks + head": PREFIX.format(
        params="param K2 : [16, 6, 5, 5] = he\nparam c2 : [16, 1, 1] = zeros",
        width=16 * 4 * 4,
        lines="h2 = max_pool2d(relu(conv2d(h1, K2) + c2), 2)",
        last="h2",
    ),
}
FULL = "LeNet-5"


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def batch(dtype: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Generated data of MNIST's shape: [BATCH, 1, 28, 28] pixels in [0, 1), one-hot [BATCH, 10]."""
    rng = np.random.default_rng(seed)
    X = rng.random((BATCH, 1, 28, 28)).astype(dtype)
    Y = np.eye(10, dtype=dtype)[rng.integers(0, 10, BATCH)]
    return X, Y


def compile_dlc(source: Path | str, backend: str, dtype: str) -> Any:
    from dlc.compiler import compile_model

    return compile_model(source, backend=backend, dtype=dtype)


# --- PyTorch ---------------------------------------------------------------------------------------


def torch_net(params: dict[str, np.ndarray]) -> Any:
    """LeNet-5 (or the prefix that ``params`` has: see PREFIXES) as a PyTorch module with their values."""
    from collections import OrderedDict

    import torch
    from torch import nn

    layers: OrderedDict[str, nn.Module] = OrderedDict()
    layers["conv1"], layers["relu1"], layers["pool1"] = nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2)
    if "K2" in params:
        layers["conv2"], layers["relu2"], layers["pool2"] = nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2)
    layers["flatten"] = nn.Flatten()
    if "W1" in params:
        layers["fc1"], layers["relu3"] = nn.Linear(256, 120), nn.ReLU()
        layers["fc2"], layers["relu4"] = nn.Linear(120, 84), nn.ReLU()
        layers["fc3"] = nn.Linear(84, 10)
    else:
        layers["head"] = nn.Linear(params["H"].shape[1], 10)
    dtype = torch.float64 if next(iter(params.values())).dtype == np.float64 else torch.float32
    net = nn.Sequential(layers).to(dtype)
    assert {TORCH_NAMES[k] for k in params} == {name for name, _ in net.named_parameters()}
    with torch.no_grad():
        for k, a in params.items():
            w = net.get_parameter(TORCH_NAMES[k])
            w.copy_(torch.from_numpy(a).reshape(w.shape))
    return net


def torch_calls(net: Any, X: np.ndarray, Y: np.ndarray) -> dict[str, Callable[[], object]]:
    """Forward only (no graph kept), forward and backward, and the SGD-momentum step."""
    import torch
    from torch.nn import functional

    tx, ty = torch.from_numpy(X), torch.from_numpy(Y).argmax(dim=1)
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)

    def forward() -> object:
        with torch.no_grad():
            return functional.cross_entropy(net(tx), ty)

    def backward() -> object:
        net.zero_grad()
        loss = functional.cross_entropy(net(tx), ty)
        loss.backward()
        return loss

    def step() -> object:
        opt.zero_grad()
        loss = functional.cross_entropy(net(tx), ty)
        loss.backward()
        opt.step()
        return loss

    return {"forward": forward, "value_and_grad": backward, "step": step}


def torch_grads(params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> tuple[float, dict]:
    """PyTorch's loss and gradients, in dlc's names and shapes."""
    net = torch_net(params)
    loss = torch_calls(net, X, Y)["value_and_grad"]()
    grads = {k: net.get_parameter(TORCH_NAMES[k]).grad.numpy().reshape(a.shape) for k, a in params.items()}
    return float(loss.item()), grads  # type: ignore[attr-defined]


# --- JAX -------------------------------------------------------------------------------------------


def jax_calls(params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> dict[str, Callable[[], Any]]:
    """LeNet-5 in jax.numpy on dlc's parameter layout: jitted loss, value_and_grad and step."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    def block(h: jax.Array, K: jax.Array, c: jax.Array) -> jax.Array:
        h = lax.conv_general_dilated(h, K, (1, 1), "VALID", dimension_numbers=("NCHW", "OIHW", "NCHW"))
        h = jax.nn.relu(h + c)  # c : [O, 1, 1]
        return lax.reduce_window(h, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def loss_fn(p: dict, X: jax.Array, Y: jax.Array) -> jax.Array:
        h = block(block(X, p["K1"], p["c1"]), p["K2"], p["c2"]).reshape(X.shape[0], -1)
        h = jax.nn.relu(h @ p["W1"].T + p["b1"])
        h = jax.nn.relu(h @ p["W2"].T + p["b2"])
        z = h @ p["W3"].T + p["b3"]
        return jnp.mean(jax.nn.logsumexp(z, axis=1) - jnp.sum(Y * z, axis=1))

    grad_fn = jax.value_and_grad(loss_fn)

    @jax.jit
    def step(p: dict, v: dict, X: jax.Array, Y: jax.Array) -> tuple:
        loss, g = grad_fn(p, X, Y)
        v = {k: MOMENTUM * v[k] + g[k] for k in p}  # torch.optim.SGD's momentum
        return loss, {k: p[k] - LR * v[k] for k in p}, v

    loss_jit, grad_jit = jax.jit(loss_fn), jax.jit(grad_fn)
    jx, jy = jnp.asarray(X), jnp.asarray(Y)
    box = [{k: jnp.asarray(a) for k, a in params.items()}]
    box.append({k: jnp.zeros_like(a) for k, a in box[0].items()})

    def run_step() -> object:
        loss, box[0], box[1] = step(box[0], box[1], jx, jy)
        return jax.block_until_ready(loss)

    return {
        "forward": lambda: jax.block_until_ready(loss_jit(box[0], jx, jy)),
        "value_and_grad": lambda: jax.block_until_ready(grad_jit(box[0], jx, jy)),
        "step": run_step,
    }


# --- dlc -------------------------------------------------------------------------------------------


def dlc_calls(module: Any, X: np.ndarray, Y: np.ndarray) -> dict[str, Callable[[], object]]:
    params = module.init_params(0)
    state = module.init_state(params)
    return {
        "forward": lambda: module.loss(params, X, Y),
        "value_and_grad": lambda: module.value_and_grad(params, X, Y),
        "step": lambda: module.train_step(params, state, X, Y),
    }


# --- measuring ------------------------------------------------------------------------------------


class Metered:
    """A contender that also counts the process's CPU time and the wall time of its calls."""

    def __init__(self, f: Callable[[], object]) -> None:
        self.f, self.cpu, self.wall = f, 0.0, 0.0

    def __call__(self) -> object:
        c, w = time.process_time(), time.perf_counter()
        out = self.f()
        self.cpu += time.process_time() - c
        self.wall += time.perf_counter() - w
        return out

    @property
    def cores(self) -> float:
        return self.cpu / self.wall if self.wall else float("nan")


def _ms(samples: list[float]) -> float:
    return float(np.median(samples)) * 1e3 if samples else float("nan")


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


# --- blocks ---------------------------------------------------------------------------------------


def check_block(llvm32: Any) -> bool:
    """Loss and gradients against PyTorch float64; True if every float64 row is within CHECK_RTOL."""
    print("\n### Same network: loss and gradients against PyTorch float64, same parameters and batch\n")
    if not have("torch"):
        print("(PyTorch is not installed: nothing to check against)")
        return True
    rows: list[tuple[str, str, str, float, float]] = []
    X, Y = batch("float64")
    params = llvm32.init_params(0)
    params = {k: a.astype(np.float64) for k, a in params.items()}
    ref_loss, ref_grads = torch_grads(params, X, Y)

    def error(loss: float, grads: dict[str, Any]) -> float:
        err = relative_error(np.asarray(loss, np.float64), np.asarray(ref_loss, np.float64))
        return max([err, *(relative_error(np.asarray(grads[k]), g) for k, g in ref_grads.items())])

    what = "loss and gradients"
    for label, backend in (("dlc LLVM", "llvm"), ("dlc NumPy", "numpy")):
        m = compile_dlc(MODEL, backend, "float64")
        rows.append((label, "float64", what, error(*m.value_and_grad(params, X, Y)), CHECK_RTOL))
        if backend == "llvm":  # the optimizer too: parameters after a few steps from the same start
            import torch

            p, net = {k: a.copy() for k, a in params.items()}, torch_net(params)
            state, step = m.init_state(p), torch_calls(net, X, Y)["step"]
            for _ in range(CHECK_STEPS):
                m.train_step(p, state, X, Y)
                step()
            err = 0.0
            with torch.no_grad():
                for k, a in p.items():
                    theirs = net.get_parameter(TORCH_NAMES[k]).numpy().reshape(a.shape)
                    err = max(err, relative_error(a, theirs))
            rows.append((label, "float64", f"parameters after {CHECK_STEPS} steps", err, CHECK_RTOL))
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    p32 = {k: a.astype(np.float32) for k, a in params.items()}
    rows.append(("dlc LLVM", "float32", what, error(*llvm32.value_and_grad(p32, X32, Y32)), CHECK_RTOL_32))
    rows.append(("PyTorch", "float32", what, error(*torch_grads(p32, X32, Y32)), CHECK_RTOL_32))
    if have("jax"):
        loss, grads = jax_calls(p32, X32, Y32)["value_and_grad"]()
        rows.append(("JAX", "float32", what, error(float(loss), grads), CHECK_RTOL_32))
    print("| implementation | dtype | compared | largest relative error | tolerance | within |")
    print("|---|---|---|---|---|---|")
    for label, dtype, compared, err, tol in rows:
        within = "yes" if err <= tol else "**NO**"
        print(f"| {label} | {dtype} | {compared} | {err:.1e} | {tol:.0e} | {within} |")
    same = all(err <= tol for *_, err, tol in rows)
    if not same:
        print("\n**The implementations differ: the timings below do not compare the same network.**")
    return same


def step_block(rounds: int, seconds: float, llvm32: Any, threads: int) -> None:
    print(f"\n### LeNet-5 training step, batch {BATCH}, float32, SGD momentum 0.9: ms per step\n")
    X, Y = batch("float32")
    contenders = {"dlc LLVM": Metered(dlc_calls(llvm32, X, Y)["step"])}
    contenders["dlc NumPy"] = Metered(dlc_calls(compile_dlc(MODEL, "numpy", "float32"), X, Y)["step"])
    params = llvm32.init_params(0)
    if have("torch"):
        contenders["PyTorch eager"] = Metered(torch_calls(torch_net(params), X, Y)["step"])
    if have("jax"):
        contenders["JAX jit"] = Metered(jax_calls(params, X, Y)["step"])
    t = timed(contenders, rounds, seconds)
    dlc = _ms(t["dlc LLVM"])
    print(f"{threads} thread(s) each (cores used: CPU time / wall time while it ran)\n")
    print("| implementation | ms/step | cores used | its time / dlc LLVM's |")
    print("|---|---|---|---|")
    for name, samples in t.items():
        print(f"| {name} | {_ms(samples):.2f} | {contenders[name].cores:.2f} | {_ms(samples) / dlc:.2f} |")
    print()
    if "PyTorch eager" in t:
        speedup = _ms(t["PyTorch eager"]) / dlc
        print(f"- Goal: dlc LLVM ≥ {SPEEDUP_GOAL:g}× faster than PyTorch eager: PyTorch / dlc-LLVM = "
              f"{speedup:.2f}×: {_verdict(speedup >= SPEEDUP_GOAL)}")  # fmt: skip
    else:
        print(f"- Goal: dlc LLVM ≥ {SPEEDUP_GOAL:g}× faster than PyTorch eager: not measured (no PyTorch)")
    if "JAX jit" in t:
        ratio = _ms(t["JAX jit"]) / dlc
        print(
            f"- Goal: dlc LLVM no slower than JAX jit: JAX / dlc-LLVM = {ratio:.2f}×: {_verdict(ratio >= 1)}"
        )
    else:
        print("- Goal: dlc LLVM no slower than JAX jit: not measured (no JAX)")


def compile_block(runs: int) -> None:
    from benchmarks import firststep

    print("\n### LeNet-5 model file to first step, LLVM, float32, cold: seconds\n")
    print(f"{runs} fresh processes, each with a fresh empty DLC_CACHE_DIR. Start-up: importing dlc and")
    print("compiling and JIT-compiling a one-line model (once per process), not part of the total.\n")
    print("| run | start-up | compile_model | first train_step (JIT + step) | total |")
    print("|---|---|---|---|---|")
    totals = []
    for i in range(runs):
        with tempfile.TemporaryDirectory(prefix="dlc-bench-conv-") as cache:
            r = firststep.run_child("llvm", "float32", [MODEL], cache)
        if "error" in r:
            print(f"| {i + 1} | failed: {r['error']} | | | |")
            continue
        compile_s, step_s = r["models"][str(MODEL)]
        totals.append(compile_s + step_s)
        print(f"| {i + 1} | {r['startup_s']:.2f} | {compile_s:.3f} | {step_s:.3f} | {totals[-1]:.3f} |")
    if totals:
        best = float(np.median(totals))
        print(f"\n- Goal: model file to first step under {COMPILE_GOAL_S:g} s (cold): median {best:.3f} s: "
              f"{_verdict(best < COMPILE_GOAL_S)}")  # fmt: skip


def breakdown_block(rounds: int, seconds: float, llvm32: Any) -> None:
    print(f"\n### Where the time goes: LeNet-5, batch {BATCH}, float32: ms per call\n")
    X, Y = batch("float32")
    calls = {"dlc LLVM": dlc_calls(llvm32, X, Y)}
    params = llvm32.init_params(0)
    if have("torch"):
        calls["PyTorch"] = torch_calls(torch_net(params), X, Y)
    if have("jax"):
        calls["JAX jit"] = jax_calls(params, X, Y)
    contenders = {f"{who} {kind}": Metered(f) for who, fs in calls.items() for kind, f in fs.items()}
    # The prefixes of the network: what each part adds.
    for prefix, source in PREFIXES.items():
        m = compile_dlc(source, "llvm", "float32")
        fs = dlc_calls(m, X, Y)
        contenders[f"dlc LLVM {prefix} forward"] = Metered(fs["forward"])
        contenders[f"dlc LLVM {prefix} step"] = Metered(fs["step"])
        if have("torch"):
            fs = torch_calls(torch_net(m.init_params(0)), X, Y)
            contenders[f"PyTorch {prefix} forward"] = Metered(fs["forward"])
            contenders[f"PyTorch {prefix} step"] = Metered(fs["step"])
    t = {k: _ms(v) for k, v in timed(contenders, rounds, seconds).items()}
    print("| implementation | forward (loss) | value_and_grad | step | v&g - forward | step - v&g |")
    print("|---|---|---|---|---|---|")
    for who in calls:
        fwd, vg, step = (t[f"{who} {k}"] for k in ("forward", "value_and_grad", "step"))
        print(f"| {who} | {fwd:.2f} | {vg:.2f} | {step:.2f} | {vg - fwd:.2f} | {step - vg:.2f} |")
    print("\nBy part of the network (from its prefixes, each with a linear 10-way head; "
          "the head's own cost is small):\n")  # fmt: skip
    whos = ["dlc LLVM", *(["PyTorch"] if have("torch") else [])]
    head = "".join(f" {w} forward | {w} step |" for w in whos)
    print(f"| network |{head}")
    print("|---|" + "---|---|" * len(whos))
    rows = {p: [t[f"{w} {p} {k}"] for w in whos for k in ("forward", "step")] for p in PREFIXES}
    rows[FULL] = [t[f"{w} {k}"] for w in whos for k in ("forward", "step")]
    for name, values in rows.items():
        print(f"| {name} |" + "".join(f" {v:.2f} |" for v in values))
    names = list(rows)
    parts = ["conv1 block (conv, relu, pool)", "conv2 block", "dense 120, 84, 10 - head"]
    print(f"| *{parts[0]}* |" + "".join(f" {v:.2f} |" for v in rows[names[0]]))
    for part, a, b in zip(parts[1:], names[:-1], names[1:], strict=True):
        print(f"| *{part}* |" + "".join(f" {y - x:.2f} |" for x, y in zip(rows[a], rows[b], strict=True)))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=1, help="BLAS, PyTorch and XLA threads")
    ap.add_argument("--compile-runs", type=int, default=3, help="fresh processes for the compile time")
    ap.add_argument("--blocks", default="check,step,compile,breakdown")
    args = ap.parse_args(argv)
    blocks = args.blocks.split(",")
    with hold_threads(args.threads):  # before JAX is first imported
        versions = [f"NumPy {np.__version__}"]
        for lib in ("torch", "jax"):
            if have(lib):
                versions.append(f"{lib} {importlib.import_module(lib).__version__}")
        print(f"{args.rounds} rounds of about {args.seconds} s per contender, interleaved; BLAS, PyTorch "
              f"and XLA held to {args.threads} thread(s) (XLA_FLAGS={os.environ['XLA_FLAGS']!r}); "
              f"{', '.join(versions)}")  # fmt: skip
        llvm32 = compile_dlc(MODEL, "llvm", "float32")
        if "check" in blocks:
            check_block(llvm32)
        if "step" in blocks:
            step_block(args.rounds, args.seconds, llvm32, args.threads)
        if "compile" in blocks:
            compile_block(args.compile_runs)
        if "breakdown" in blocks:
            breakdown_block(args.rounds, args.seconds, llvm32)


if __name__ == "__main__":
    main()
