"""A journal that keeps recent events in memory: for tests and the first releases.

Nothing survives a restart; `[journal] backend = "memory"` says so in the config.
"""

from __future__ import annotations

import itertools
import secrets
from collections import deque

import trio

from engine.model import Attempt, Delivery, Event, EventDraft, StoredDelivery

DEFAULT_KEEP = 10_000
"""Recent events (and attempts, and dead letters) kept; bounds memory under any load."""


class MemoryJournal:
    """Numbers events from 1 and keeps the newest ``keep`` of them."""

    def __init__(self, keep: int = DEFAULT_KEEP) -> None:
        self._next_id = 1
        self._recent: deque[Event] = deque(maxlen=keep)
        self._epoch = secrets.token_hex(4)
        self.attempts: deque[Attempt] = deque(maxlen=keep)
        self.dead_letters: deque[Delivery] = deque(maxlen=keep)

    def __repr__(self) -> str:
        return f"<MemoryJournal last_id={self._next_id - 1} kept={len(self._recent)}>"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def append(self, draft: EventDraft) -> Event:
        await trio.lowlevel.checkpoint()
        return self._store(draft)

    async def append_many(self, drafts: list[EventDraft]) -> list[Event]:
        await trio.lowlevel.checkpoint()
        return [self._store(draft) for draft in drafts]

    def _store(self, draft: EventDraft) -> Event:
        event = Event.from_draft(draft, self._next_id)
        self._next_id += 1
        self._recent.append(event)
        return event

    def last_id(self) -> int:
        return self._next_id - 1

    @property
    def epoch(self) -> str:
        return self._epoch

    async def record_attempts(self, attempts: list[tuple[Delivery, Attempt]]) -> None:
        await trio.lowlevel.checkpoint()
        for delivery, attempt in attempts:
            self.attempts.append(attempt)
            if attempt.state == "dead":
                self.dead_letters.append(delivery)

    def oldest_id(self) -> int:
        return self._recent[0].id if self._recent else self._next_id

    async def events_after(self, after_id: int, limit: int) -> list[Event]:
        await trio.lowlevel.checkpoint()
        recent = self._recent
        if not recent:
            return []
        start = max(0, after_id + 1 - recent[0].id)  # ids are consecutive
        return list(itertools.islice(recent, start, start + limit))

    def recent(self) -> list[Event]:
        """The events still held, oldest first."""
        return list(self._recent)

    async def recover(self) -> list[StoredDelivery]:
        await trio.lowlevel.checkpoint()
        return []  # nothing outlives the process

    async def take_replays(self) -> list[StoredDelivery]:
        await trio.lowlevel.checkpoint()
        return []

    async def disable_hook(self, index: int, reason: str) -> None:
        await trio.lowlevel.checkpoint()  # forgotten at restart

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
