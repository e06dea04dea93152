"""The training loop every generated module carries: epochs, shuffling, the optimizer's numbers, failures.

Its source is copied into every module dlc writes (from the line after
``LOOP STARTS``), so that both backends train alike: the same permutation
of the examples each epoch (NumPy's generator seeded by (seed, epoch)), the
same per-step numbers of the optimizer (its settings, which may be
schedules, and what it computes from them and the step count), and the same
handling of a step whose loss is not finite. What runs the steps of an
epoch is the backend's: ``run(p, s, X, Y, order, batch_size, first, last,
losses, table)`` runs steps ``first .. last - 1`` and returns (sum of loss x
rows, -1), or (anything, the failed step), having put each step's loss in
``losses``.
"""

# LOOP STARTS
import math
import time

import numpy as np


def checked_step(take_step, check, rows, params, state, X, Y, epoch, settings):
    """``train_step()``: its arguments checked, one ``take_step(p, s, X, Y, B, row)``, the step counted.

    ``X`` and ``Y`` reach ``take_step`` as tuples of arrays, one per input and per target.
    Raises FloatingPointError, and changes nothing, if the loss before the step is not finite.
    """
    p, s, taken = check.state(params, state)
    X, Y, B = check.examples(X, Y)
    check.fits(B)
    row = rows.row(check.chosen(settings), check.epoch(epoch), taken)
    value = take_step(p, s, X, Y, B, row)
    if not math.isfinite(value):
        raise FloatingPointError(f"the loss is {value}")
    state["step"] = taken + 1
    return value


def checked_train(run, check, scalars, culprit, defaults, params, X, Y, state, shuffle, callback, on_step,
                  settings, **counts):  # fmt: skip
    """``train()``: its arguments checked (``defaults``: the model's TRAINING), then :func:`train_loop`."""
    X, Y, n, state, s, chosen = check.training(
        params, X, Y, state, callback, on_step, defaults, settings, **counts
    )
    check.fits(min(s["batch_size"], n))  # a step holds one batch's arrays
    return train_loop(
        run, check, scalars, params, X, Y, n, state, s, chosen, shuffle, callback, on_step, culprit
    )


def train_loop(run, check, scalars, params, X, Y, n, state, s, chosen, shuffle, callback, on_step, culprit):
    """``train()`` of checked arguments: epochs from s["start_epoch"] to s["epochs"]; the history."""
    batch_size = min(s["batch_size"], n)  # a larger batch size takes all examples in one step
    steps = -(-n // batch_size)
    history = {"loss": []}
    chunk = Chunks()
    losses = np.zeros(steps, dtype=np.float64)  # each step's loss
    for epoch in range(s["start_epoch"], s["epochs"]):
        # checked each epoch: a callback may have put other arrays in the dicts
        p, arrays, taken = check.state(params, state)
        order = np.random.default_rng([s["seed"], epoch]).permutation(n) if shuffle else np.arange(n)
        order = order.astype(np.int64)
        table = step_numbers(scalars, chosen, epoch, taken, steps)
        saved = [a.copy() for a in p + arrays]
        work = (p, arrays, X, Y, order, batch_size)
        total, failed = _run_epoch(run, check, work, losses, table, epoch, on_step, chunk)
        if failed >= 0:
            _restore(p + arrays, saved)
            rows = order[failed * batch_size : (failed + 1) * batch_size]
            xb, yb = tuple(a[rows] for a in X), tuple(a[rows] for a in Y)
            raise FloatingPointError(
                f"epoch {epoch}, step {failed}: the loss is {total}{culprit(params, xb, yb, len(rows))}; "
                f"parameters restored to the start of epoch {epoch}"
            )
        broken = [k for k, w in zip(check.names, p, strict=True) if not np.all(np.isfinite(w))]
        if broken:  # a gradient was not finite although the loss was
            _restore(p + arrays, saved)
            raise FloatingPointError(
                f"epoch {epoch}: parameter {broken[0]} stopped being finite{culprit(params, X, Y, n)}; "
                f"parameters restored to the start of epoch {epoch}"
            )
        state["step"] = taken + steps
        history["loss"].append(total / n)
        if callback is not None and callback(epoch, history["loss"][-1]) is False:
            break
    return history


def step_numbers(scalars, given, epoch, first, steps):
    """The optimizer's numbers for ``steps`` steps from step ``first`` on; an error if one is not finite.

    Whatever NumPy's error settings: an underflow (beta ** t for a large t) is the right zero.
    """
    with np.errstate(all="ignore"):
        table = scalars(given, epoch, first + np.arange(steps, dtype=np.float64))
    if not np.all(np.isfinite(table)):
        bad = int(np.argmax(~np.all(np.isfinite(table), axis=1)))
        raise ValueError(
            f"the optimizer's settings give a number that is not finite at step {first + bad} "
            f"(epoch {epoch}): look at settings that divide, such as 1 - beta ** t with beta = 1"
        )
    return table


class StepRows:
    """The optimizer's numbers for single steps (train_step), computed 64 steps at a time.

    ``scalars(given, epoch, steps)`` is the module's ``_scalars``: the same
    code makes the numbers of train() and of train_step, so both take the
    same steps. What is kept is one tuple, replaced whole: threads that step
    at once each read a consistent one.
    """

    AHEAD = 64

    def __init__(self, scalars):
        self.scalars = scalars
        self.kept = (None, 0, np.zeros((0, 1)))

    def row(self, given, epoch, step):
        key, first, table = self.kept
        if key != (given, epoch) or not first <= step < first + len(table):
            first, table = step, step_numbers(self.scalars, given, epoch, step, self.AHEAD)
            self.kept = ((given, epoch), first, table)
        return table[step - first]


class Chunks:
    """How many steps to run per call when every step must be reported: about 50 ms' worth."""

    def __init__(self):
        self.size = 1

    def adapt(self, seconds):
        if seconds < 0.025:
            self.size *= 2
        elif seconds > 0.1 and self.size > 1:
            self.size //= 2


def _run_epoch(run, check, work, losses, table, epoch, on_step, chunk):
    """One epoch; returns (sum of loss x rows, -1), or (the failed step's loss, its index).

    With ``on_step``, the epoch is a few calls of ``run`` with on_step's calls between them:
    the arrays are checked again before each.
    """
    steps = len(losses)
    if on_step is None:
        total, failed = run(*work, 0, steps, losses, table)
        return (float(losses[failed]), failed) if failed >= 0 else (total, failed)
    total, first = 0.0, 0
    p, arrays, X, Y, order, _ = work
    while first < steps:
        last = min(steps, first + chunk.size)
        check.unchanged(p, arrays, X, Y, len(order))
        began = time.perf_counter()
        part, failed = run(*work, first, last, losses, table)
        chunk.adapt(time.perf_counter() - began)
        if failed >= 0:
            return float(losses[failed]), failed
        total += part
        for step in range(first, last):
            on_step(epoch, step, steps, float(losses[step]))
        first = last
    return total, -1


def _restore(arrays, saved):
    for now, before in zip(arrays, saved, strict=True):
        now[...] = before
