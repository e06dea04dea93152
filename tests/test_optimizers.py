"""Optimizers written as formulas, against torch.optim: the same trajectory, step for step.

Each built-in optimizer trains three example networks for 100 full-batch
steps in float64 with both backends; torch.optim takes its steps from the
same parameters, fed the gradient dlc's step uses (dlc's gradient itself is
checked against torch autograd in test_grad.py). Parameters must agree to a
relative 1e-12 after every step (the norm of the difference over the norm of
torch's, per parameter). (Fed the gradient at its own parameters,
torch drifts away further on some networks: its CPU kernels round with fused
multiply-adds, and a difference of one unit in the last place in a gradient
near zero flips the sign of RMSprop's or Adagrad's first step there.) A user-written Adam gives
bit-identical parameters to the built-in one; a run resumed from a
checkpoint at any epoch ends bit-identical to a straight run.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from dlc.compiler import compile_model, read_model
from dlc.errors import DlcError
from dlc.train.data import load_data

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ("examples/xor.dlc", "examples/regression.dlc", "examples/spiral.dlc")
STEPS = 100

#: (dlc's call, torch's optimizer and its arguments)
CASES = [
    ("sgd(lr = 0.1)", "SGD", {"lr": 0.1}),
    ("sgd(lr = 0.05, momentum = 0.9)", "SGD", {"lr": 0.05, "momentum": 0.9}),
    (
        "sgd(lr = 0.05, momentum = 0.9, nesterov = true)",
        "SGD",
        {"lr": 0.05, "momentum": 0.9, "nesterov": True},
    ),
    (
        "sgd(lr = 0.05, momentum = 0.8, dampening = 0.3, weight_decay = 0.01)",
        "SGD",
        {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.01},
    ),
    ("adam(lr = 0.01)", "Adam", {"lr": 0.01}),
    (
        "adam(lr = 0.005, beta1 = 0.8, beta2 = 0.99, eps = 1e-6, weight_decay = 0.1)",
        "Adam",
        {"lr": 0.005, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1},
    ),
    ("adamw(lr = 0.01)", "AdamW", {"lr": 0.01}),
    ("adamw(lr = 0.01, weight_decay = 0.3)", "AdamW", {"lr": 0.01, "weight_decay": 0.3}),
    ("rmsprop(lr = 0.005)", "RMSprop", {"lr": 0.005}),
    (
        "rmsprop(lr = 0.005, rho = 0.9, momentum = 0.5, weight_decay = 0.01)",
        "RMSprop",
        {"lr": 0.005, "alpha": 0.9, "momentum": 0.5, "weight_decay": 0.01},
    ),
    ("adagrad(lr = 0.1)", "Adagrad", {"lr": 0.1}),
    ("adagrad(lr = 0.1, weight_decay = 0.01)", "Adagrad", {"lr": 0.1, "weight_decay": 0.01}),
]


def _data(path: str, n: int = 64) -> tuple[np.ndarray | None, np.ndarray | None]:
    graph = read_model(ROOT / path).graph
    data = load_data(f"builtin:{graph.train.data}", graph)
    X = None if data.X is None else np.ascontiguousarray(data.X[:n], dtype=np.float64)
    Y = None if data.Y is None else np.ascontiguousarray(data.Y[:n], dtype=np.float64)
    return X, Y


def _runs() -> list[tuple[str, str, dict, str, str]]:
    """Every case on every network with the NumPy module; with the LLVM module, every optimizer's
    defaults on every network and the other settings on one (the update's code is the same)."""
    defaults = {c[0] for c in CASES if "," not in c[0]}
    return [
        (*case, path, backend)
        for case in CASES
        for path in EXAMPLES
        for backend in ("numpy", "llvm")
        if backend == "numpy" or case[0] in defaults or path.endswith("spiral.dlc")
    ]


@pytest.mark.parametrize(
    ("call", "torch_name", "kwargs", "path", "backend"),
    _runs(),
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_follows_torch_optim(call: str, torch_name: str, kwargs: dict, path: str, backend: str) -> None:
    m = compile_model(ROOT / path, backend=backend, optimizer=call)
    X, Y = _data(path)
    params = m.init_params(1)
    state = m.init_state(params)
    theirs = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    opt = getattr(torch.optim, torch_name)(list(theirs.values()), **kwargs)
    worst = 0.0
    for _ in range(STEPS):
        _, grads = m.value_and_grad(params, X, Y)
        for k, t in theirs.items():
            t.grad = torch.tensor(grads[k])
        opt.step()
        m.train_step(params, state, X, Y)
        for k, t in theirs.items():
            want = t.detach().numpy()
            scale = max(float(np.linalg.norm(want)), 1e-300)
            worst = max(worst, float(np.linalg.norm(params[k] - want)) / scale)
    assert state["step"] == STEPS
    assert worst < 1e-12, f"{call} on {path}: relative difference {worst:.3g} from torch.optim"


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_clip_norm_follows_torch(backend: str) -> None:
    """clip_norm scales the gradient as torch.nn.utils.clip_grad_norm_ does, before the update."""
    source = (
        (ROOT / "examples/spiral.dlc").read_text().replace("seed       = 0", "seed = 0\n    clip_norm = 0.05")
    )
    m = compile_model(source, backend=backend, optimizer="sgd(lr = 0.5, momentum = 0.9)")
    assert m.CLIP_NORM == 0.05
    X, Y = _data("examples/spiral.dlc")
    params = m.init_params(2)
    state = m.init_state(params)
    theirs = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    opt = torch.optim.SGD(list(theirs.values()), lr=0.5, momentum=0.9)
    clipped = 0
    for _ in range(30):
        _, grads = m.value_and_grad(params, X, Y)
        for k, t in theirs.items():
            t.grad = torch.tensor(grads[k])
        norm = float(torch.nn.utils.clip_grad_norm_(list(theirs.values()), 0.05))
        clipped += norm > 0.05
        opt.step()
        m.train_step(params, state, X, Y)
    assert clipped > 10  # the clip mattered
    for k, t in theirs.items():
        np.testing.assert_allclose(params[k], t.detach().numpy(), rtol=1e-11, atol=1e-13)


USER_ADAM = """
optimizer my_adam(lr = 0.001, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0) {
    state m
    state v
    g = g + weight_decay * w
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    step_size = lr / (1 - beta1 ^ t)
    root_correction = sqrt(1 - beta2 ^ t)
    w = w - step_size * m / (sqrt(v) / root_correction + eps)
}
"""


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_user_written_adam_is_bit_identical(backend: str, dtype: str) -> None:
    source = (ROOT / "examples/spiral.dlc").read_text() + USER_ADAM
    built_in = compile_model(source, backend=backend, dtype=dtype, optimizer="adam(lr = 0.01)")
    mine = compile_model(source, backend=backend, dtype=dtype, optimizer="my_adam(lr = 0.01)")
    X, Y = _data("examples/spiral.dlc", 200)
    X, Y = X.astype(dtype), Y.astype(dtype)
    runs = []
    for m in (built_in, mine):
        params = m.init_params(3)
        state = m.init_state(params)
        m.train(params, X, Y, epochs=3, batch_size=16, state=state)
        runs.append((params, state))
    (p1, s1), (p2, s2) = runs
    assert s1["step"] == s2["step"] == 3 * math.ceil(200 / 16)
    for k in p1:
        assert np.array_equal(p1[k], p2[k])
        assert np.array_equal(s1["m"][k], s2["m"][k]) and np.array_equal(s1["v"][k], s2["v"][k])


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_backends_train_alike_with_a_schedule(backend: str) -> None:
    """A setting that is a formula of step: train() and train_step() read the same numbers."""
    call = "adam(lr = 0.05 * warmup(step, 20) * cosine_decay(step, 60))"
    m = compile_model(ROOT / "examples/spiral.dlc", backend=backend, optimizer=call)
    X, Y = _data("examples/spiral.dlc", 64)
    p1 = m.init_params(0)
    s1 = m.init_state(p1)
    m.train(p1, X, Y, epochs=3, batch_size=16, state=s1, shuffle=False)
    p2 = m.init_params(0)
    s2 = m.init_state(p2)
    for epoch in range(3):
        for start in range(0, 64, 16):
            m.train_step(p2, s2, X[start : start + 16], Y[start : start + 16], epoch=epoch)
    for k in p1:
        np.testing.assert_allclose(p1[k], p2[k], rtol=1e-13, atol=1e-15)
    rows = m._scalars((None,) * len(m.SETTINGS), 0, np.arange(80.0))
    assert rows.shape[0] == 80
    # the first step's learning rate: 0.05 * 1/20 * 1; bias corrections at t = 1
    first = m._scalars((None,) * 5, 0, np.array([0.0]))[0]
    assert np.isclose(first, 0.05 / 20 / (1 - 0.9), rtol=1e-12).any()


def test_settings_given_in_a_call_replace_the_models() -> None:
    m = compile_model(ROOT / "examples/xor.dlc", optimizer="sgd(lr = 0.1)")
    X, Y = _data("examples/xor.dlc")
    p = m.init_params(0)
    q = {k: v.copy() for k, v in p.items()}
    m.train_step(p, m.init_state(p), X, Y, lr=0.0)
    assert all(np.array_equal(p[k], q[k]) for k in p)
    with pytest.raises(TypeError, match="settings are lr, momentum"):
        m.train_step(p, m.init_state(p), X, Y, beta1=0.9)
    with pytest.raises(ValueError, match="finite"):
        m.train_step(p, m.init_state(p), X, Y, lr=float("nan"))
    with pytest.raises(ValueError, match="state has no 'velocity'"):
        m.train_step(p, {"step": 0}, X, Y)


LECTURE = """
# The lecture's momentum, as written on the slide: note the plus sign.
optimizer lecture_momentum(learning_rate = 0.01, momentum = 0.9) {
    state velocity
    past_velocity = velocity
    velocity = past_velocity * momentum + learning_rate * gradient
    w = w + momentum * velocity - learning_rate * gradient
}
"""


def test_the_lectures_pseudo_code_is_written_literally() -> None:
    m = compile_model((ROOT / "examples/regression.dlc").read_text() + LECTURE, optimizer="lecture_momentum")
    assert m.STATES == ("velocity",)
    assert [line.split(" <- ")[0] for line in m.UPDATE if " <- " in line] == [
        "past_velocity",
        "velocity",
        "w",
    ]


@pytest.mark.parametrize(
    ("optimizer", "message"),
    [
        (
            "optimizer o(lr = 1) {\n  w = w - lr * m\n  state m\n  m = g\n}",
            "state 'm' is used before it is defined",
        ),
        (
            "optimizer o(lr = 1) {\n  state m\n  w = w - lr * g\n}",
            "state 'm' of o is never given a new value",
        ),
        ("optimizer o(lr = 1) {\n  lr = 2\n  w = w - lr * g\n}", "'lr' is a setting of this optimizer"),
        ("optimizer o(lr = 1) {\n  w = w - lr * q\n}", "unknown name 'q' in optimizer o"),
        ("optimizer o(lr = 1) {\n  w = w - lr * sum(g)\n}", "'sum' cannot be used in optimizer o"),
        ("optimizer o(lr = 1) {\n  w = w - W1 @ g\n}", "unknown name 'W1'"),
        ("optimizer o(lr = 1) {\n  m = g\n}", "optimizer o never changes w"),
        ("optimizer o(lr = 1) {\n  state t\n  w = w\n}", "'t' is dlc's own name"),
        ("optimizer o(lr = 1, lr = 2) {\n  w = w\n}", "setting 'lr' appears twice"),
        ("optimizer o(lr = 1) {\n  stat m\n  w = w\n}", "expected 'state'"),
    ],
)
def test_mistakes_in_an_optimizer_are_placed(optimizer: str, message: str) -> None:
    source = (
        (ROOT / "examples/xor.dlc").read_text().replace("sgd(lr = 0.5, momentum = 0.9, nesterov = true)", "o")
    )
    with pytest.raises(DlcError, match=message) as info:
        compile_model(source + "\n" + optimizer)
    rendered = info.value.render()
    assert ":" in rendered.splitlines()[0] and "^" in rendered


def test_unknown_optimizer_and_setting_are_placed() -> None:
    with pytest.raises(DlcError, match="unknown optimizer 'adma'") as info:
        compile_model(ROOT / "examples/xor.dlc", optimizer="adma(lr = 1)")
    assert "did you mean adam?" in info.value.render()
    assert info.value.render().startswith("--optimizer:1:1")
    with pytest.raises(DlcError, match="adam has no setting 'momentum'"):
        compile_model(ROOT / "examples/xor.dlc", optimizer="adam(momentum = 0.9)")
    with pytest.raises(DlcError, match="beta1 must be at least 0 and less than 1"):
        compile_model(ROOT / "examples/xor.dlc", optimizer="adam(beta1 = 1)")


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize(
    "call",
    [
        "sgd(lr = 0.1, momentum = 0.9, dampening = 0.2)",
        "adam(lr = 0.01 * warmup(step, 7))",
        "adamw(lr = 0.01)",
        "rmsprop(lr = 0.01, momentum = 0.5)",
        "adagrad(lr = 0.1)",
    ],
)
def test_a_resumed_run_ends_bit_identical_to_a_straight_one(call: str, backend: str, tmp_path: Path) -> None:
    """Checkpoints hold every state of the optimizer and its step count."""
    from dlc.train import checkpoint
    from dlc.train.run import Options, train

    model = read_model(ROOT / "examples/spiral.dlc")
    common = {"optimizer": call, "backend": backend, "data": "builtin:spiral", "batch_size": 64}
    straight = tmp_path / "straight.npz"
    train(model, Options(epochs=4, save=straight, **common))  # type: ignore[arg-type]
    half = tmp_path / "half.npz"
    train(model, Options(epochs=2, save=half, **common))  # type: ignore[arg-type]
    saved = checkpoint.load(half, read_model(ROOT / "examples/spiral.dlc", call).graph, "float64")
    assert saved.state["step"] > 0 and saved.optimizer.startswith(call.split("(")[0])
    resumed = tmp_path / "resumed.npz"
    result = train(model, Options(epochs=4, save=resumed, resume=half, **common))  # type: ignore[arg-type]
    assert result.note is None
    graph = read_model(ROOT / "examples/spiral.dlc", call).graph
    a, b = checkpoint.load(straight, graph, "float64"), checkpoint.load(resumed, graph, "float64")
    assert a.state["step"] == b.state["step"]
    for k in a.params:
        assert np.array_equal(a.params[k], b.params[k]), k
    for s in a.state:
        if s != "step":
            assert all(np.array_equal(a.state[s][k], b.state[s][k]) for k in a.params), s


def test_early_stopping_keeps_the_best_epoch(tmp_path: Path) -> None:
    from dlc.train import checkpoint
    from dlc.train.run import Options, train

    source = (
        (ROOT / "examples/spiral.dlc").read_text().replace("seed       = 0", "seed = 0\n    patience = 2")
    )
    model = read_model(source)
    save = tmp_path / "p.npz"
    # a learning rate this large makes the validation loss wander: training stops early
    result = train(
        model, Options(epochs=300, save=save, val_split=0.3, optimizer="sgd(lr = 2, momentum = 0.9)")
    )
    assert result.stopped_early is not None
    losses = [e.val_loss for e in result.history]
    best = min(range(len(losses)), key=losses.__getitem__)
    assert result.stopped_early == best + 1 and len(losses) == best + 1 + 2
    kept = checkpoint.load(save, model.graph, "float64")
    assert kept.epoch == best + 1
    m = compile_model(source)
    data = load_data("builtin:spiral", model.graph)
    assert np.isfinite(m.loss(kept.params, data.X, data.Y))
    with pytest.raises(DlcError, match="no validation set"):
        train(model, Options(epochs=3, save=tmp_path / "q.npz"))


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_hostile_optimizer_arguments_are_refused_whatever_numpy_raises(backend: str) -> None:
    m = compile_model(ROOT / "examples/xor.dlc", backend=backend, optimizer="adam")
    X, Y = _data("examples/xor.dlc")
    p = m.init_params(0)
    with np.errstate(all="raise"):
        # beta ** t underflows to 0 after many steps: the right number, not an error
        assert np.isfinite(m.train_step(p, {**m.init_state(p), "step": 10**30}, X, Y))
        with pytest.raises(ValueError, match="not finite at step 0"):
            m.train_step(p, m.init_state(p), X, Y, beta1=1.0)
        before = {k: v.copy() for k, v in p.items()}
        with pytest.raises(FloatingPointError, match="restored to the start of epoch 0"):
            m.train(p, X, Y, epochs=1, beta2=1.0)  # sqrt(v) / 0 in every element
        assert all(np.array_equal(before[k], p[k]) for k in p)
    for bad, error in (({"step": -1}, ValueError), ({"step": 1.5}, TypeError), ({"m": {}}, ValueError)):
        with pytest.raises(error, match=r"state\["):
            m.train_step(p, {**m.init_state(p), **bad}, X, Y)
    s = m.init_state(p)
    with pytest.raises(ValueError, match=r"state\['m'\]\['W1'\] and state\['v'\]\['W1'\] are the same array"):
        m.train_step(p, {**s, "v": s["m"]}, X, Y)
    with pytest.raises(ValueError, match="epoch must be at least 0"):
        m.train_step(p, s, X, Y, epoch=-1)
    with pytest.raises(TypeError, match="state must be a dict"):
        m.train(p, X, Y, state="x", epochs=1)
