"""How many BLAS threads a training run uses: one for small products, else the cores that are free.

OpenBLAS splits a matrix product over all cores, and its threads wait for
each other by spinning. Where a product takes microseconds, the threads
cost more than they bring; and where another process keeps a core busy, a
thread that shares it makes every product wait for it: on a 2-core machine
a small full-batch step took 200 ms with default threads beside a busy
process, against 1.1 ms with one thread (``python -m benchmarks.neighbour``
measures it). So a run uses one thread while its largest product is below
``SMALL_PRODUCT`` multiply-adds, and otherwise as many as there are cores
that other processes leave free when it starts.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator

from dlc.graph.graph import Graph
from dlc.graph.nodes import Einsum, MatMul
from dlc.graph.stats import flops

#: Multiply-adds of the largest product below which one BLAS thread is faster (benchmarks.neighbour).
SMALL_PRODUCT = 1 << 24


def largest_product(graph: Graph, batch: int) -> int:
    """Multiply-adds of the forward pass's largest matrix product, for a batch of ``batch``."""
    sizes = [
        flops(n) // 2 * (batch if n.batched else 1) for n in graph.nodes() if isinstance(n, (MatMul, Einsum))
    ]
    return max(sizes, default=0)


def step_flops(graph: Graph, batch: int) -> int:
    """About the flops of a training step: three times the forward pass's (forward, two for backward)."""
    return 3 * batch * sum(flops(n) for n in graph.nodes() if n.inputs)


def free_cores(sample: float = 0.1) -> int:
    """Cores this process may use that other processes left idle over ``sample`` seconds (at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    busy = _other_load(sample)
    return max(1, cores - math.floor(busy + 0.5)) if busy is not None else cores


def _other_load(sample: float) -> float | None:
    """Cores kept busy by other processes (from /proc/stat), or None where that cannot be read."""

    def machine_busy() -> float | None:
        try:
            with open("/proc/stat") as f:
                user, nice, system, _idle, _wait, irq, softirq, steal = (
                    [int(x) for x in f.readline().split()[1:]] + [0] * 8
                )[:8]
        except (OSError, ValueError):
            return None
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    start, own = machine_busy(), time.process_time()
    t0 = time.perf_counter()
    time.sleep(sample)
    end = machine_busy()
    if start is None or end is None:
        return None
    return max(0.0, (end - start) - (time.process_time() - own)) / (time.perf_counter() - t0)


def blas_threads(graph: Graph, batch: int, cores: int | None = None) -> int:
    """The BLAS threads for training ``graph`` on batches of ``batch``: 1 for small products."""
    if largest_product(graph, batch) < SMALL_PRODUCT:
        return 1
    return free_cores() if cores is None else cores


@contextlib.contextmanager
def training_threads(graph: Graph, batch: int, threads: int | None = None) -> Iterator[int]:
    """Run the body with ``threads`` BLAS threads (by default :func:`blas_threads`'s, all BLAS
    libraries loaded); yields the number."""
    threads = blas_threads(graph, batch) if threads is None else threads
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # then BLAS keeps its own threads
        yield threads
        return
    with threadpool_limits(limits=threads, user_api="blas"):
        yield threads
