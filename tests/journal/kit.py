"""What the journal tests share: two hooks, an event draft, an attempt's outcome."""

from __future__ import annotations

import trio

from engine.core.model import Attempt, Delivery, Event, EventDraft, delivery_id, hook_tag
from engine.journal import Journal

HOOKS = """
[[hooks]]
name = "temps"
event = "temp"
url = "http://127.0.0.1:9/t"

[[hooks]]
name = "everything"
event = "t"
url = "http://127.0.0.1:9/all"
"""
"""An event named "temp..." goes to both; any other "t..." to "everything" only."""


def draft(name: str = "temp", data: str = "21.5", device: str = "dev1") -> EventDraft:
    return EventDraft(name, data, 60, True, "2026-11-29T00:00:00.000Z", device, None)


def outcome(
    journal: Journal, event: Event, hook: str, state: str, number: int = 1
) -> tuple[Delivery, Attempt]:
    """Attempt ``number`` of ``event``'s delivery to ``hook``, which left it in ``state``."""
    key = delivery_id(journal.epoch, event.id, hook_tag(hook))
    delivery = Delivery(key, event, hook, attempts=number, state=state)
    if state == "waiting":
        delivery.due = trio.current_time() + 300
    status = 200 if state == "delivered" else 503
    return delivery, Attempt(key, number, status, 0.01, str(status), b"", state)
