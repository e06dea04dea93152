"""dlc play in a real browser: headless Chromium, driven by Playwright, on the page ``dlc play`` serves.

Each model's server is a ``python -m dlc play MODEL --no-browser --port 0`` process (the port it picked is
read from its first line), started once for the module; one browser serves every test. The tests wait on
states (Playwright's ``wait_for_function``) and assert on what the page shows: counts, attributes, pixels,
never on a time. Screenshots go to ``$DLC_PLAY_ARTIFACTS`` (or a temporary folder, whose path is printed).

Chromium is the system's (``apt-get install -y chromium``), never a download: ``/usr/bin/chromium``.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dlc.playground.headless import CHROMIUM, launch

from .conftest import ROOT

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - the module is skipped
    sync_playwright = None

if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)
if sync_playwright is None:
    pytest.skip("the Python package playwright is not installed", allow_module_level=True)
pytest.importorskip("aiohttp", reason="dlc play needs the extra dlc[play]")

pytestmark = pytest.mark.slow  # a browser and a server per model: well over a few seconds

WAIT = 90_000  # ms: generous, for a loaded machine; the tests wait on states, never on a clock
URL_LINE = re.compile(r"dlc play: (http://127\.0\.0\.1:\d+/)")


# ---------------------------------------------------------------- servers


class Server:
    """One ``dlc play`` process; its stdout and stderr are drained by threads (kept for failure messages)."""

    def __init__(self, model: str, backend: str, extra: tuple[str, ...], cache: Path) -> None:
        self.name = f"{model}-{backend}"
        env = {**os.environ, "DLC_CACHE_DIR": str(cache), "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "dlc", "play", str(ROOT / "examples" / f"{model}.dlc"),
                   "--no-browser", "--port", "0", "--backend", backend, *extra]  # fmt: skip
        self.proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.out: list[str] = []
        self.err: list[str] = []
        lines: queue.Queue[str | None] = queue.Queue()

        def drain(stream: Any, keep: list[str], forward: bool) -> None:
            for line in stream:
                keep.append(line)
                if forward:
                    lines.put(line)
            if forward:
                lines.put(None)

        threading.Thread(target=drain, args=(self.proc.stdout, self.out, True), daemon=True).start()
        threading.Thread(target=drain, args=(self.proc.stderr, self.err, False), daemon=True).start()
        while True:
            try:
                line = lines.get(timeout=WAIT / 1000)
            except queue.Empty:
                self.stop()
                pytest.fail(f"dlc play {self.name} printed no address; stderr:\n{''.join(self.err)}")
            if line is None:
                self.stop()
                pytest.fail(f"dlc play {self.name} ended before serving; stderr:\n{''.join(self.err)}")
            match = URL_LINE.search(line)
            if match:
                self.url = match.group(1)
                break

    def model(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "api/model", timeout=60) as response:
            return json.load(response)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    """``servers(model, backend, *flags)``: that server, started at its first use, stopped at the end."""
    running: dict[tuple[str, ...], Server] = {}
    cache = Path(os.environ.get("DLC_CACHE_DIR") or tmp_path_factory.mktemp("dlc-cache"))

    def get(model: str, backend: str = "llvm", *extra: str) -> Server:
        key = (model, backend, *extra)
        if key not in running:
            running[key] = Server(model, backend, extra, cache)
        server = running[key]
        assert server.proc.poll() is None, f"dlc play {server.name} died:\n{''.join(server.err)}"
        return server

    yield get
    for server in running.values():
        server.stop()


# ---------------------------------------------------------------- the browser and the page


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = launch(p)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def say(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """A line on the terminal, past pytest's capture (for what is reported, not asserted)."""
    capture = request.config.pluginmanager.get_plugin("capturemanager")

    def say_(message: str) -> None:
        if capture is None:
            print(message)
            return
        with capture.global_and_fixture_disabled():
            print(f"\n{message}", flush=True)

    return say_


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory, say: Callable[[str], None]) -> Path:
    folder = os.environ.get("DLC_PLAY_ARTIFACTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("play-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    say(f"dlc play screenshots: {path}")
    return path


class Play:
    """The page of one server in a fresh browser context, with the page's errors and requests recorded."""

    def __init__(self, browser: Browser, server: Server, artifacts: Path) -> None:
        self.server = server
        self.artifacts = artifacts
        # the tests' own waits evaluate their conditions as strings, which the page's policy (no eval)
        # refuses; test_the_page_works_under_its_own_content_security_policy runs the page with it
        self.context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("pageerror", lambda err: self.errors.append(str(err)))
        self.page.on("request", lambda req: self.requests.append(req.url))
        self.page.goto(server.url)
        self.wait("window.dlcPlay && window.dlcPlay.framesDrawn > 0")

    def wait(self, expression: str, arg: Any = None) -> None:
        self.page.wait_for_function(expression, arg=arg, timeout=WAIT)

    def status(self) -> dict[str, str]:
        return self.page.eval_on_selector("#status", "e => ({...e.dataset})")

    def epoch(self) -> int:
        return int(self.status()["epoch"])

    def click(self, selector: str) -> None:
        self.page.click(selector, timeout=WAIT)

    def settled(self) -> None:
        """Two animation frames later: the latest frame is on the canvases."""
        self.page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")

    def play_until(self, condition: str, arg: Any = None) -> None:
        """Press play, wait for ``condition``, press pause, wait until the page has drawn the paused state."""
        self.click("#play")
        self.wait(condition, arg)
        # (a run that reached its last epoch has stopped by itself: its pause button is disabled)
        self.page.evaluate(
            "() => { const b = document.querySelector('#pause'); if (!b.disabled) b.click(); }"
        )
        self.wait("document.querySelector('#status').dataset.playing === 'false'")
        self.settled()

    def reset(self) -> None:
        self.click("#reset")
        self.wait("(() => { const d = document.querySelector('#status').dataset;"
                  " return d.epoch === '0' && d.step === '0' && d.playing === 'false'; })()")  # fmt: skip
        self.settled()

    def digest(self, selector: str) -> tuple[int, int, int]:
        """A hash of the canvas' pixels, their sum, and how many different colours a sample of them has."""
        return tuple(
            self.page.eval_on_selector(
                selector,
                """c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let h = 2166136261, sum = 0;
            const colours = new Set();
            for (let i = 0; i < d.length; i++) { h = Math.imul(h ^ d[i], 16777619); sum += d[i]; }
            for (let i = 0; i < d.length; i += 4 * 97) colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
            return [h >>> 0, sum, colours.size];
        }""",
            )
        )

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.artifacts / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()
        assert self.errors == [], f"the page threw: {self.errors}"
        outside = [u for u in self.requests if not u.startswith((self.server.url, "data:"))]
        assert outside == [], f"the page asked for something outside its server: {outside}"


@pytest.fixture
def open_page(
    browser: Browser, servers: Callable[..., Server], artifacts: Path
) -> Iterator[Callable[..., Play]]:
    pages: list[Play] = []

    def open_(model: str, backend: str = "llvm", *extra: str) -> Play:
        play = Play(browser, servers(model, backend, *extra), artifacts)
        pages.append(play)
        return play

    yield open_
    for play in pages:
        play.close()


# ---------------------------------------------------------------- the tests

PAGES = [
    ("spiral", "llvm", ()),
    ("spiral", "numpy", ()),
    ("xor", "llvm", ()),
    ("loss_surface", "llvm", ()),
    ("digits", "numpy", ("--val-split", "0.2")),
    ("regression", "llvm", ()),
]


@pytest.mark.parametrize(("model", "backend", "extra"), PAGES, ids=[f"{m}-{b}" for m, b, _ in PAGES])
def test_the_page_shows_the_model_its_formulas_and_its_views(
    open_page: Callable[..., Play], model: str, backend: str, extra: tuple[str, ...]
) -> None:
    play = open_page(model, backend, *extra)
    page = play.page
    described = play.server.model()
    assert page.text_content("#model-name") == described["name"]
    assert page.text_content("#model-backend") == backend

    # the formulas, laid out by the browser as mathematics
    equations = page.locator("#formulas .equation")
    count = sum(len(section["equations"]) for section in described["formulas"])
    assert equations.count() == count > 0
    assert all(equations.nth(i).get_attribute("data-id") for i in range(min(count, 5)))
    maths = page.locator("#formulas math")
    assert maths.count() >= count
    box = maths.first.bounding_box()
    assert box is not None and box["width"] > 0 and box["height"] > 0
    # `display: inline math` is the page's style for a formula: a browser without MathML would drop it
    assert maths.first.evaluate("m => getComputedStyle(m).display") in ("math", "inline math")
    fractions = page.locator("#formulas mfrac")
    if fractions.count():  # a fraction is drawn with its numerator above its denominator
        above = fractions.first.evaluate(
            "f => f.children[0].getBoundingClientRect().bottom"
            " <= f.children[1].getBoundingClientRect().top + 1"
        )
        assert above

    # the diagram: a box per node, a line per edge
    nodes = described["diagram"]["nodes"]
    assert page.locator("#diagram .node").count() == len(nodes) > 0
    assert page.locator("#diagram .edge").count() == len(described["diagram"]["edges"])
    for node in nodes:
        assert page.locator(f'#diagram .node[data-id="{node["id"]}"]').text_content().find(node["name"]) >= 0

    # the controls from the description
    options = page.eval_on_selector_all("#optimizer option", "os => os.map(o => o.value)")
    assert options == list(described["optimizers"])
    assert page.input_value("#optimizer") == described["controls"]["optimizer"]
    for name in described["controls"]["settings"]:
        assert page.locator(f'[data-setting="{name}"]').count() == 1

    # the views the model has
    views = described["views"]
    if views["plane"]:
        assert page.locator("#boundary").is_visible()
        units = sum(layer["count"] for layer in views["plane"]["units"] or [])
        assert page.locator("#units canvas").count() == units
        assert play.digest("#boundary")[2] > 1, "the output map is one colour"
    if views["surface"]:
        assert page.locator("#surface").is_visible()
        assert play.digest("#surface")[2] > 10, "the loss surface is not drawn"
    if views["weights"]:
        rows = sum(w["rows"] for w in views["weights"])
        assert page.locator("#weights canvas").count() == rows
    stats = page.evaluate("window.dlcPlay.lastFrame.stats") or []
    assert page.locator("#stats tbody tr").count() == len(stats)
    play.shot(f"{model}-{backend}-loaded")


STEPPED = [("spiral", "llvm"), ("spiral", "numpy"), ("loss_surface", "llvm")]


@pytest.mark.parametrize(("model", "backend"), STEPPED)
def test_a_step_moves_the_status(open_page: Callable[..., Play], model: str, backend: str) -> None:
    play = open_page(model, backend)
    play.reset()
    before = play.status()
    play.click("#step")
    play.wait("document.querySelector('#status').dataset.step !== '0'"
              " || document.querySelector('#status').dataset.epoch !== '0'")  # fmt: skip
    after = play.status()
    steps = play.page.evaluate("window.dlcPlay.lastFrame.steps")
    if steps == 1:  # one step is the whole epoch
        assert (after["epoch"], after["step"]) == ("1", "0")
    else:
        assert (after["epoch"], after["step"]) == ("0", "1")
    assert after["loss"] not in ("", before["loss"])
    assert float(after["loss"]) == float(after["loss"])  # a number, not nan
    assert play.page.text_content("#status-loss") != "–"


@pytest.mark.parametrize("model", ["spiral", "xor"])
def test_training_changes_what_the_network_learned(
    open_page: Callable[..., Play], say: Callable[[str], None], model: str
) -> None:
    play = open_page(model, "llvm")
    play.reset()
    boundary, units = play.digest("#boundary"), play.digest("#units canvas")
    before = play.page.evaluate("({...window.dlcPlay, lastFrame: undefined, now: performance.now()})")
    # at least 30 epochs, and 40 frames drawn (for the rate reported below) unless the run ended
    play.play_until(
        "drawn => Number(document.querySelector('#status').dataset.epoch) >= 30"
        " && (window.dlcPlay.framesDrawn >= drawn + 40 || !window.dlcPlay.lastFrame.playing)",
        before["framesDrawn"],
    )
    counts = play.page.evaluate("({...window.dlcPlay, lastFrame: undefined, now: performance.now()})")
    drawn = counts["framesDrawn"] - before["framesDrawn"]
    assert drawn > 1
    assert counts["framesDrawn"] <= counts["framesReceived"] + 2, "frames drawn that never came"
    # reported, not asserted: the rate depends on the machine
    seconds = (counts["now"] - before["now"]) / 1000
    say(
        f"dlc play {model}: {drawn} frames drawn in {seconds:.2f} s of the page's clock"
        f" ({drawn / seconds:.1f}/s), {counts['drawMs'] / max(1, counts['framesDrawn']):.2f} ms each"
    )
    assert counts["epochsCharted"] == play.epoch() >= 30
    after = play.digest("#boundary")
    assert after[0] != boundary[0], "the output map did not change"
    assert play.digest("#units canvas") != units, "the first hidden unit's map did not change"
    chart = play.digest("#loss-chart")
    assert chart[2] > 2, "the loss chart is empty"
    play.shot(f"{model}-trained")


def test_training_walks_the_loss_surface(open_page: Callable[..., Play]) -> None:
    play = open_page("loss_surface", "llvm")
    play.reset()
    start = play.page.evaluate("window.dlcPlay.pathPoints")
    surface = play.digest("#surface")
    play.play_until("start => window.dlcPlay.pathPoints >= start + 20", start)
    assert play.page.evaluate("window.dlcPlay.pathPoints") >= start + 20
    assert play.digest("#surface")[0] != surface[0], "the path is not drawn"
    play.shot("loss_surface-trained")
    # a reset starts the path again
    play.reset()
    assert play.page.evaluate("window.dlcPlay.pathPoints") <= max(start, 1)


@pytest.mark.parametrize(("model", "backend"), [("spiral", "llvm"), ("digits", "numpy")])
def test_an_equation_shows_its_values(open_page: Callable[..., Play], model: str, backend: str) -> None:
    extra = ("--val-split", "0.2") if model == "digits" else ()
    play = open_page(model, backend, *extra)
    equation = play.page.locator("#formulas .equation").nth(1)
    equation.click()
    play.page.wait_for_selector("#plugged math", timeout=WAIT)
    box = play.page.locator("#plugged math").first.bounding_box()
    assert box is not None and box["width"] > 0 and box["height"] > 0
    # the values open beside the formula clicked
    assert equation.evaluate("e => e.nextElementSibling && e.nextElementSibling.id === 'plugged'")
    play.shot(f"{model}-{backend}-plugged")
    play.click("#plugged .close")
    assert play.page.locator("#plugged").count() == 0


def test_held_out_data_is_charted_dashed(open_page: Callable[..., Play]) -> None:
    play = open_page("digits", "numpy", "--val-split", "0.2")
    play.reset()
    chart = play.digest("#loss-chart")
    play.click("#epoch")
    play.wait("window.dlcPlay.epochsCharted >= 1")
    play.settled()
    last = play.page.evaluate("window.dlcPlay.lastFrame.history")
    assert last and last[-1]["val_loss"] is not None and last[-1]["val_accuracy"] is not None
    legend = play.page.text_content("#chart-legend")
    assert "validation loss" in legend and "validation accuracy" in legend
    assert play.page.locator("#chart-legend .line.dashed").count() == 2
    assert play.digest("#loss-chart") != chart
    assert "359 held out" in play.page.text_content("#model-data")


def test_a_bad_setting_is_refused_and_another_optimizer_trains(open_page: Callable[..., Play]) -> None:
    play = open_page("spiral", "numpy")
    page = play.page
    play.reset()
    lr = page.locator('[data-setting="lr"]')
    old = lr.input_value()
    lr.fill("-1")
    lr.press("Enter")
    play.wait("!document.querySelector('#error').hidden")
    assert page.locator("#error").is_visible()
    assert page.text_content("#error-text").strip()
    colour = page.eval_on_selector("#error", "e => getComputedStyle(e).color")
    red, green, blue = (int(v) for v in re.findall(r"\d+", colour)[:3])
    assert red > 150 and green < 100 and blue < 100, "the error is not red"
    assert lr.input_value() == old, "the refused value stayed in the field"
    play.shot("spiral-numpy-error")

    page.select_option("#optimizer", "adam")
    play.wait("document.querySelector('#error').hidden")
    assert page.input_value("#optimizer") == "adam"
    # the optimizer's update formulas are adam's now
    play.wait("document.querySelector('#formulas section[data-update=true] h3').textContent.includes('adam')")
    adam = [s["name"] for s in play.server.model()["optimizers"]["adam"]]
    for name in adam:
        assert page.locator(f'[data-setting="{name}"]').count() == 1
    epoch = play.epoch()
    play.play_until("epoch => Number(document.querySelector('#status').dataset.epoch) >= epoch + 5", epoch)
    assert play.epoch() >= epoch + 5
    loss = float(play.status()["loss"])
    assert loss == loss and loss < 10


def test_reset_runs_the_same_run_again(open_page: Callable[..., Play]) -> None:
    play = open_page("spiral", "llvm")
    play.play_until("Number(document.querySelector('#status').dataset.epoch) >= 3")

    def run() -> list[str]:
        play.reset()
        assert play.page.evaluate("window.dlcPlay.epochsCharted") == 0, "the chart kept the old run"
        losses = []
        for step in (1, 2, 3):
            play.click("#step")
            play.wait(f"document.querySelector('#status').dataset.step === '{step}'")
            losses.append(play.status()["loss"])
        play.click("#epoch")
        play.wait("document.querySelector('#status').dataset.epoch === '1'")
        play.wait("window.dlcPlay.epochsCharted === 1")
        losses.append(play.status()["loss"])
        return losses

    first = run()
    again = run()
    assert first == again
    assert all(float(v) > 0 for v in first)


def test_the_page_works_under_its_own_content_security_policy(
    browser: Browser, servers: Callable[..., Server]
) -> None:
    """The policy the server sends (own script only, no eval, own server only) enforced: the page
    draws, steps and shows formulas, and the browser reports no violation."""
    server = servers("xor", "llvm")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda err: problems.append(str(err)))
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        page.goto(server.url)
        page.wait_for_selector("#formulas math", timeout=WAIT)
        page.click("#reset", timeout=WAIT)  # the server is the module's: other tests trained it
        page.wait_for_selector("#status[data-epoch='0']", timeout=WAIT)
        page.click("#epoch", timeout=WAIT)
        page.wait_for_selector("#status[data-epoch='1']", timeout=WAIT)
        page.click("#formulas .equation", timeout=WAIT)
        page.wait_for_selector("#plugged math", timeout=WAIT)
    finally:
        context.close()
    assert problems == []
