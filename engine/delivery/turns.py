"""Attempts in flight across all of a process's destinations: a shared cap, taken in turns.

Each attempt holds an open connection, so the cap keeps a process below its file-descriptor
limit however many destinations it serves. While every slot is taken, destinations that
want one queue up first come, first served; a slot set free goes to the first in line
(``Turns`` wakes it), so a destination with a large backlog cannot starve the others, and
the wait happens before an attempt starts: it never counts against a hook's timeout.
Synchronous and free of I/O; a destination's scheduler does the waiting.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

W = TypeVar("W", bound=Hashable)
"""Who waits: a destination."""


class Turns(Generic[W]):
    """At most ``limit`` slots taken at once; those who want one wait their turn (FIFO)."""

    __slots__ = ("_granted", "_line", "_queued", "_wake", "in_use", "limit")

    def __init__(self, limit: int, wake: Callable[[W], None]) -> None:
        if limit < 1:
            raise ValueError("at least 1 attempt must be allowed in flight")
        self.limit = limit
        self.in_use = 0
        """Slots taken, including those granted and not yet used."""
        self._wake = wake
        self._line: deque[W] = deque()
        self._queued: set[W] = set()  # who is in line, for a quick look
        self._granted: dict[W, int] = {}
        """Slots handed to whoever was first in line, for them to take."""

    def __repr__(self) -> str:
        return f"<Turns in_use={self.in_use}/{self.limit} waiting={len(self._line)}>"

    @property
    def waiting(self) -> int:
        return len(self._line)

    def take(self, who: W) -> bool:
        """Take a slot for ``who``; False (and ``who`` in line, once) when none is free."""
        granted = self._granted.get(who)
        if granted:
            if granted == 1:
                del self._granted[who]
            else:
                self._granted[who] = granted - 1
            return True
        if self.in_use < self.limit and not self._line:
            self.in_use += 1
            return True
        if who not in self._queued:
            self._queued.add(who)
            self._line.append(who)
        return False

    def release(self) -> None:
        """A slot is free: to the first in line (woken to take it), or back to the pool."""
        if self._line:
            first = self._line.popleft()
            self._queued.discard(first)
            self._granted[first] = self._granted.get(first, 0) + 1
            self._wake(first)
        else:
            self.in_use -= 1

    def decline(self, who: W) -> None:
        """``who`` no longer wants a slot now: out of line, and its grants passed on."""
        if who in self._queued:
            self._queued.discard(who)
            self._line.remove(who)
        for _ in range(self._granted.pop(who, 0)):
            self.release()
