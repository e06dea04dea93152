"""The page's server (aiohttp), on 127.0.0.1 only.

Routes (JSON unless said):

- ``GET /``, ``GET /static/play.js``, ``GET /static/play.css``: the page, from a
  fixed list of files in ``dlc/playground/static``; no request names a file.
- ``GET /api/model``: the model (diagram, formulas as MathML, optimizers,
  controls, and what the views draw: the input plane, the loss surface,
  weight images).
- ``GET /api/events``: server-sent events, ``event: frame``, at most
  ``MAX_FPS`` a second while training runs (:meth:`Views.frame`).
- ``POST /api/control`` ``{"action": "play" | "pause" | "step" | "epoch" | "reset"}``.
- ``POST /api/settings`` ``{"optimizer", "settings", "batch_size", "seed"}``
  (any of them): taken at the next step; 400 with ``{"error"}`` if refused.
- ``GET /api/plug/{id}``: formula ``id`` with the current values put in.

A request can read and run nothing but this: the model and data are the
ones given when the server started. Requests whose ``Host`` is not this
server's address are refused (a web page elsewhere cannot reach it through
a name that resolves to 127.0.0.1), and so are POSTs that are not JSON or
come from another origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Any

from dlc.errors import DlcError
from dlc.playground.session import MAX_FPS, Session
from dlc.playground.views import Views

#: The only files a request can get, and their types.
STATIC = {
    "/": ("index.html", "text/html"),
    "/static/play.js": ("play.js", "text/javascript"),
    "/static/play.css": ("play.css", "text/css"),
}
#: The page runs only its own script and reaches only its own server (MathML from the server is markup
#: inserted into the page: were it ever to carry a script, the browser would not run it).
HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'",
}
#: The largest request body (a control's JSON is a few dozen bytes).
MAX_BODY = 16 << 10
#: While training runs, the hidden units' maps go with every UNITS_EVERY-th frame (the page keeps the last):
#: dozens of small pictures cost the page more to draw than the output's map.
UNITS_EVERY = 3
#: Pages streaming frames at once (each costs a frame's pictures per frame).
MAX_STREAMS = 8
#: Seconds between frames' gradient statistics, and between keep-alive comments of an idle stream.
STATS_EVERY, KEEP_ALIVE = 0.2, 15.0


def _web() -> Any:
    try:
        from aiohttp import web
    except ImportError:
        raise DlcError("dlc play needs aiohttp", hint='pip install "dlc[play]"') from None
    return web


class App:
    """The session, its views, and the aiohttp application serving them."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.views = Views(session)
        self.described = self.views.model()  # built before the server is ready: the first load is quick
        self.updates: dict[str, dict[str, Any]] = {}
        self.streams = 0
        self.port = 0
        web = _web()
        self.web = web
        self.app = web.Application(client_max_size=MAX_BODY, middlewares=[self._guard])
        self.app.router.add_get("/", self._static)
        self.app.router.add_get("/static/{name}", self._static)
        self.app.router.add_get("/api/model", self._model)
        self.app.router.add_get("/api/events", self._events)
        self.app.router.add_post("/api/control", self._control)
        self.app.router.add_post("/api/settings", self._settings)
        self.app.router.add_get("/api/plug/{id}", self._plug)

    # --- requests

    @property
    def _guard(self) -> Callable[..., Awaitable[Any]]:
        web = _web()

        @web.middleware
        async def guard(request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
            hosts = {f"127.0.0.1:{self.port}", f"localhost:{self.port}"}
            if self.port == 80:  # a browser leaves the default port out of Host
                hosts |= {"127.0.0.1", "localhost"}
            if request.host not in hosts:
                return web.json_response({"error": "this server answers only on 127.0.0.1"}, status=403)
            if request.method == "POST":
                origin = request.headers.get("Origin")
                if origin is not None and origin not in {f"http://{h}" for h in hosts}:
                    return web.json_response({"error": "requests from other pages are refused"}, status=403)
                if request.content_type != "application/json":
                    return web.json_response({"error": "send JSON (application/json)"}, status=415)
            return await handler(request)

        return guard

    async def _static(self, request: Any) -> Any:
        entry = STATIC.get(request.path)
        if entry is None:
            raise self.web.HTTPNotFound()
        name, kind = entry
        body = resources.files("dlc.playground").joinpath("static", name).read_bytes()
        return self.web.Response(body=body, content_type=kind, headers=HEADERS)

    async def _model(self, request: Any) -> Any:
        described = dict(self.described)
        described["formulas"] = [*described["formulas"], self._update()]
        described["controls"] = self.session.controls.as_json()
        return self.web.json_response(described, dumps=_dumps)

    def _update(self) -> dict[str, Any]:
        """The optimizer's update formulas (made once per optimizer), titled with its settings now."""
        call = self.session.module.OPTIMIZER
        if call not in self.updates:
            self.updates[call] = self.views.update()
        controls = self.session.controls
        now = ", ".join(f"{k} = {v:g}" for k, v in controls.settings.items())
        title = f"Update, {controls.optimizer}({now}): every element w of every parameter, g its gradient"
        return {**self.updates[call], "title": title}

    async def _json(self, request: Any) -> Any:
        try:
            return await request.json()
        except (ValueError, UnicodeDecodeError, LookupError, RecursionError):  # LookupError: its charset
            raise self._refuse("the request is not JSON") from None

    def _refuse(self, message: str) -> Any:
        return self.web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")

    async def _control(self, request: Any) -> Any:
        body = await self._json(request)
        action = body.get("action") if isinstance(body, dict) else None
        if action not in ("play", "pause", "step", "epoch", "reset"):
            raise self._refuse("the action is one of play, pause, step, epoch, reset")
        await self._run(self.session.command, action)
        return self.web.json_response({"ok": True})

    async def _settings(self, request: Any) -> Any:
        body = await self._json(request)
        controls = await self._run(self.session.command, "settings", body)
        return self.web.json_response(
            {"ok": True, "controls": controls, "update": self._update()}, dumps=_dumps
        )

    async def _run(self, work: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(None, work, *args)
        except DlcError as err:
            raise self._refuse(err.message + (f" ({err.hint})" if err.hint else "")) from None

    async def _plug(self, request: Any) -> Any:
        text = request.match_info["id"]
        if not (text.isascii() and text.isdigit()) or len(text) > 6:
            raise self.web.HTTPNotFound()
        try:
            found = await asyncio.get_running_loop().run_in_executor(None, self.views.plug, int(text))
        except KeyError:
            raise self.web.HTTPNotFound() from None
        return self.web.json_response({"mathml": found})

    async def _events(self, request: Any) -> Any:
        response = self.web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        if self.streams >= MAX_STREAMS:
            return self.web.json_response({"error": f"at most {MAX_STREAMS} pages at once"}, status=503)
        self.streams += 1
        try:
            await response.prepare(request)
            with contextlib.suppress(ConnectionResetError):  # the page went away: its stream ends here
                await self._stream(request, response)
        finally:
            self.streams -= 1
        return response

    async def _stream(self, request: Any, response: Any) -> None:
        loop = asyncio.get_running_loop()
        version, generation, sent, points, stats_at, surface, count = -1, -1, 0, 0, 0.0, 1, 0
        quiet_since = time.monotonic()
        while request.transport is not None and not request.transport.is_closing():
            shot = self.session.snapshot()  # the latest, at once: no thread waits for a stream
            if shot.version == version:  # nothing new: a comment now and then keeps the stream open
                if time.monotonic() - quiet_since > KEEP_ALIVE:
                    await response.write(b": idle\n\n")
                    quiet_since = time.monotonic()
                await asyncio.sleep(1 / MAX_FPS)
                continue
            began = time.monotonic()
            reset = shot.generation != generation
            if reset:
                sent = points = 0
            stats = began - stats_at >= STATS_EVERY or not shot.playing
            units = count % UNITS_EVERY == 0 or not shot.playing
            frame = await loop.run_in_executor(
                None, self.views.frame, shot, sent, points, stats, surface, units
            )
            count += 1
            surface = frame["surface"]["version"] if "surface" in frame else surface
            frame["reset"] = reset
            if stats:
                stats_at = began
            version, generation, sent, points = shot.version, shot.generation, shot.recorded, shot.points
            await response.write(b"event: frame\ndata: " + _dumps(frame).encode() + b"\n\n")
            quiet_since = time.monotonic()
            await asyncio.sleep(max(0.0, 1 / MAX_FPS - (time.monotonic() - began)))

    # --- running

    def start(self, port: int = 0) -> tuple[asyncio.AbstractEventLoop, Any]:
        """Listen on 127.0.0.1:``port`` (0: any free port); returns the loop and the runner to run."""
        # The trainer thread holds the GIL between its native calls; a frame is many short NumPy calls, each
        # waiting for the GIL up to the switch interval (5 ms by default): 0.5 ms lets frames keep up.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        loop = asyncio.new_event_loop()
        # frames, waits for snapshots and commands run on threads: enough for a few pages at once
        loop.set_default_executor(ThreadPoolExecutor(16, thread_name_prefix="dlc-play"))
        runner = self.web.AppRunner(self.app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        loop.run_until_complete(runner.setup())
        sock = _listen(port)
        self.port = sock.getsockname()[1]
        site = self.web.SockSite(runner, sock)
        loop.run_until_complete(site.start())
        return loop, runner

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as err:
        sock.close()
        hint = "another program has it: give another --port, or --port 0 for any free one"
        raise DlcError(f"cannot listen on 127.0.0.1:{port}: {err.strerror}", hint=hint) from None
    sock.listen(64)
    return sock


def _dumps(value: Any) -> str:
    """JSON without NaN or infinities (the page's JSON.parse refuses them): those become null."""
    return json.dumps(_clean(value), separators=(",", ":"))


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class Background:
    """A server on a thread of its own (for Python and Jupyter, whose own event loop may be running in
    the caller's thread); ``stop()`` ends it."""

    def __init__(self, app: App, port: int = 0) -> None:
        self.app = app
        ready = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            try:
                self.loop, self.runner = app.start(port)
            except BaseException as err:  # given to the caller, in its thread
                failed.append(err)
                return
            finally:
                ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="dlc-play-server", daemon=True)
        self.thread.start()
        ready.wait()
        if failed:
            raise failed[0]

    def stop(self) -> None:
        if not self.thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop)
        with contextlib.suppress(Exception):
            future.result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.app.session.close()
