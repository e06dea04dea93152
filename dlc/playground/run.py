"""Starting a play server: from the command line (:func:`serve`, until Ctrl-C) or from Python
(:func:`start`, on a thread, shown inline in Jupyter)."""

from __future__ import annotations

import asyncio
import contextlib
import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dlc.errors import DlcError
from dlc.frontend import Model
from dlc.playground.server import App, Background
from dlc.playground.session import Session


@dataclass(frozen=True)
class PlayOptions:
    data: str | None = None
    backend: str = "numpy"
    dtype: str = "float64"
    val_split: float = 0.0
    port: int = 0


def _app(model: Model, options: PlayOptions) -> App:
    if not (isinstance(options.port, int) and 0 <= options.port < 65536) or isinstance(options.port, bool):
        raise DlcError(f"the port is a whole number from 0 to 65535, not {options.port!r}")
    if options.backend not in ("numpy", "llvm"):
        raise DlcError(f"the backend is numpy or llvm, not {options.backend!r}")
    if options.dtype not in ("float64", "float32"):
        raise DlcError(f"the dtype is float64 or float32, not {options.dtype!r}")
    if isinstance(options.val_split, bool) or not isinstance(options.val_split, (int, float)):
        raise DlcError(f"val_split is a number at least 0 and less than 1, not {options.val_split!r}")
    if options.data is not None and not isinstance(options.data, str):
        raise DlcError(f"data is a file's path or builtin:NAME, not {options.data!r}")
    session = Session(model, options.data, options.backend, options.dtype, options.val_split)
    try:
        return App(session)
    except BaseException:
        session.close()
        raise


def serve(model: Model, options: PlayOptions, ready: Callable[[str], None]) -> None:
    """Serve the page until interrupted; ``ready(url)`` once it answers."""
    app = _app(model, options)
    try:
        loop, runner = app.start(options.port)
    except BaseException:
        app.session.close()
        raise
    try:
        ready(app.url)
        loop.run_forever()
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(asyncio.wait_for(runner.cleanup(), 5))
        app.session.close()
        loop.close()


class Play:
    """A page being served from this process: ``url``, ``stop()``; shown inline by Jupyter."""

    def __init__(self, app: App, port: int) -> None:
        self.server = Background(app, port)
        self.url = app.url
        self.session = app.session

    def stop(self) -> None:
        self.server.stop()

    def _repr_html_(self) -> str:
        url = html.escape(self.url, quote=True)
        return (f'<iframe src="{url}" title="dlc play" style="width: 100%; height: 860px; border: 0">'
                f'</iframe><p><a href="{url}" target="_blank">{url}</a></p>')  # fmt: skip

    def __repr__(self) -> str:
        return f"<dlc play {self.session.graph.name} at {self.url}>"

    def __enter__(self) -> Play:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start(model: Model, options: PlayOptions) -> Play:
    return Play(_app(model, options), options.port)
