"""What the SQLite journal's writer remembers about unsettled deliveries, so it writes less.

The journal stores with each event the hooks it was routed to, and writes a ``deliveries``
row only for a delivery that waits for a retry, died, or was replayed. A delivery with no
row is derived: pending while it has no attempt, settled (delivered) once it has one. The
ledger holds what the writer needs to keep that true without reading the database:

- which open deliveries have a row (``waiting``, ``replay``, or ``pending`` rows of older
  journals), so a later outcome updates that row instead of leaving it open;
- for each event, how many of its deliveries are still owed without a row, and from that the
  **floor**: below it, every event's deliveries are settled or have a row of their own. The
  journal keeps the floor in its ``meta`` table, in the commits it makes anyway, so recovery
  after a crash reads the events from the floor up, never all of them.

The table of outcomes (``outcome``):

| the delivery    | the outcome   | the row to write              | what the ledger notes     |
| --------------- | ------------- | ----------------------------- | ------------------------- |
| has no row      | delivered     | none: its attempt settles it  | its event owes one fewer  |
| has no row      | waiting, dead | a new one (``UPSERT``)        | as above; waiting: a row  |
| has an open row | delivered     | it, delivered (``UPDATE``)    | no open row any more      |
| has an open row | waiting       | it, updated (``UPSERT``)      | -                         |
| has an open row | dead          | it, updated (``UPSERT``)      | no open row any more      |

Changes made inside a transaction are undone by ``rollback`` when it fails, so the ledger
always says what is on disk. No I/O here: the writer thread owns the ledger.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable

COMPACT_AFTER = 10_000
"""Ids the ledger remembers past the floor before it drops the settled ones among them."""


class Write(enum.Enum):
    """The row an attempt's outcome needs, besides its attempt row."""

    NONE = "none"  # a delivery without a row that delivered: the attempt says it all
    UPSERT = "upsert"  # insert the delivery's row, or update it if it has one
    UPDATE = "update"  # the delivery has a row: mark it delivered


class Ledger:
    """Open delivery rows and deliveries owed without one; ``floor`` follows from them."""

    def __init__(self) -> None:
        self._owed: dict[int, int] = {}  # event id -> its deliveries owed without a row (> 0)
        self._order: deque[int] = deque()  # ids routed, ascending; settled ones leave lazily
        self._rows: set[str] = set()  # ids of open deliveries that have a row
        self._undo: list[tuple[str, int | str]] = []

    def __repr__(self) -> str:
        owed = sum(self._owed.values())
        return f"<Ledger owed={owed} events={len(self._owed)} rows={len(self._rows)}>"

    # what the writer tells it

    def routed(self, event_id: int, deliveries: int) -> None:
        """An event was stored with ``deliveries`` deliveries, none of them with a row.

        Events come in ascending id order (the writer numbers them as it stores them)."""
        if deliveries <= 0:
            return
        assert not self._order or event_id > self._order[-1], "events come in id order"
        self._owed[event_id] = deliveries
        self._order.append(event_id)
        self._undo.append(("routed", event_id))

    def has_row(self, delivery_id: str) -> bool:
        return delivery_id in self._rows

    def opened(self, delivery_ids: Iterable[str]) -> None:
        """These deliveries have open rows (found at start, or replays taken)."""
        for key in delivery_ids:
            if key not in self._rows:
                self._rows.add(key)
                self._undo.append(("row+", key))

    def outcome(self, event_id: int, delivery_id: str, state: str) -> Write:
        """An attempt of a delivery ended in ``state`` (delivered, waiting or dead)."""
        if delivery_id not in self._rows:
            count = self._owed.get(event_id, 0)
            if count > 1:
                self._owed[event_id] = count - 1
                self._undo.append(("settled", event_id))
            elif count:
                del self._owed[event_id]
                self._undo.append(("settled", event_id))
            if state == "delivered":
                return Write.NONE
            if state == "waiting":
                self._rows.add(delivery_id)
                self._undo.append(("row+", delivery_id))
            return Write.UPSERT
        if state != "waiting":
            self._rows.discard(delivery_id)
            self._undo.append(("row-", delivery_id))
        return Write.UPDATE if state == "delivered" else Write.UPSERT

    # transactions

    def commit(self) -> None:
        """What the writer noted is on disk now: forget how to undo it."""
        self._undo.clear()
        order, owed = self._order, self._owed
        while order and order[0] not in owed:
            order.popleft()
        if len(order) > COMPACT_AFTER and len(order) > 2 * len(owed):
            # A delivery owed for long holds the floor while later events settle: keep
            # only the ids still owed, so memory follows what is owed, not what passed.
            self._order = deque(sorted(owed))

    def rollback(self) -> None:
        """The transaction failed: undo what was noted since the last ``commit``."""
        for what, key in reversed(self._undo):
            if what == "routed":
                assert isinstance(key, int)
                del self._owed[key]
                self._order.pop()
            elif what == "settled":
                assert isinstance(key, int)
                self._owed[key] = self._owed.get(key, 0) + 1
            elif what == "row+":
                assert isinstance(key, str)
                self._rows.discard(key)
            else:
                assert isinstance(key, str)
                self._rows.add(key)
        self._undo.clear()

    # what the writer asks

    def floor(self, next_id: int) -> int:
        """The lowest event id that still owes a delivery without a row; ``next_id`` (the
        next event's id) when none does. Below it, nothing needs looking at after a crash."""
        owed = self._owed
        for event_id in self._order:
            if event_id in owed:
                return event_id
        return next_id

    def owed_events(self, below: int) -> list[int]:
        """Ids of the events below ``below`` that still owe a delivery without a row."""
        return sorted(event_id for event_id in self._owed if event_id < below)
