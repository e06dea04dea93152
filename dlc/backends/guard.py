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
import os

import numpy as np

#: What ``hvp`` says in a module compiled without Hessian-vector products.
NO_HVP = (
    "this module was compiled without Hessian-vector products: compile it with hvp=True (dlc compile --hvp)"
)
_BASE = operator.attrgetter("base")
#: Calls that hold less than this many bytes of arrays are not checked against the machine's memory.
LARGE_CALL = 2**30
_NONES = itertools.repeat(None)


class Checks:
    """The argument checks of one module: its dtype, parameter shapes and per-example shapes.

    ``input_shapes`` and ``target_shapes`` give each input's and target's shape per
    example, by name in declaration order; ``classes`` the number of classes of each
    target that holds class indices (its shape is ``()``).
    """

    def __init__(
        self, dtype, param_shapes, input_shapes, target_shapes, states=(), settings=(), classes=None,
        memory_per_example=0,
    ):  # fmt: skip
        self.dtype = np.dtype(dtype)
        self.memory_per_example = memory_per_example  # bytes a call holds per example at most
        self.names = list(param_shapes)
        self.shapes = [tuple(param_shapes[k]) for k in self.names]
        self.states = list(states)  # the optimizer's per-parameter state, by name
        self.settings = list(settings)  # the optimizer's settings, by name
        self.none_chosen = (None,) * len(self.settings)
        self.labels = [f"params[{k!r}]" for k in self.names]
        self.labels += [f"state[{s!r}][{k!r}]" for s in self.states for k in self.names]
        self.all_shapes = self.shapes * (1 + len(self.states))
        self.inputs = {k: tuple(v) for k, v in input_shapes.items()}
        self.targets = {k: tuple(v) for k, v in target_shapes.items()}
        self.classes = dict(classes or {})
        self.data_shapes = [*self.inputs.values(), *self.targets.values()]
        self.data_labels = [*_labels(self.inputs, "X"), *_labels(self.targets, "Y")]
        # the common case, one input and one target given as arrays, checked without the by-name machinery
        self.lone_input = next(iter(self.inputs.values())) if len(self.inputs) == 1 else None
        self.lone_target = next(iter(self.targets.values())) if len(self.targets) == 1 else None
        self.lone_classes = self.classes.get(next(iter(self.targets))) if len(self.targets) == 1 else None

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
        ``X`` and ``Y`` are the tuples :meth:`batch` gave.
        """
        for i, a in enumerate(p + s):
            shape = self.all_shapes[i]
            if not (a.dtype is self.dtype and a.shape == shape and a.flags.carray):
                self._in_place(a, shape, self.labels[i])
        for a, shape, name in zip((*X, *Y), self.data_shapes, self.data_labels, strict=True):
            if not (a.dtype is self.dtype and a.shape == (rows, *shape) and a.flags.c_contiguous):
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

    def batch(self, X, Y, target=True, named=None):
        """(X, Y, rows): the batch as tuples of C-contiguous arrays of the dtype, one per input
        (and per target), in declaration order; rows is 1 for a model without data.

        ``X`` is an array for a model of one input, else a dict of arrays by input name (and
        ``Y`` likewise for the targets); ``named``: the arrays given as keyword arguments
        instead. ``target``: whether Y is needed (False for predict, which takes no Y).
        """
        if not named and type(X) is np.ndarray and self.lone_input is not None:
            xs = (self._data(X, self.lone_input, "X", "input"),)
            if not target:
                return xs, (), X.shape[0]
            if type(Y) is np.ndarray and self.lone_target is not None and Y.shape[:1] == X.shape[:1]:
                return xs, (self._data(Y, self.lone_target, "Y", "target", self.lone_classes),), X.shape[0]
        if named:
            X, Y = self._by_name(X, Y, named, target)
        xs, labels = self._pack(X, self.inputs, "X", "input")
        ys, more = self._pack(Y, self.targets, "Y", "target") if target else ((), [])
        arrays, labels = xs + ys, labels + more
        for a, label in zip(arrays[1:], labels[1:], strict=True):
            if a.shape[0] != arrays[0].shape[0]:
                why = (
                    "one target per example"
                    if len(arrays) == 2 and xs and ys
                    else "one row per example in each"
                )
                raise ValueError(
                    f"{labels[0]} has {arrays[0].shape[0]} rows but {label} has {a.shape[0]}: {why}"
                )
        return xs, ys, arrays[0].shape[0] if arrays else 1

    def examples(self, X, Y, named=None):
        """A batch to take the mean loss over: as :meth:`batch`, and not empty."""
        X, Y, rows = self.batch(X, Y, named=named)
        if rows == 0:
            name = (
                "X"
                if len(self.inputs) == 1
                else "Y"
                if not self.inputs and len(self.targets) == 1
                else "the batch"
            )
            raise ValueError(f"{name} has no rows: the loss is a mean over the examples of a batch")
        return X, Y, rows

    def fits(self, rows):
        """Raise MemoryError, before anything is computed, if ``rows`` examples cannot fit in this
        machine's memory (only large batches are looked at: a small one costs nothing here)."""
        need = rows * self.memory_per_example
        if need < LARGE_CALL:
            return
        try:
            memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):
            return
        if need > memory:
            raise MemoryError(
                f"a batch of {rows} examples needs about {need / 2**30:.1f} GiB for its arrays, more than "
                f"this machine's {memory / 2**30:.1f} GiB: pass the examples in smaller batches"
            )

    def _by_name(self, X, Y, named, target):
        """Keyword arguments (``image=..., label=...``) as the dicts X and Y."""
        if X is not None or Y is not None:
            raise TypeError("give the data either as X and Y or by name (as keyword arguments), not both")
        allowed = [*self.inputs, *(self.targets if target else ())]
        unknown = [k for k in named if k not in allowed]
        if unknown:
            what = "the model's inputs and targets" if target else "predict takes the model's inputs"
            raise TypeError(
                f"unexpected argument {unknown[0]!r}: {what} are {', '.join(map(repr, allowed)) or 'none'}"
            )
        X = {k: v for k, v in named.items() if k in self.inputs} if self.inputs else None
        Y = {k: v for k, v in named.items() if k in self.targets} if self.targets and target else None
        return X, Y

    def _pack(self, given, shapes, name, role):
        """The arrays for ``shapes`` (by name) from ``given``: (tuple of checked arrays, their labels)."""
        if not shapes:
            if given is not None:
                raise ValueError(f"this model declares no {role}: pass {name}=None")
            return (), []
        if isinstance(given, dict):
            missing = [k for k in shapes if k not in given]
            unknown = [k for k in given if k not in shapes]
            if missing or unknown:
                problem = (f"has no {', '.join(map(repr, missing))}" if missing
                           else f"has {unknown[0]!r}, which is not one of them")  # fmt: skip
                raise ValueError(f"{name} {problem}: the model's {role}s are {', '.join(map(repr, shapes))}")
            labels = [f"{name}[{k!r}]" for k in shapes]  # a dict names its entries, even one
            arrays = [given[k] for k in shapes]
        elif len(shapes) == 1:
            labels, arrays = [name], [given]
        else:
            example = ", ".join(f"{k!r}: ..." for k in shapes)
            raise TypeError(
                f"this model has {len(shapes)} {role}s: pass {name} as a dict of arrays by name, "
                f"{{{example}}}, not {type(given).__name__}"
            )
        checked = tuple(
            self._data(a, shape, label, role, self.classes.get(k))
            for a, shape, label, k in zip(arrays, shapes.values(), labels, shapes, strict=True)
        )
        return checked, labels

    def _data(self, a, shape, name, role, classes=None):
        if (type(a) is np.ndarray and a.dtype is self.dtype and a.shape[1:] == shape
                and a.ndim == len(shape) + 1 and a.flags.c_contiguous):  # fmt: skip
            return a if classes is None else _class_labels(a, classes, name)
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
            elif classes is not None and a.ndim == 2 and a.shape[1] == classes:
                hint = f" (class indices 0..{classes - 1}, not one-hot rows: {name}.argmax(axis=1))"
            elif a.ndim >= 1 and len(shape) >= 2 and a[:1].size == int(np.prod(shape)):
                dims = ", ".join(map(str, shape))
                hint = f" (the same elements per example in another shape: {name}.reshape(-1, {dims}))"
            raise ValueError(f"{name} has shape {a.shape}, expected {expected}: B examples{hint}")
        if classes is not None:
            _class_labels(a, classes, name)
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


def _labels(shapes, name):
    """How messages name the arrays of ``shapes``: X for a single one, else X['name'] each."""
    return [name] if len(shapes) == 1 else [f"{name}[{k!r}]" for k in shapes]


def _class_labels(a, classes, name):
    """``a``, if every value is a class index: a whole number in 0..classes-1 (NaN is not)."""
    if a.dtype.kind == "b":
        raise TypeError(f"{name} holds booleans; it takes class indices 0..{classes - 1}")
    with np.errstate(invalid="ignore"):
        good = (a >= 0) & (a < classes) & (a == np.floor(a))
    if not good.all():
        row = int(np.argmin(good))
        raise ValueError(f"{name} holds class indices 0..{classes - 1}, but row {row} has {a[row].item()!r}")
    return a


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
