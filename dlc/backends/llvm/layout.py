"""Where every value lives: the scratch arena, and the context block the native code reads.

Native code never allocates. Every computed value has a home in one scratch
buffer, allocated once by the module for a batch capacity ``cap`` and grown
only when a larger batch comes: a home starts at ``per_example * cap +
fixed`` elements. Homes are padded to 64 bytes so that vector loads stay
aligned. Parameters, the batch's input and target, and the settings of a
call are read from a context block of 64-bit slots (:class:`Slots`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from dlc.graph.nodes import BatchSize, Constant, Elementwise, Input, Node, Param, Tangent

#: Elements per alignment unit (64 bytes of float32; float64 homes then align to 128 bytes).
ALIGN = 16


@dataclass(frozen=True)
class Home:
    """A value's place in the scratch arena, in elements: ``per_example * cap + fixed``."""

    per_example: int
    fixed: int


def is_number(node: Node) -> bool:
    """A scalar written into the code as a number (a folded constant)."""
    return isinstance(node, Elementwise) and not node.inputs and not node.shape and not node.batched


def is_computed(node: Node) -> bool:
    """A value the native code computes into scratch (not a leaf, not a number)."""
    return not isinstance(node, (Param, Input, Constant, BatchSize, Tangent)) and not is_number(node)


def _padded(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


class Arena:
    """Homes for values, in the order they are asked for; sizes per example and fixed."""

    def __init__(self) -> None:
        self.homes: dict[object, Home] = {}
        self.per_example = 0
        self.fixed = 0

    def place(self, key: object, size: int, batched: bool) -> Home:
        if key in self.homes:
            return self.homes[key]
        home = Home(self.per_example, self.fixed)
        if batched:
            self.per_example += _padded(size)
        else:
            self.fixed += _padded(max(size, 1))
        self.homes[key] = home
        return home

    def place_all(self, nodes: Iterable[Node]) -> None:
        for node in nodes:
            if is_computed(node):
                self.place(node, math.prod(node.shape), node.batched)


#: Slots of arrays (parameters, optimizer state, the batch's X and Y) hold an address this many bytes
#: before the array's data pointer: in CPython, NumPy's array object itself (its data pointer
#: follows the object header). The runtime checks this where it runs, and otherwise points the
#: slot at a cell of its own that holds the data pointer.
DATA_FIELD = 16


class Slots:
    """The context block: one 64-bit slot each (pointers, counts, float64 settings)."""

    SCRATCH = 0  # pointer to the arena
    CAP = 1  # the arena's batch capacity
    BATCH = 2  # B: examples in this batch
    X = 3  # refers to the batch's inputs, [B, *INPUT_SHAPE] (see DATA_FIELD)
    Y = 4  # refers to the batch's targets
    ROW = 5  # train_step: refers to the optimizer's numbers for the step, float64 (see DATA_FIELD)
    TABLE = 6  # epoch: those numbers for each step of the epoch, a row per step
    WIDTH = 7  # how many numbers a row holds
    GEMM = 8  # address of a BLAS gemm (Fortran interface), or 0 for generated loops
    N = 9  # epoch: number of examples
    ORDER = 10  # epoch: int64 permutation of the examples
    BATCH_SIZE = 11  # epoch: examples per step
    FIRST_STEP = 12  # epoch: steps first .. last - 1 run
    LAST_STEP = 13
    STEP_LOSSES = 14  # epoch: float64 per step, or 0
    FAILED_STEP = 15  # epoch, written: the step whose loss was not finite, or -1
    X_ALL = 16  # epoch: all inputs, [N, *INPUT_SHAPE]
    Y_ALL = 17
    BLAS_MIN = 18  # products of at least this many multiply-adds go to BLAS (when GEMM is set)
    PARAMS = 19  # then a slot per parameter, per parameter and state, per tangent (see DATA_FIELD)

    def __init__(self, n_params: int, n_states: int = 0) -> None:
        self.n_params = n_params
        self.n_states = n_states

    def param(self, i: int) -> int:
        return self.PARAMS + i

    def state(self, j: int, i: int) -> int:
        """The optimizer's state j of parameter i."""
        return self.PARAMS + (1 + j) * self.n_params + i

    def tangent(self, i: int) -> int:
        """The direction v of a Hessian-vector product, for parameter i."""
        return self.PARAMS + (1 + self.n_states) * self.n_params + i

    @property
    def count(self) -> int:
        return self.PARAMS + (2 + self.n_states) * self.n_params
