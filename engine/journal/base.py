"""The ``Journal`` interface every store implements (memory now, SQLite and Redis later)."""

from __future__ import annotations

from typing import Protocol

from engine.model import Attempt, Delivery, Event, EventDraft


class JournalUnavailable(Exception):
    """The journal cannot store events right now; the message says why (for a 503)."""


class Journal(Protocol):
    """Durable, ordered storage of events; ids are assigned here and only here."""

    async def append(self, draft: EventDraft) -> Event:
        """Store one event; returns it with its id once it is durable."""
        ...

    async def append_many(self, drafts: list[EventDraft]) -> list[Event]:
        """Store several events in one commit, in order."""
        ...

    def last_id(self) -> int:
        """The id of the newest stored event (0 when there is none)."""
        ...

    @property
    def epoch(self) -> str:
        """Names this journal's history: with the event id it makes delivery ids unique."""
        ...

    async def record_attempts(self, attempts: list[tuple[Delivery, Attempt]]) -> None:
        """Keep what attempts gave, and each delivery's state after it, in one write."""
        ...

    async def aclose(self) -> None: ...
