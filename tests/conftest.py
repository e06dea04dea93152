"""Shared fixtures and hypothesis profiles (``dev`` is fast, ``ci`` thorough).

Every test session compiles native code into a machine-code cache of its own
(``DLC_CACHE_DIR``, set in ``os.environ`` so that the commands the tests start
use it too), never the user's ``~/.cache/dlc``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from dlc.errors import DlcError
from dlc.frontend import load_source

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.dlc"))

settings.register_profile("dev", max_examples=25, deadline=None)
settings.register_profile("ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(scope="session", autouse=True)
def machine_code_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A temporary machine-code cache for the whole session, for this process and its children."""
    folder = tmp_path_factory.mktemp("dlc-cache")
    before = os.environ.get("DLC_CACHE_DIR")
    os.environ["DLC_CACHE_DIR"] = str(folder)
    yield folder
    if before is None:
        del os.environ["DLC_CACHE_DIR"]
    else:
        os.environ["DLC_CACHE_DIR"] = before


def error_at(source: str) -> DlcError:
    """The error that loading the model text ``source`` raises (a test fails if none)."""
    with pytest.raises(DlcError) as info:
        load_source(source)
    return info.value
