"""Which arrays a generated function owns, and when it is done with each.

A function the NumPy backend writes computes one value per statement. Some
values are arrays the function made itself (a matrix product, a fused
elementwise body, a sum); the others are the caller's (parameters, X, Y),
the module's constants, or views that may share another value's memory (a
transpose, a slice, a broadcast). An array of the function's own is dead
once its last reader, and the last reader of every view of it, has run: a
later result of its shape may be written into it, and ``del`` drops it
rather than keeping it until the function returns. At large sizes that
keeps a training step's peak memory near what its live values need, so the
allocator does not hand the memory back to the OS after every step and
fault it in again on the next.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from dlc.graph.nodes import Node

#: The last read of a value the function returns: after every statement.
END = 1 << 62


class Memory:
    """Reads, ownership and sharing of the values of one function, statement by statement.

    Args:
        order: the nodes in the order their statements run.
        roots: the values the function returns.
        position: the index of the statement that computes each node (nodes
            computed together share one).
    """

    def __init__(self, order: list[Node], roots: list[Node], position: dict[Node, int]) -> None:
        self.last: dict[Node, int] = {n: position[n] for n in order}  # unread: dead where made
        for n in order:
            for x in n.inputs:
                self.last[x] = max(self.last[x], position[n])
        for r in roots:
            self.last[r] = END
        self.shares: dict[Node, frozenset[Node]] = {}  # node -> owned arrays its value may be part of
        self.until: dict[Node, int] = {}  # owned array -> last read of any value sharing it
        self.ending: dict[int, list[Node]] = {}  # statement -> the values last read there
        for n in order:
            self.ending.setdefault(self.last[n], []).append(n)
        self.merged: dict[Node, list[Node]] = {}  # value -> dead values whose array it took over
        self.taken: set[Node] = set()

    def record(self, node: Node, owned: bool) -> None:
        """Note, as the node's statement is written, whether its value is an array of its own."""
        shares = frozenset({node}) if owned else frozenset().union(*(self.shares[x] for x in node.inputs))
        self.shares[node] = shares
        for b in shares:
            self.until[b] = max(self.until.get(b, -1), self.last[node])

    def owned(self, node: Node) -> bool:
        return self.shares.get(node) == frozenset({node})

    def dead_after(self, node: Node, p: int) -> bool:
        """Whether nothing reads ``node``'s own array after statement ``p`` (so ``p`` may overwrite it)."""
        return self.owned(node) and self.until[node] <= p

    def holds_own(self, node: Node) -> bool:
        """Whether the node's value is, or is a view of, an array the function made."""
        return bool(self.shares.get(node))

    def private(self, results: list[Node]) -> set[Node]:
        """The results that are arrays of their own, shared with no other result (nor listed twice)."""
        holders = Counter(b for r in results for b in self.shares[r])
        return {r for r in results if self.owned(r) and holders[r] == 1}

    def take_over(self, node: Node, dead: Node) -> None:
        """Note that ``node`` was written into the array of ``dead``, whose variable still names it."""
        self.taken.add(dead)
        self.merged[node] = [*self.merged.pop(dead, []), dead]

    def dropped_after(self, p: int, large: Callable[[Node], bool]) -> list[Node]:
        """The large values holding the function's own memory whose last read is statement ``p``.

        With each comes every dead value whose array it took over: their
        variables name the same array and must go too for it to be freed.
        """
        dropped = []
        for n in self.ending.get(p, []):
            if n not in self.taken and large(n) and self.holds_own(n):
                dropped += [n, *self.merged.get(n, [])]
        return dropped
