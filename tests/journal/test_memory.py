"""The memory journal: what it promises beside the SQLite one."""

from __future__ import annotations

from engine.core.model import EventDraft
from engine.journal import MemoryJournal


def draft(data: str) -> EventDraft:
    return EventDraft("temp", data, 60, True, "2026-11-29T00:00:00.000Z", "dev1", None)


async def test_an_append_queued_nowait_is_stored_and_fanned_out_at_once() -> None:
    journal = MemoryJournal()
    published: list[int] = []
    journal.fan_out_to(lambda event: published.append(event.id))
    first, second = journal.append_nowait(draft("a")), journal.append_nowait(draft("b"))
    assert journal.last_id() == 2 and published == [1, 2]  # before anyone waits
    assert [(await first.wait()).data, (await second.wait()).id] == ["a", 2]
    assert repr(first) == "<stored event 1>"
