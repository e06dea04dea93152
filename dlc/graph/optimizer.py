"""An optimizer as formulas: what a training step does to each parameter after its gradient.

The front end reads an ``optimizer`` definition (the built-in ones are in
``dlc/prelude.dlc``) into an :class:`Optimizer`: the per-step numbers (its
settings, which may be formulas of ``epoch`` and ``step``, and what is
computed from them and the step count ``t`` alone), then elementwise
statements over one parameter's element ``w``, its gradient ``g`` and its
state, in order. Each backend writes these once per parameter: the NumPy
module as array statements, the LLVM module as one fused loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

#: The symbols every optimizer formula may read.
W = sympy.Symbol("w", real=True)
G = sympy.Symbol("g", real=True)
T = sympy.Symbol("t", real=True)  # the step count, 1 at the first step
EPOCH = sympy.Symbol("epoch", real=True)  # epochs done before this step's epoch
STEP = sympy.Symbol("step", real=True)  # steps done before this step (t - 1)


def setting(name: str) -> sympy.Symbol:
    """The symbol of an optimizer's setting (or of a number computed from settings)."""
    return sympy.Symbol(name, real=True)


def version(name: str, k: int) -> sympy.Symbol:
    """The value of ``name`` after its ``k``-th assignment in an optimizer's lines (0: as it came in)."""
    return sympy.Symbol(name if k == 0 else f"{name}.{k}", real=True)


def shown(symbol: sympy.Symbol) -> str:
    """The name a person wrote for a versioned symbol."""
    return symbol.name.split(".", 1)[0]


@dataclass(frozen=True)
class Optimizer:
    """An optimizer with its settings chosen.

    Attributes:
        name: as called, e.g. ``adam``.
        call: the text that chose it, e.g. ``adam(lr = 0.0003)``.
        settings: (name, formula of epoch and step) for each setting, in declaration order.
        scalars: (symbol, formula) computed once per step, in order, from the settings, ``t``,
            ``epoch``, ``step`` and earlier scalars.
        states: the per-parameter state, zeros at the start, in declaration order.
        updates: (symbol, formula) per element, in order: formulas over ``w``, ``g``, the states
            as they came in, scalars and earlier updates' symbols.
        results: for ``w`` and each state, the symbol holding its new value.
        clip_norm: the largest global norm of the gradient (it is scaled down to it), or None.
    """

    name: str
    call: str
    settings: tuple[tuple[str, sympy.Expr], ...]
    scalars: tuple[tuple[sympy.Symbol, sympy.Expr], ...]
    states: tuple[str, ...]
    updates: tuple[tuple[sympy.Symbol, sympy.Expr], ...]
    results: tuple[tuple[str, sympy.Symbol], ...]
    clip_norm: float | None = None

    @property
    def setting_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.settings)

    def used_scalars(self) -> list[sympy.Symbol]:
        """The per-step numbers the elementwise statements read, in a fixed order."""
        inputs = {W, G, *(version(s, 0) for s in self.states)}
        defined = {symbol for symbol, _ in self.updates}
        read: set[sympy.Symbol] = set()
        for _, formula in self.updates:
            read |= {s for s in formula.free_symbols if s not in inputs and s not in defined}
        return sorted(read, key=lambda s: s.name)
