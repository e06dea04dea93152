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


#: Slots of arrays (parameters, optimizer state, the batch's inputs and targets) hold an address
#: this many bytes before the array's data pointer: in CPython, NumPy's array object itself (its
#: data pointer follows the object header). The runtime checks this where it runs, and otherwise
#: points the slot at a cell of its own that holds the data pointer.
DATA_FIELD = 16


class Slots:
    """The context block: one 64-bit slot each (pointers, counts, float64 settings).

    After the fixed slots: a slot per parameter, per parameter and state, per tangent
    (see DATA_FIELD), per input and target of the batch (inputs then targets, in
    declaration order; see DATA_FIELD), and for an epoch the data pointer of all the
    examples of each input and target, [N, *shape].
    """

    SCRATCH = 0  # pointer to the arena
    CAP = 1  # the arena's batch capacity
    BATCH = 2  # B: examples in this batch
    ROW = 3  # train_step: refers to the optimizer's numbers for the step, float64 (see DATA_FIELD)
    TABLE = 4  # epoch: those numbers for each step of the epoch, a row per step
    WIDTH = 5  # how many numbers a row holds
    GEMM = 6  # address of a BLAS gemm (Fortran interface), or 0 for generated loops
    N = 7  # epoch: number of examples
    ORDER = 8  # epoch: int64 permutation of the examples
    BATCH_SIZE = 9  # epoch: examples per step
    FIRST_STEP = 10  # epoch: steps first .. last - 1 run
    LAST_STEP = 11
    STEP_LOSSES = 12  # epoch: float64 per step, or 0
    FAILED_STEP = 13  # epoch, written: the step whose loss was not finite, or -1
    BLAS_MIN = 14  # products of at least this many multiply-adds go to BLAS (when GEMM is set)
    PARAMS = 15  # then the slots of parameters, states, tangents and data (see the class docstring)

    def __init__(self, n_params: int, n_states: int = 0, n_data: int = 0) -> None:
        self.n_params = n_params
        self.n_states = n_states
        self.n_data = n_data

    def param(self, i: int) -> int:
        return self.PARAMS + i

    def state(self, j: int, i: int) -> int:
        """The optimizer's state j of parameter i."""
        return self.PARAMS + (1 + j) * self.n_params + i

    def tangent(self, i: int) -> int:
        """The direction v of a Hessian-vector product, for parameter i."""
        return self.PARAMS + (1 + self.n_states) * self.n_params + i

    def data(self, i: int) -> int:
        """The batch's input or target i (inputs first): refers to an array [B, *shape]."""
        return self.PARAMS + (2 + self.n_states) * self.n_params + i

    def data_all(self, i: int) -> int:
        """Epoch: the data pointer of all examples of input or target i, [N, *shape]."""
        return self.data(self.n_data + i)

    @property
    def count(self) -> int:
        return self.data_all(self.n_data)
