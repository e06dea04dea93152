"""Regenerate the README's picture of dlc play: ``python scripts/play_screenshot.py [--out docs/play.png]``.

Starts ``python -m dlc play examples/spiral.dlc --no-browser --port 0 --backend llvm``, opens its page in
headless Chromium (the system's, /usr/bin/chromium, driven by Playwright), trains until about epoch 150,
pauses, opens one formula's plugged-in values, and saves a screenshot of the whole page. The server is
stopped at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WAIT = 120_000  # ms
EPOCHS = 150


def start_server(model: Path, cache: str) -> tuple[subprocess.Popen[str], str]:
    """The server process and the address it printed on its first line."""
    command = [sys.executable, "-m", "dlc", "play", str(model), "--no-browser", "--port", "0"]
    command += ["--backend", "llvm"]
    env = {**os.environ, "DLC_CACHE_DIR": cache, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str | None] = queue.Queue()
    errors: list[str] = []

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    def drain_errors() -> None:
        assert proc.stderr is not None
        errors.extend(proc.stderr)

    threading.Thread(target=drain, daemon=True).start()
    threading.Thread(target=drain_errors, daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=WAIT / 1000)
        except queue.Empty:
            line = None
        if line is None:
            stop_server(proc)
            raise SystemExit("dlc play did not print its address:\n" + "".join(errors))
        match = re.search(r"dlc play: (http://127\.0\.0\.1:\d+/)", line)
        if match:
            return proc, match.group(1)


def stop_server(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def screenshot(url: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    from dlc.playground.headless import launch

    status = "document.querySelector('#status').dataset"
    with sync_playwright() as p:
        browser = launch(p)
        try:
            # the script's waits evaluate strings, which the page's own policy (no eval) refuses
            page = browser.new_page(viewport={"width": 1280, "height": 800}, bypass_csp=True)
            page.goto(url)
            page.wait_for_function("window.dlcPlay && window.dlcPlay.framesDrawn > 0", timeout=WAIT)
            page.click("#play")
            page.wait_for_function(f"Number({status}.epoch) >= {EPOCHS}", timeout=WAIT)
            # (the run may have reached its last epoch and stopped by itself: then pause is disabled)
            page.evaluate("() => { const b = document.querySelector('#pause'); if (!b.disabled) b.click(); }")
            page.wait_for_function(f"{status}.playing === 'false'", timeout=WAIT)
            # a formula whose values are short: the last hidden layer's (2 units), else the second one
            equations = page.locator("#formulas .equation")
            chosen = page.locator('#formulas .equation[title^="h₃ ="]')
            (chosen.first if chosen.count() else equations.nth(1)).click()
            page.wait_for_selector("#plugged math", timeout=WAIT)
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "play.png", help="default: docs/play.png")
    spiral = ROOT / "examples" / "spiral.dlc"
    parser.add_argument("--model", type=Path, default=spiral, help=argparse.SUPPRESS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dlc-play-cache-") as cache:
        proc, url = start_server(args.model, cache)
        try:
            screenshot(url, args.out)
        finally:
            stop_server(proc)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
