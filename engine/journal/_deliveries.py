"""Finding unsettled deliveries in a journal file: rows of their own, and derived ones.

A delivery has a ``deliveries`` row once it waited for a retry, died or was replayed (and
every delivery of a schema version 1 journal has one). Any other delivery is derived from
its event's ``hooks`` column: pending while it has no attempt, delivered once it has one.
Statements here run on the connection given, in the caller's transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from engine.core.model import StoredDelivery, delivery_id, hook_tag
from engine.journal.schema import stored_event, unpack_hooks

OPEN_STATES = ("pending", "waiting", "replay")
"""States of a delivery row that still has work to do (the ``deliveries_open`` index)."""


def open_rows(conn: sqlite3.Connection, states: Sequence[str]) -> list[StoredDelivery]:
    """Deliveries with a row in one of ``states``, oldest event first."""
    marks = ", ".join("?" * len(states))
    rows = conn.execute(
        "SELECT d.id, d.hook, d.attempts, d.due, e.id, e.name, e.device, e.product, e.body,"
        " (SELECT count(*) FROM attempts a WHERE a.event_id = d.event_id AND a.delivery_id = d.id)"
        f" FROM deliveries d JOIN events e ON e.id = d.event_id WHERE d.state IN ({marks})"
        " ORDER BY d.event_id",
        tuple(states),
    ).fetchall()
    return [
        StoredDelivery(row[0], stored_event(row[4:9]), row[1], row[2], row[3], row[9])
        for row in rows
    ]


def owed_since(conn: sqlite3.Connection, epoch: str, floor: int) -> list[StoredDelivery]:
    """Derived deliveries still pending (no row, no attempt) of the events from ``floor`` up,
    in event order, then in the order of the hooks the event was routed to."""
    done = set(conn.execute("SELECT event_id, id FROM deliveries WHERE event_id >= ?", (floor,)))
    done.update(
        conn.execute("SELECT event_id, delivery_id FROM attempts WHERE event_id >= ?", (floor,))
    )
    found: list[StoredDelivery] = []
    rows = conn.execute(
        "SELECT id, name, device, product, body, at, hooks FROM events"
        " WHERE id >= ? AND hooks IS NOT NULL ORDER BY id",
        (floor,),
    )
    for row in rows:
        event_id, at = row[0], row[5]
        event = None
        for hook in unpack_hooks(row[6]):
            key = delivery_id(epoch, event_id, hook_tag(hook))
            if (event_id, key) in done:
                continue
            if event is None:
                event = stored_event(row[:5])
            found.append(StoredDelivery(key, event, hook, 0, at))
    return found
