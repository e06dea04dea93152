"""The benchmark's implementations compute dlc's training step (the cross-check, not the timing)."""

from __future__ import annotations

import pytest

from benchmarks.measure import CHECK_RTOL, available_peers, cross_check
from benchmarks.spec import load_spec

EXPECTED = {"tiny": ((2, 8, 2), 32), "small": ((64, 32, 10), 64)}


@pytest.mark.slow  # imports torch, jax and pytensor and compiles for each: well over a few seconds
def test_every_installed_peer_matches_dlcs_training_step() -> None:
    peers, _skipped = available_peers()
    for size, (dims, batch) in EXPECTED.items():
        spec = load_spec(size)
        assert (spec.dims, spec.batch, spec.lr, spec.momentum) == (dims, batch, 0.1, 0.9)
        results = cross_check(spec, peers, "float64")
        assert {r.peer for r in results} == {p.label for p in peers}
        for r in results:
            assert r.dtype_ok, f"{size}: {r.peer} {r.note}"
            assert r.error <= CHECK_RTOL, f"{size}: {r.peer} differs from dlc by {r.error:.1e}"
