"""dlc play without a browser: the session's training against the module's and dlc train's, the values put
into formulas against NumPy, and the server's routes, refusals and stream (tests/test_play_browser.py
drives the page itself)."""

from __future__ import annotations

import html
import http.client
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("aiohttp", reason="dlc play needs the extra dlc[play]")
pytest.importorskip("latex2mathml", reason="dlc play needs the extra dlc[play]")

from dlc.compiler import read_model
from dlc.errors import DlcError
from dlc.playground.run import PlayOptions, start
from dlc.playground.session import Session
from dlc.playground.views import Views
from dlc.train.run import Options, train

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def _model(name: str):
    return read_model(EXAMPLES / f"{name}.dlc")


@pytest.fixture
def spiral() -> Session:
    session = Session(_model("spiral"))
    yield session
    session.close()


def _params(session: Session) -> dict[str, np.ndarray]:
    return session.snapshot().params


# --- the session trains as the module and dlc train do


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_steps_through_an_epoch_equal_the_modules_epoch(backend: str) -> None:
    """25 single steps make the same epoch as train()'s loop: the same order of examples, the same steps."""
    stepped, whole = Session(_model("spiral"), backend=backend), Session(_model("spiral"), backend=backend)
    try:
        steps = stepped.snapshot().steps
        assert steps == 25  # 400 examples, batches of 16
        for _ in range(steps - 1):
            stepped.command("step")
        assert stepped.snapshot().epoch == 0 and stepped.snapshot().step == steps - 1
        stepped.command("step")
        whole.command("epoch")
        a, b = stepped.snapshot(), whole.snapshot()
        assert a.epoch == b.epoch == 1 and a.taken == b.taken == steps
        for k in a.params:
            np.testing.assert_allclose(a.params[k], b.params[k], rtol=1e-12, atol=1e-14)
        assert a.history[0].loss == pytest.approx(b.history[0].loss, rel=1e-12)
    finally:
        stepped.close()
        whole.close()


def test_epochs_equal_dlc_train(spiral: Session) -> None:
    """Five epochs in the page give dlc train's history and parameters for --epochs 5."""
    for _ in range(5):
        spiral.command("epoch")
    result = train(_model("spiral"), Options(epochs=5))
    shot = spiral.snapshot()
    assert [e.loss for e in shot.history] == pytest.approx([e.loss for e in result.history], rel=1e-12)
    assert [e.accuracy for e in shot.history] == [e.accuracy for e in result.history]


def test_reset_runs_the_same_run_again(spiral: Session) -> None:
    spiral.command("epoch")
    spiral.command("step")
    first = _params(spiral)
    spiral.command("reset")
    shot = spiral.snapshot()
    assert (shot.epoch, shot.step, shot.taken, shot.history) == (0, 0, 0, [])
    spiral.command("epoch")
    spiral.command("step")
    for k, v in _params(spiral).items():
        np.testing.assert_array_equal(v, first[k])


def test_playing_stops_at_the_train_blocks_epochs_and_goes_on_for_as_many() -> None:
    session = Session(_model("loss_surface"))  # 300 epochs of one step
    try:
        for more in (300, 600):
            session.command("play")
            shot = session.snapshot()
            while shot.playing:
                shot = session.snapshot(shot.version, timeout=30)
            assert shot.epoch == more and shot.recorded == more and shot.error is None
    finally:
        session.close()


def test_playing_trains_until_paused(spiral: Session) -> None:
    spiral.command("play")
    seen = spiral.snapshot()
    while seen.epoch < 3:  # snapshots come as epochs end
        seen = spiral.snapshot(seen.version, timeout=30)
    spiral.command("pause")
    paused = spiral.snapshot()
    assert not paused.playing and paused.epoch >= 3
    assert len(paused.history[: paused.recorded]) == paused.epoch
    spiral.command("step")  # a step after a pause continues the same run
    assert spiral.snapshot().taken == paused.taken + 1


def test_settings_take_effect_at_the_next_step(spiral: Session) -> None:
    before = _params(spiral)
    spiral.command("settings", {"settings": {"lr": 0.0001}})
    low = Session(_model("spiral"))
    try:
        low.command("settings", {"settings": {"lr": 0.0001}})
        spiral.command("step")
        low.command("step")
        moved = {k: np.abs(v - before[k]).max() for k, v in _params(spiral).items()}
        assert max(moved.values()) > 0
        for k, v in _params(spiral).items():
            np.testing.assert_array_equal(v, _params(low)[k])
    finally:
        low.close()
    controls = spiral.command("settings", {"optimizer": "adam", "batch_size": 32, "seed": 3})
    assert controls["optimizer"] == "adam" and controls["batch_size"] == 32 and controls["seed"] == 3
    assert set(controls["settings"]) >= {"lr", "beta1", "beta2", "eps"}
    spiral.command("step")
    assert spiral.snapshot().taken == 2
    assert spiral.module.OPTIMIZER.startswith("adam")


@pytest.mark.parametrize(
    ("asked", "message"),
    [
        ({"settings": {"lr": -1}}, "lr must be greater than 0"),
        ({"settings": {"lr": 0}}, "lr must be greater than 0"),
        ({"settings": {"momentum": 1}}, "momentum must be at least 0 and less than 1"),
        ({"settings": {"lr": float("nan")}}, "lr must be a finite number"),
        ({"settings": {"lr": "0.1"}}, "lr must be a finite number"),
        ({"settings": {"beta1": 0.9}}, "has no setting 'beta1'"),
        ({"settings": [1]}, "settings are an object"),
        ({"optimizer": "adamm"}, "unknown optimizer 'adamm'"),
        ({"optimizer": "__import__('os')"}, "not an optimizer's name"),
        ({"optimizer": 3}, "not an optimizer's name"),
        ({"batch_size": 0}, "batch_size must be a whole number from 1"),
        ({"batch_size": 2.5}, "batch_size must be a whole number"),
        ({"batch_size": True}, "batch_size must be a whole number"),
        ({"seed": -1}, "seed must be a whole number from 0"),
        ({"seed": 2**40}, "seed must be a whole number"),
        ({"epochs": 3}, "unknown control 'epochs'"),
        ([], "the settings are a JSON object"),
    ],
)
def test_bad_settings_are_refused_and_change_nothing(spiral: Session, asked: object, message: str) -> None:
    before = spiral.controls
    with pytest.raises(DlcError) as err:
        spiral.command("settings", asked)
    assert message in err.value.message + (err.value.hint or "")
    assert spiral.controls == before


def test_a_diverging_run_pauses_with_the_error_and_keeps_its_parameters() -> None:
    session = Session(_model("regression"))
    try:
        session.command("settings", {"settings": {"lr": 1e3}})
        start_params = _params(session)
        session.command("play")
        shot = session.snapshot()
        while shot.playing or shot.version == 1:  # playing stops at the train block's epochs, or an error
            shot = session.snapshot(shot.version, timeout=30)
        assert shot.error is not None and "training stopped" in shot.error and "the loss is" in shot.error
        for v in shot.params.values():
            assert np.all(np.isfinite(v))
        assert set(shot.params) == set(start_params)
    finally:
        session.close()


# --- the pictures and the values put into formulas


def test_values_put_into_formulas_match_numpy(spiral: Session) -> None:
    """h1 = tanh(b1 + z1) and dL/dW1 for the first example, against NumPy and the module's gradient."""
    spiral.command("epoch")
    views = Views(spiral)
    views.formulas()
    shot = spiral.snapshot()
    p, x, y = shot.params, spiral.X[:1], spiral.Y[:1]
    h1 = np.tanh(p["W1"] @ x[0] + p["b1"])
    index = next(i for i, (_, lhs, _) in enumerate(views.equations) if str(lhs) == "h1")
    values = dict(views._values(shot, list(views.equations[index][1:])))
    np.testing.assert_allclose(values["h1"], h1, rtol=1e-12)
    np.testing.assert_allclose(values["b1"], p["b1"])
    _, grads = spiral.module.value_and_grad(p, x, y)
    gradient = next(
        i for i, (_, lhs, _) in enumerate(views.equations) if "W1" in str(lhs) and "Grad" in str(lhs)
    )
    values = dict(views._values(shot, list(views.equations[gradient][1:])))
    np.testing.assert_allclose(values["∂L/∂W1"], grads["W1"], rtol=1e-10, atol=1e-14)
    shown = html.unescape(views.plug(index)).replace("\xa0", " ")
    assert shown.startswith("<math") and "tanh" in shown and "first example" in shown


def test_the_output_map_is_the_models_prediction_over_the_plane(spiral: Session) -> None:
    import base64

    spiral.command("epoch")
    views = Views(spiral)
    plane = views.plane
    assert plane is not None and plane.kind == "binary"
    frame = plane.frame(spiral.snapshot().params)
    picture = np.frombuffer(base64.b64decode(frame["output"]), dtype=np.uint8)
    predicted = spiral.module.predict(spiral.snapshot().params, plane.grid)[:, 0]
    np.testing.assert_allclose(picture, np.clip(predicted * 255, 0, 255).astype(np.uint8), atol=1)
    from dlc.playground.views import UNIT, scaled

    units = np.frombuffer(base64.b64decode(frame["units"]["h1"]), dtype=np.uint8).reshape(32, UNIT * UNIT)
    # unit k's map: tanh(W1 @ x + b1)[k] at every other point of the grid each way, on the range sent
    p = spiral.snapshot().params
    points = plane.grid.reshape(2 * UNIT - 1, 2 * UNIT - 1, 2)[::2, ::2].reshape(-1, 2)
    h1 = np.tanh(points @ p["W1"].T + p["b1"])
    low, high = frame["unit_range"]["h1"]
    np.testing.assert_allclose(units, scaled(h1.T, low, high), atol=1)


@pytest.mark.parametrize(
    ("name", "views"),
    [
        ("spiral", {"plane"}),
        ("xor", {"plane"}),
        ("loss_surface", {"surface"}),
        ("points", {"plane", "surface"}),
        ("digits", {"weights"}),
        ("digits_cnn", {"weights"}),
        ("regression", set()),
        ("two_heads", set()),
        ("char_rnn", set()),
        ("momentum", set()),
    ],
)
def test_every_example_plays(name: str, views: set[str]) -> None:
    """Each example's page: its model, a step, an epoch, a frame, every formula with values put in."""
    session = Session(_model(name))
    try:
        page = Views(session)
        described = page.model()
        shown = {k for k, v in described["views"].items() if v}
        assert views <= shown
        session.command("step")
        session.command("epoch")
        frame = page.frame(session.snapshot(), 0, 0, True)
        # a step, then the rest of its epoch (or, where one step is an epoch, one more epoch)
        assert frame["epoch"] == (1 if frame["steps"] > 1 else 2)
        assert frame["error"] is None and np.isfinite(frame["loss"])
        assert [s["name"] for s in frame["stats"]] == [p.name for p in session.graph.params]
        assert all(s["grad"] is not None for s in frame["stats"])
        for k in range(len(page.equations)):
            assert page.plug(k).startswith("<math")
        sections = [s["title"] for s in described["formulas"]]
        assert sections[:3] == ["Forward pass", "Backward pass", "Gradients"]
        assert all(e["mathml"].startswith("<math") for s in described["formulas"] for e in s["equations"])
    finally:
        session.close()


def test_the_loss_surface_path_follows_the_parameters() -> None:
    session = Session(_model("loss_surface"))
    try:
        views = Views(session)
        surface = views.surface
        assert surface["names"] == ["a", "b"] and surface["extent"][0] < 3 < surface["extent"][1]
        for _ in range(10):
            session.command("epoch")
        shot = session.snapshot()
        path = views.frame(shot, 0, 0, False)["path"]
        assert path[0] == [3.0, 2.0] and len(path) == 11
        assert path[-1] == [float(shot.params["a"]), float(shot.params["b"])]
    finally:
        session.close()


# --- the server


@pytest.fixture(scope="module")
def server():
    with start(_model("xor"), PlayOptions()) as play:
        yield play


def _request(play, method: str, path: str, body: object = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", play.server.app.port, timeout=30)
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    sent = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=data, headers={**sent, **(headers or {})})
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    return response.status, payload


def test_the_page_and_its_files(server) -> None:
    status, page = _request(server, "GET", "/")
    assert status == 200 and b"<html" in page.lower()
    for path in ("/static/play.js", "/static/play.css"):
        assert _request(server, "GET", path)[0] == 200


@pytest.mark.parametrize(
    "path",
    ["/static/../server.py", "/static/..%2fserver.py", "/api/plug/%C2%B2", "/api/plug/%E2%91%A0",
     "/api/plug/%F0%9D%9F%8F", "/static/index.html/..", "/etc/passwd", "/static/",
     "/static/session.py", "/api/plug/99999", "/api/plug/-1", "/api/plug/x", "/api/plug/1e3"],
)  # fmt: skip
def test_no_request_reads_another_file(server, path: str) -> None:
    status, body = _request(server, "GET", path)
    assert status == 404, (path, body[:200])


def test_the_model_and_a_control_and_the_stream(server) -> None:
    status, body = _request(server, "GET", "/api/model")
    model = json.loads(body)
    assert status == 200 and model["name"] == "xor" and model["views"]["plane"]["output"] == "binary"
    assert model["formulas"][-1]["title"].startswith("Update, sgd(")
    assert _request(server, "POST", "/api/control", {"action": "step"}) == (200, b'{"ok": true}')
    conn = http.client.HTTPConnection("127.0.0.1", server.server.app.port, timeout=30)
    conn.request("GET", "/api/events")
    response = conn.getresponse()
    assert response.getheader("Content-Type").startswith("text/event-stream")
    assert response.readline() == b"event: frame\n"
    frame = json.loads(response.readline().removeprefix(b"data: "))
    conn.close()
    assert frame["reset"] and frame["taken"] >= 1 and frame["plane"]["output"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"action": "explode"}, 400, "the action is one of"),
        ({"action": None}, 400, "the action is one of"),
        (b"{not json", 400, "not JSON"),
        (b"[" * 8000 + b"]" * 8000, 400, "not JSON"),
        ([1, 2], 400, "the action is one of"),
    ],
)
def test_bad_controls_are_400(server, body: object, status: int, message: str) -> None:
    got, answer = _request(server, "POST", "/api/control", body)
    assert got == status and message in json.loads(answer)["error"]


def test_bad_settings_are_400_with_the_reason(server) -> None:
    got, answer = _request(server, "POST", "/api/settings", {"settings": {"lr": -1}})
    assert got == 400 and "lr must be greater than 0" in json.loads(answer)["error"]
    got, answer = _request(server, "POST", "/api/settings", {"settings": {"lr": 0.5}})
    assert got == 200 and json.loads(answer)["controls"]["settings"]["lr"] == 0.5


def test_requests_from_elsewhere_are_refused(server) -> None:
    port = server.server.app.port
    # a page elsewhere, reaching 127.0.0.1 through a name of its own (DNS rebinding)
    assert _request(server, "GET", "/api/model", headers={"Host": f"evil.example:{port}"})[0] == 403
    # a form posted by another site's page (no JSON, no preflight)
    status, _ = _request(server, "POST", "/api/control", b"action=play",
                         headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert status == 415
    status, _ = _request(server, "POST", "/api/control", {"action": "play"},
                         headers={"Origin": "http://evil.example"})  # fmt: skip
    assert status == 403
    # a body far larger than any control
    status, _ = _request(server, "POST", "/api/settings", b"[" + b"1," * 100_000 + b"1]")
    assert status == 413


# --- the command line


def _dlc(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dlc", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["play", "nowhere.dlc", "--no-browser"], "nowhere.dlc"),
        (["play", "examples/seed_chain.dlc", "--no-browser", "--port", "0"], "no training data"),
        (["play", "examples/xor.dlc", "--port", "70000"], "--port"),
        (["play", "examples/xor.dlc", "--port", "-1"], "--port"),
        (["play", "examples/xor.dlc", "--backend", "gpu"], "--backend"),
        (["play", "examples/xor.dlc", "--data", "nowhere.csv", "--port", "0"], "nowhere.csv"),
    ],
)
def test_the_command_line_refuses_bad_input_cleanly(args: list[str], message: str) -> None:
    done = _dlc(*args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_port_in_use_is_a_clear_error(server) -> None:
    done = _dlc("play", "examples/xor.dlc", "--no-browser", "--port", str(server.server.app.port))
    assert done.returncode == 2 and "cannot listen on 127.0.0.1" in done.stderr and "--port 0" in done.stderr
    assert "Traceback" not in done.stderr


def test_streams_beyond_the_limit_are_refused_and_controls_still_answer(server) -> None:
    from dlc.playground.server import MAX_STREAMS

    port = server.server.app.port
    open_streams = []
    try:
        for _ in range(MAX_STREAMS):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/api/events")
            response = conn.getresponse()
            assert response.status == 200 and response.readline() == b"event: frame\n"
            open_streams.append(conn)
        assert _request(server, "GET", "/api/events")[0] == 503
        # every stream open, and a control still answers at once: no thread is held by a stream
        assert _request(server, "POST", "/api/control", {"action": "step"})[0] == 200
    finally:
        for conn in open_streams:
            conn.close()
    # a page that went away frees its place
    for _ in range(100):  # each stream notices within one frame's sleep that its page is gone
        if not server.server.app.streams:
            break
        server.session.snapshot(server.session.snapshot().version, timeout=0.1)
    assert server.server.app.streams == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backend": "gpu"}, "the backend is numpy or llvm"),
        ({"dtype": "float16"}, "the dtype is float64 or float32"),
        ({"port": -3}, "the port is a whole number"),
        ({"port": True}, "the port is a whole number"),
        ({"val_split": 1.5}, "--val-split must be at least 0 and less than 1"),
        ({"data": "nowhere.csv"}, "nowhere.csv"),
        ({"val_split": "0.2"}, "val_split is a number"),
        ({"data": 123}, "data is a file's path"),
    ],
)
def test_the_python_entry_point_refuses_bad_options(options: dict, message: str) -> None:
    from dlc.playground.run import PlayOptions, start

    with pytest.raises(DlcError) as err:
        start(_model("xor"), PlayOptions(**options))
    assert message in str(err.value)


def test_the_loss_surface_widens_when_the_path_leaves_it() -> None:
    """points.dlc's two numbers train far from where they start: the surface is made again, wider, and
    sent once to a page that has the older one."""
    session = Session(_model("points"))
    try:
        views = Views(session)
        first = views.surface
        assert first is not None and first["version"] == 1
        session.command("play")
        shot = session.snapshot()
        while shot.playing:
            shot = session.snapshot(shot.version, timeout=30)
        frame = views.frame(shot, 0, 0, False, surface=1)
        wider = frame["surface"]
        assert wider["version"] > 1 and wider["extent"][1] > first["extent"][1]
        assert all(abs(v) <= wider["extent"][1] for p in frame["path"] for v in p)
        assert "surface" not in views.frame(shot, 0, 0, False, surface=wider["version"])
    finally:
        session.close()


def test_ctrl_c_stops_the_server_cleanly(tmp_path: Path) -> None:
    import os
    import signal

    env = {**os.environ, "DLC_CACHE_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "dlc", "play", "examples/xor.dlc", "--no-browser", "--port", "0"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, text=True, **pipes)
    try:
        line = proc.stdout.readline()
        assert line.startswith("dlc play: http://127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1].strip(" /\n"))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request(
            "POST", "/api/control", body=b'{"action": "play"}', headers={"Content-Type": "application/json"}
        )
        assert conn.getresponse().status == 200
        conn.close()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "Traceback" not in err, err


def test_dlc_play_from_python_serves_the_page_and_shows_it_inline() -> None:
    import urllib.request

    import dlc

    with dlc.play(EXAMPLES / "xor.dlc", backend="llvm") as page:
        assert page.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(page.url + "api/model", timeout=30) as response:
            assert json.load(response)["backend"] == "llvm"
        assert f'<iframe src="{page.url}"' in page._repr_html_()
        page.session.command("step")
        assert page.session.snapshot().taken == 1
    with pytest.raises(OSError):  # stopped: nothing listens there any more
        urllib.request.urlopen(page.url, timeout=5)


@pytest.mark.parametrize("name", ["spiral", "loss_surface", "digits_cnn", "two_heads", "char_rnn"])
def test_examples_play_on_the_llvm_backend_as_on_numpy(name: str) -> None:
    """The same steps and the same pictures from either backend's module."""
    pages = [Session(_model(name), backend=b) for b in ("numpy", "llvm")]
    try:
        frames = []
        for session in pages:
            session.command("step")
            session.command("epoch")
            frames.append(Views(session).frame(session.snapshot(), 0, 0, True))
        a, b = (p.snapshot().params for p in pages)
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-9, atol=1e-12)
        assert frames[0]["loss"] == pytest.approx(frames[1]["loss"], rel=1e-9)
        assert frames[0]["plane"] == frames[1]["plane"]
    finally:
        for session in pages:
            session.close()


def test_random_networks_play(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Any network the language accepts: random ones (tests/test_random_networks.py's), on random data."""
    from hypothesis import given, settings

    from dlc.frontend import load_source
    from dlc.gradcheck import sample_data
    from tests.test_random_networks import specs, to_dlc

    @settings(max_examples=15, deadline=None)
    @given(specs())
    def plays(spec) -> None:
        model = load_source(to_dlc(spec) + "\ntrain {\n  batch_size = 8\n  epochs = 2\n}\n")
        data = tmp_path_factory.mktemp("data") / "data.npz"
        np.savez(data, **sample_data(model.graph, 20, np.random.default_rng(0)))
        session = Session(model, data=str(data))
        try:
            views = Views(session)
            views.model()
            session.command("step")
            session.command("play")
            shot = session.snapshot()
            while shot.playing:
                shot = session.snapshot(shot.version, timeout=30)
            frame = views.frame(shot, 0, 0, True)
            assert frame["epoch"] == 2 and len(frame["history"]) == 2
            assert all(s["grad"] is not None for s in frame["stats"])
            for k in range(len(views.equations)):
                assert views.plug(k).startswith("<math")
        finally:
            session.close()

    plays()


def test_a_json_body_of_an_unknown_charset_is_400(server) -> None:
    got, answer = _request(server, "POST", "/api/control", {"action": "step"},
                           headers={"Content-Type": "application/json; charset=bogus"})  # fmt: skip
    assert got == 400 and "not JSON" in json.loads(answer)["error"]


def test_the_trainer_outlives_a_failing_epoch_and_close_refuses_what_waits(monkeypatch) -> None:
    session = Session(_model("xor"))
    try:

        def no_memory(*args, **kwargs):
            raise MemoryError

        monkeypatch.setattr(session.module, "train", no_memory)
        session.command("play")
        shot = session.snapshot()
        while shot.playing or shot.error is None:
            shot = session.snapshot(shot.version, timeout=30)
        assert "not enough memory" in shot.error or "memory" in shot.error
        session.command("step")  # the trainer thread is alive: a step by train_step still trains
        assert session.snapshot().taken == 1 and session.thread.is_alive()
        for _ in range(5):
            session.command("epoch", wait=False)
    finally:
        session.close()
    with pytest.raises(DlcError, match="has stopped"):
        session.command("step")
    session.thread.join(timeout=30)
    assert not session.thread.is_alive()


def test_a_model_of_several_loss_terms_names_each(spiral: Session) -> None:
    """Two loss terms are two names (they were one, and the sum of them read as twice one of them)."""
    session = Session(_model("two_heads"))
    try:
        session.command("step")
        views = Views(session)
        texts = [e["text"] for s in views.formulas() for e in s["equations"]]
        assert "ℓ₁ = softmax_cross_entropy(scores, label)" in texts and "ℓ₂ = mse(guess, value)" in texts
        assert "u₃ = ℓ₁ + ℓ₂" in texts
        shot = session.snapshot()
        index = next(i for i, (_, lhs, _) in enumerate(views.equations) if str(lhs) == "ell1")
        values = dict(views._values(shot, list(views.equations[index][1:])))
        p, x, y = (
            shot.params,
            {k: v[:1] for k, v in session.X.items()},
            {k: v[:1] for k, v in session.Y.items()},
        )
        scores = p["W_class"] @ np.tanh(p["W_image"] @ x["image"][0] + p["W_meta"] @ x["meta"][0] + p["b"])
        scores = scores + p["b_class"]
        expected = -(scores[int(y["label"][0])] - np.log(np.sum(np.exp(scores))))
        np.testing.assert_allclose(values["ell1"], expected, rtol=1e-10)
    finally:
        session.close()


def test_a_model_whose_output_is_not_per_example_plays_without_an_output_map() -> None:
    from dlc.frontend import load_source

    text = "input x : [2]\ntarget y : [1]\nparam W : [1, 2] = glorot\noutput W\nloss mse(W @ x, y)\n"
    data = "train {\n  data = points\n}\n"
    session = Session(load_source(text + data))
    try:
        views = Views(session)
        assert views.plane is not None and views.plane.output is None
        session.command("step")
        frame = views.frame(session.snapshot(), 0, 0, True)
        assert "output" not in frame["plane"]
    finally:
        session.close()


def test_the_plane_in_slices_equals_the_plane_in_one_pass(spiral: Session) -> None:
    views = Views(spiral)
    params = spiral.snapshot().params
    whole = views.plane.frame(params)
    views.plane.rows = 100  # as for a model of wide layers: the grid a hundred points at a time
    assert views.plane.frame(params) == whole


def test_the_step_count_and_small_settings_are_put_in_as_numbers() -> None:
    import html

    session = Session(_model("spiral"))
    try:
        session.command("settings", {"optimizer": "adam", "settings": {"eps": 1e-8}})
        session.command("step")
        views = Views(session)
        views.formulas()
        section = views.update()
        # step_size = lr/(1 - beta1**t)
        uses_t = next(e for e in section["equations"] if e["text"].startswith("step_size ="))
        shown = html.unescape(views.plug(uses_t["id"]))
        assert "<mi>t</mi><mo>=</mo><mn>2</mn>" in shown.replace(" ", "")  # one step taken: the next is t = 2
        eps = next(e for e in section["equations"] if "eps +" in e["text"])
        shown = html.unescape(views.plug(eps["id"]))
        assert "<mn>10</mn>" in shown and "<mi>e</mi>" not in shown  # 1e-08 as 1 x 10^-8
    finally:
        session.close()


def test_a_new_seed_holds_out_the_examples_dlc_train_holds_out() -> None:
    session = Session(_model("spiral"), val_split=0.2)
    try:
        session.command("settings", {"seed": 5})
        session.command("reset")
        session.command("epoch")
        record = session.snapshot().history[0]
    finally:
        session.close()
    result = train(_model("spiral"), Options(seed=5, val_split=0.2, epochs=1))
    assert record.loss == pytest.approx(result.history[0].loss, rel=1e-12)
    assert record.val_loss == pytest.approx(result.history[0].val_loss, rel=1e-12)
