"""dlc play: time to the first frame, frames per second, and training speed with and without the page.

    python -m benchmarks.play [--epochs 3000] [--repeats 3] [--backend llvm] [--model examples/spiral.dlc]

The model is ``examples/spiral.dlc`` with its train block's epochs set to
``--epochs`` (playing stops there), on the LLVM backend, float64. The
machine code is made before anything is timed (a warm cache, in a temporary
``DLC_CACHE_DIR``; the user's is never used). BLAS threads: as ``dlc
train`` chooses them (one, for this model's batch of 16), in every block.

One untimed ``dlc train`` run first pays what a process pays once. Each
round, in this order, measures:

1. **alone**: ``dlc train``'s own loop (``dlc.train.run.train``, no files),
   ``--epochs`` epochs: epochs per second of its loop (``Result.seconds``:
   its epochs and their metrics, not the compile or the data before them);
2. **session**: the page's trainer (``Session``: play until it stops at
   ``--epochs``), with no page connected: epochs per second;
3. **page**: the server and the page in headless Chromium (the system's,
   ``/usr/bin/chromium``, driven by Playwright): from the page's navigation
   to its first frame drawn (``window.dlcPlay.firstFrameAt``, the page's
   clock), then play pressed: epochs per second on the server while the
   page draws, and the frames the page drew per second of training.

Goals (issue: ``dlc play``): first frame within 1 s of the server being
ready, 20 frames per second or more, training within 1.5x of ``dlc train``
alone. Before each block the benchmark waits for other processes to leave
the CPUs; a block during which other processes kept more than a third of a
core busy is flagged (in block 3 the browser is part of what is measured,
so only the load before it is checked).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.play", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(ROOT / "examples" / "spiral.dlc"))
    parser.add_argument("--epochs", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", choices=("numpy", "llvm"), default="llvm")
    parser.add_argument(
        "--quick", action="store_true", help="200 epochs, one round, no browser (a smoke test)"
    )
    return parser.parse_args(argv)


def model_text(path: str, epochs: int) -> str:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if not line.strip().startswith("epochs")]
    at = next(i for i, line in enumerate(kept) if line.strip().startswith("train"))
    return "\n".join([*kept[: at + 1], f"    epochs = {epochs}", *kept[at + 1 :]]) + "\n"


def alone(model, backend: str, epochs: int) -> float:
    from dlc.train.run import Options, train

    result = train(model, Options(backend=backend))
    assert len(result.history) == epochs, len(result.history)
    return epochs / result.seconds  # its loop's time: the compile and the data before it are not counted


def played(session, epochs: int) -> float:
    """Epochs per second from play pressed until playing stops at ``epochs``."""
    began = time.perf_counter()
    session.command("play")
    shot = session.snapshot()
    while shot.playing or shot.epoch < epochs:
        shot = session.snapshot(shot.version, timeout=60)
        if shot.error:
            raise RuntimeError(shot.error)
    return epochs / (time.perf_counter() - began)


def page(model, backend: str, epochs: int, browser) -> tuple[float, float, float]:
    """(first frame in s, epochs per second while the page draws, frames drawn per second)."""
    from dlc.playground.run import PlayOptions, start

    with start(model, PlayOptions(backend=backend)) as play:
        tab = browser.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)  # its waits use eval
        try:
            tab.goto(play.url)
            tab.wait_for_function("window.dlcPlay && window.dlcPlay.firstFrameAt > 0", timeout=30_000)
            first = tab.evaluate("window.dlcPlay.firstFrameAt") / 1000  # the page's clock: from navigation
            drawn = tab.evaluate("window.dlcPlay.framesDrawn")
            began = time.perf_counter()
            tab.click("#play")
            shot = play.session.snapshot()
            while shot.playing or shot.epoch < epochs:
                shot = play.session.snapshot(shot.version, timeout=60)
            seconds = time.perf_counter() - began
            frames = tab.evaluate("window.dlcPlay.framesDrawn") - drawn
        finally:
            tab.close()
    return first, epochs / seconds, frames / seconds


def measure(block: str, model, args: argparse.Namespace, browser, rows: dict[str, list[float]]) -> None:
    from dlc.playground.session import Session

    if block == "alone":
        rows["alone"].append(alone(model, args.backend, args.epochs))
    elif block == "session":
        session = Session(model, backend=args.backend)
        try:
            rows["session"].append(played(session, args.epochs))
        finally:
            session.close()
    else:
        first, speed, fps = page(model, args.backend, args.epochs, browser)
        rows["first"].append(first)
        rows["page"].append(speed)
        rows["fps"].append(fps)


def report(args: argparse.Namespace, rows: dict[str, list[float]], flagged: list[str]) -> None:
    print(f"dlc play benchmark: {Path(args.model).name}, {args.epochs} epochs, {args.backend}, float64, "
          f"BLAS threads as dlc train chooses; {args.repeats} rounds, medians (all rounds)")  # fmt: skip
    base = statistics.median(rows["alone"])
    labels = {"alone": "dlc train alone", "session": "play, no page", "page": "play, page open"}
    for name, label in labels.items():
        if rows[name]:
            values = ", ".join(f"{v:.0f}" for v in rows[name])
            ratio = base / statistics.median(rows[name])
            print(f"  {label:<18} {statistics.median(rows[name]):8.0f} epochs/s  ({values})  "
                  f"time x{ratio:.2f} of dlc train alone")  # fmt: skip
    if rows["page"]:  # each round's page against the same round's dlc train: measured a few seconds apart
        ratios = sorted(a / b for a, b in zip(rows["alone"], rows["page"], strict=True))
        shown = ", ".join(f"x{r:.2f}" for r in ratios)
        print(f"  page open, each round's time against its own dlc train alone: {shown}")
    if rows["first"]:
        print(f"  first frame drawn  {statistics.median(rows['first']):.3f} s after navigation  "
              f"({', '.join(f'{v:.3f}' for v in rows['first'])})")  # fmt: skip
        print(f"  frames drawn       {statistics.median(rows['fps']):.1f} per second while training  "
              f"({', '.join(f'{v:.1f}' for v in rows['fps'])})")  # fmt: skip
    for line in flagged:
        print(f"  FLAGGED (rerun): {line}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.quick:
        args.epochs, args.repeats = 200, 1
    os.environ["DLC_CACHE_DIR"] = tempfile.mkdtemp(prefix="dlc-bench-cache-")
    from benchmarks.measure import OtherLoad
    from benchmarks.run import wait_for_quiet
    from dlc.frontend import load_source
    from dlc.playground.headless import CHROMIUM, launch
    from dlc.playground.session import Session

    model = load_source(model_text(args.model, args.epochs), args.model)
    Session(model, backend=args.backend).close()  # the machine code, made once: the cache is warm
    alone(model, args.backend, args.epochs)  # untimed: what the first run in a process pays once
    driver = browser = None
    if not args.quick and CHROMIUM.exists():
        from playwright.sync_api import sync_playwright

        driver = sync_playwright().start()
        browser = launch(driver)
    rows: dict[str, list[float]] = {"alone": [], "session": [], "page": [], "first": [], "fps": []}
    flagged = []
    blocks = ["alone", "session"] + (["page"] if browser is not None else [])
    for r in range(args.repeats):
        for block in blocks:
            wait_for_quiet(0 if args.quick else 20, block)
            load = OtherLoad()
            load.start()
            measure(block, model, args, browser, rows)
            other = load.stop()
            if block != "page" and other is not None and other > 1 / 3:
                flagged.append(f"round {r + 1} {block}: other processes {other:.2f} cores")
    report(args, rows, flagged)
    if browser is not None and driver is not None:
        browser.close()
        driver.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
