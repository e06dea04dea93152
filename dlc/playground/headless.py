"""The system's Chromium, headless, as the page's tests, the README's screenshot and the benchmark start it.

Playwright drives the Chromium that the system's package manager installed
(``apt-get install chromium``); Playwright's own browser download is never
used. The flags keep a headless Chromium off the network: on a machine with
no way out, its background connections would otherwise be refused many at a
time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch(playwright: Any) -> Any:
    """A headless Chromium browser from a started Playwright (``sync_playwright().start()``)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
