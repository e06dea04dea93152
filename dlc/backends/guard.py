"""The checks at every entry point of a generated module, the same in both backends.

A compiled model is an API that people call with the wrong arrays. Every
entry point of a generated module checks, in that very call, what it was
given: the parameter dict (names, shapes, dtypes), the batch (shape per
example, rows that agree between X and Y, no empty batch where a mean is
taken), the arrays it will write (writable, C-contiguous, of the module's
dtype, not sharing memory), and the training settings. A mistake is a
``TypeError`` (the wrong kind of thing) or a ``ValueError`` (the right kind,
wrong shape or value), with the same message from either backend; never a
wrong number, and for native code never an address it was not handed.

Its source is copied into every module that dlc writes (from the line after
``GUARD STARTS``), so the modules stay standalone; it uses only NumPy.
"""

# GUARD STARTS
import itertools
import numbers
import operator

import numpy as np

#: What ``hvp`` says in a module compiled without Hessian-vector products.
NO_HVP = (
    "this module was compiled without Hessian-vector products: compile it with hvp=True (dlc compile --hvp)"
)
_BASE = operator.attrgetter("base")
_NONES = itertools.repeat(None)


class Checks:
    """The argument checks of one module: its dtype, parameter shapes and per-example shapes."""

    def __init__(self, dtype, param_shapes, input_shape, target_shape, states=(), settings=()):
        self.dtype = np.dtype(dtype)
        self.names = list(param_shapes)
        self.shapes = [tuple(param_shapes[k]) for k in self.names]
        self.states = list(states)  # the optimizer's per-parameter state, by name
        self.settings = list(settings)  # the optimizer's settings, by name
        self.none_chosen = (None,) * len(self.settings)
        self.labels = [f"params[{k!r}]" for k in self.names]
        self.labels += [f"state[{s!r}][{k!r}]" for s in self.states for k in self.names]
        self.all_shapes = self.shapes * (1 + len(self.states))
        self.input = None if input_shape is None else tuple(input_shape)
        self.target = None if target_shape is None else tuple(target_shape)

    # ------------------------------------------------------------ parameters

    def params(self, params, what="params"):
        """The parameters in declaration order, as C-contiguous arrays of the dtype (copied if need be)."""
        given = self._lookup(params, what)
        dtype, ndarray = self.dtype, np.ndarray
        for i, (a, shape) in enumerate(zip(given, self.shapes, strict=True)):
            if not (type(a) is ndarray and a.dtype is dtype and a.shape == shape and a.flags.c_contiguous):
                given[i] = self._converted(a, shape, f"{what}[{self.names[i]!r}]")
        return given

    def named(self, params, what="params"):
        """:meth:`params` as a dict by name."""
        return dict(zip(self.names, self.params(params, what), strict=True))

    def writable(self, params, what="params"):
        """The parameters in declaration order, each an array that training may update in place."""
        given = self._lookup(params, what)
        self._in_place_all(given, self.shapes, [f"{what}[{k!r}]" for k in self.names])
        return given

    def fresh_state(self, params):
        """The optimizer's state at the start: zeros like each parameter, and no steps taken."""
        p = self.params(params)
        return {"step": 0, **{s: {k: np.zeros_like(a) for k, a in zip(self.names, p, strict=True)}
                              for s in self.states}}  # fmt: skip

    def state(self, params, state):
        """Parameters and optimizer state to update in place: (params, state arrays, steps taken).

        The arrays are checked and no two may share memory; the state's arrays come
        state by state, each in the parameters' order.
        """
        p = self._lookup(params, "params")
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict (as init_state() returns), not {type(state).__name__}")
        missing = [k for k in ("step", *self.states) if k not in state]
        if missing:
            raise ValueError(
                f"state has no {', '.join(map(repr, missing))}: it holds 'step' and the optimizer's "
                f"{', '.join(map(repr, self.states)) or 'nothing else'} (start from init_state())"
            )
        step = _count(state["step"], "state['step']", 0)
        arrays = list(p)
        for s in self.states:
            arrays += self._lookup(state[s], f"state[{s!r}]")
        self._in_place_all(arrays, self.all_shapes, self.labels)
        # distinct arrays that own their memory cannot overlap; others are looked at closely
        if len(set(map(id, arrays))) != len(arrays) or not all(map(operator.is_, map(_BASE, arrays), _NONES)):
            _disjoint(arrays, self.labels)
        return p, arrays[len(p) :], step

    def _in_place_all(self, arrays, shapes, labels):
        dtype, ndarray = self.dtype, np.ndarray
        for a, shape in zip(arrays, shapes, strict=True):
            # carray: C-contiguous, aligned and writeable
            if not (type(a) is ndarray and a.dtype is dtype and a.shape == shape and a.flags.carray):
                i = next(i for i, b in enumerate(arrays) if b is a)
                self._in_place(a, shape, labels[i])

    def unchanged(self, p, s, X, Y, rows):
        """Raise if arrays checked earlier in this call were changed in place since (by a callback).

        For native code between the calls of one training run: a callback
        can reshape an array, or give it a new buffer, between two epochs.
        """
        for i, a in enumerate(p + s):
            shape = self.all_shapes[i]
            if not (a.dtype is self.dtype and a.shape == shape and a.flags.carray):
                self._in_place(a, shape, self.labels[i])
        for a, shape, name in ((X, self.input, "X"), (Y, self.target, "Y")):
            if a is not None and not (
                a.dtype is self.dtype and a.shape == (rows, *shape) and a.flags.c_contiguous
            ):
                raise ValueError(f"{name} was changed in place during training")

    def _lookup(self, params, what):
        if not isinstance(params, dict):
            raise TypeError(
                f"{what} must be a dict of arrays by parameter name (as init_params() returns), "
                f"not {type(params).__name__}"
            )
        try:
            return list(map(params.__getitem__, self.names))
        except KeyError:
            missing = [k for k in self.names if k not in params]
            raise ValueError(
                f"{what} has no {', '.join(map(repr, missing))}; the model's parameters are "
                f"{', '.join(map(repr, self.names))}"
            ) from None

    def _converted(self, a, shape, what):
        a = _numbers(a, what)
        if a.shape != shape:
            raise ValueError(f"{what} has shape {a.shape}, expected {shape}")
        return np.asarray(a, dtype=self.dtype, order="C")

    def _in_place(self, a, shape, what):
        """Raise the error that says why ``a`` cannot be updated in place."""
        why = "training updates it in place"
        if not isinstance(a, np.ndarray):
            _numbers(a, what)
            raise TypeError(f"{what} must be a NumPy array, not {type(a).__name__}: {why}")
        if type(a) is not np.ndarray:
            raise TypeError(
                f"{what} is a {type(a).__name__}: {why}, so pass a plain array, np.asarray(...) of it"
            )
        if a.dtype != self.dtype:
            raise TypeError(
                f"{what} has dtype {a.dtype}, but this module computes in {self.dtype}: {why} "
                f"(convert it once with .astype(np.{self.dtype}))"
            )
        if a.shape != shape:
            raise ValueError(f"{what} has shape {a.shape}, expected {shape}")
        if not a.flags.c_contiguous:
            raise ValueError(f"{what} is not C-contiguous: {why} (pass np.ascontiguousarray(...) once)")
        if not a.flags.writeable:
            raise ValueError(f"{what} is read-only: {why}")
        raise ValueError(f"{what} is not aligned in memory: {why} (pass a copy, np.array(...), once)")

    # ------------------------------------------------------------ data

    def batch(self, X, Y, target=True):
        """(X, Y, rows): the batch as C-contiguous arrays of the dtype; rows is 1 for a model without data.

        ``target``: whether Y is needed (False for predict, which takes no Y).
        """
        rows = None
        if self.input is None:
            if X is not None:
                raise ValueError("this model declares no input: pass X=None")
        else:
            X = self._data(X, self.input, "X", "input")
            rows = X.shape[0]
        if not target:
            return X, None, 1 if rows is None else rows
        if self.target is None:
            if Y is not None:
                raise ValueError("this model declares no target: pass Y=None")
            return X, None, 1 if rows is None else rows
        Y = self._data(Y, self.target, "Y", "target")
        if rows is not None and Y.shape[0] != rows:
            raise ValueError(f"X has {rows} rows but Y has {Y.shape[0]}: one target per example")
        return X, Y, Y.shape[0]

    def examples(self, X, Y):
        """A batch to take the mean loss over: as :meth:`batch`, and not empty."""
        X, Y, rows = self.batch(X, Y)
        if rows == 0:
            name = "X" if self.input is not None else "Y"
            raise ValueError(f"{name} has no rows: the loss is a mean over the examples of a batch")
        return X, Y, rows

    def _data(self, a, shape, name, role):
        if (type(a) is np.ndarray and a.dtype is self.dtype and a.shape[1:] == shape
                and a.ndim == len(shape) + 1 and a.flags.c_contiguous):  # fmt: skip
            return a
        expected = f"(B, {', '.join(map(str, shape))})" if shape else "(B,)"
        if a is None:
            raise TypeError(f"{name} is None; this model's {role} needs an array of shape {expected}")
        a = _numbers(a, name)
        if a.ndim != len(shape) + 1 or a.shape[1:] != shape:
            hint = ""
            if a.shape == (a.shape[0] if a.ndim else 0, *shape[:-1]) and shape[-1:] == (1,):
                hint = f" (one column: reshape it with {name}.reshape(-1, 1))"
            elif a.shape == shape:
                hint = f" (one example: add the batch axis with {name}[None])"
            raise ValueError(f"{name} has shape {a.shape}, expected {expected}: B examples{hint}")
        return np.asarray(a, dtype=self.dtype, order="C")

    # ------------------------------------------------------------ settings

    def training(self, params, X, Y, state, callback, on_step, defaults, given, **counts):
        """The arguments of train(), checked: (X, Y, rows, state, counts, settings).

        ``counts`` holds epochs, batch_size, seed and start_epoch; where one is
        None, ``defaults`` (the model's TRAINING) gives it. ``given``: the
        optimizer's settings the call overrides. A missing state starts fresh.
        """
        for f, name in ((callback, "callback"), (on_step, "on_step")):
            if f is not None and not callable(f):
                raise TypeError(f"{name} must be a function or None, not {type(f).__name__}")
        s = {k: defaults.get(k, 0) if v is None else v for k, v in counts.items()}
        for name, least in (("epochs", 0), ("batch_size", 1), ("seed", 0), ("start_epoch", 0)):
            s[name] = _count(s[name], name, least)
        chosen = self.chosen(given)
        X, Y, rows = self.examples(X, Y)
        if state is None:
            self.writable(params)
            state = self.fresh_state(params)
        self.state(params, state)
        return X, Y, rows, state, s, chosen

    def chosen(self, given):
        """The optimizer settings a call gives (by name; None keeps the model's), as floats in order."""
        if not given:
            return self.none_chosen
        unknown = [k for k in given if k not in self.settings]
        if unknown:
            raise TypeError(
                f"unexpected argument {unknown[0]!r}: the optimizer's settings are "
                f"{', '.join(self.settings) or 'none'}"
            )
        return tuple(None if given.get(k) is None else _real(given[k], k) for k in self.settings)

    def epoch(self, epoch):
        return _count(epoch, "epoch", 0)


def _numbers(a, what):
    """``a`` as a NumPy array of numbers (booleans, integers or floats), or a TypeError."""
    if a is None:
        raise TypeError(f"{what} is None, not an array")
    try:
        array = np.asarray(a)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} is not an array of numbers ({exc})") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{what} has dtype {array.dtype}, not numbers")
    return array


def _disjoint(arrays, names):
    """Raise if two of the arrays share memory: training would write one through the other."""
    seen = {}
    for a, name in zip(arrays, names, strict=True):
        if id(a) in seen:
            raise ValueError(f"{seen[id(a)]} and {name} are the same array: training writes each of them")
        seen[id(a)] = name
    spans = sorted((a.__array_interface__["data"][0], a.nbytes, i) for i, a in enumerate(arrays) if a.nbytes)
    for (start, size, i), (later, _, j) in itertools.pairwise(spans):
        if later < start + size:
            first, second = sorted((i, j))
            raise ValueError(f"{names[first]} and {names[second]} share memory: training writes each of them")


def _count(value, name, least):
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be a whole number, not {value!r}") from None
    if n < least:
        raise ValueError(f"{name} must be at least {least}, not {n}")
    return n


def _real(value, name):
    if not isinstance(value, numbers.Real):  # booleans are 1 and 0 (nesterov = True)
        raise TypeError(f"{name} must be a real number, not {value!r}")
    number = float(value)
    if number != number or abs(number) == float("inf"):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return number
