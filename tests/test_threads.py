"""BLAS threads: one for small products, the free cores for large ones, set for every BLAS loaded."""

from __future__ import annotations

import numpy as np
import pytest

from dlc.compiler import read_model
from dlc.train import run
from dlc.train.threads import SMALL_PRODUCT, blas_threads, free_cores, largest_product, training_threads

from .conftest import ROOT

threadpoolctl = pytest.importorskip("threadpoolctl")


def test_small_products_get_one_thread_and_large_ones_the_free_cores() -> None:
    tiny = read_model(ROOT / "benchmarks" / "models" / "mlp_tiny.dlc").graph
    large = read_model(ROOT / "benchmarks" / "models" / "mlp_large.dlc").graph
    assert largest_product(tiny, 32) == 32 * 8 * 2  # [32, 2] x [2, 8] and [32, 8] x [8, 2]
    assert largest_product(large, 256) == 256 * 1024 * 1024 > SMALL_PRODUCT
    assert blas_threads(tiny, 10_000, cores=2) == 1
    assert blas_threads(large, 256, cores=2) == 2
    assert 1 <= free_cores(0.01) <= len(__import__("os").sched_getaffinity(0))


def test_the_threads_are_set_for_every_blas_while_training_and_restored_after() -> None:
    tiny = read_model(ROOT / "benchmarks" / "models" / "mlp_tiny.dlc").graph
    import scipy.linalg  # noqa: F401 - SciPy's BLAS, as the LLVM modules use it

    before = [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
    with training_threads(tiny, 32) as threads:
        inside = [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
    after = [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
    assert threads == 1 and inside and set(inside) == {1}
    assert after == before


def test_a_training_run_says_how_many_threads_it_used(tmp_path: object) -> None:
    model = read_model(ROOT / "examples" / "xor.dlc")
    result = run.train(model, run.Options(epochs=2, data="builtin:xor"))
    assert result.blas_threads == 1
    assert np.isfinite(result.history[-1].loss)
