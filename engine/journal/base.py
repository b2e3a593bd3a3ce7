"""The ``Journal`` interface every store implements (memory now, SQLite and Redis later)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import trio

from engine.core.model import (
    Attempt,
    Delivery,
    Event,
    EventDraft,
    OutboxEntry,
    StoredDelivery,
    StoredHook,
)
from engine.hooks.router import Deliver
from engine.journal.admin import DeadLetter, DeadLetterQuery, Replayed
from engine.journal.delivery_log import DeliveryDetail, DeliveryPage, DeliveryQuery, HookActivity


class JournalUnavailable(Exception):
    """The journal cannot store events right now; the message says why (for a 503)."""


class HookNameTaken(Exception):
    """Another stored hook has the name a put asked for; nothing was stored (for a 409)."""

    def __init__(self, name: str, holder: str) -> None:
        super().__init__(f'the hook name "{name}" is taken by the stored hook {holder}')
        self.name = name
        self.holder = holder  # the id of the hook that has the name


class PendingAppend(Protocol):
    """An append queued by ``Journal.append_nowait``: ``wait`` returns its event once stored."""

    async def wait(self) -> Event:
        """The event with its id, once durable; raises JournalUnavailable if it was not stored."""
        ...


class Journal(Protocol):
    """Durable, ordered storage of events; ids are assigned here and only here."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve writes until cancelled (started before anything appends)."""
        ...

    def fan_out_to(self, publish: Callable[[Event], None]) -> None:
        """Hand every committed event to ``publish`` (the bus), in id order, before the
        append that stored it returns."""
        ...

    def hand_routes_to(self, deliver: Deliver | None) -> None:
        """Hand every committed event that triggers hooks to ``deliver``, with the hooks it
        was routed to at append (stored with it), right after ``publish``."""
        ...

    async def append(self, draft: EventDraft) -> Event:
        """Store one event; returns it with its id once it is durable."""
        ...

    def append_nowait(self, draft: EventDraft) -> PendingAppend:
        """Queue one event for storing, now, and return without waiting for the commit.

        Events queued one after another get increasing ids in that order, and those queued
        together share a commit. A failure to store (the journal cannot write, or is not
        running) is raised by ``wait``, never here.
        """
        ...

    async def append_many(
        self, drafts: list[EventDraft], *, to_devices: Sequence[str | None] = ()
    ) -> list[Event]:
        """Store several events in one commit, in order.

        With ``to_devices``, each event also enters that device's downlink outbox (None: no
        device) in the same commit, to wait there until a gateway acknowledges it.
        """
        ...

    async def append_keyed(self, items: list[tuple[EventDraft, str | None]]) -> list[Event | None]:
        """Store events unless their (device, key) was stored within the dedupe window.

        Returns each stored event, or None for a publish seen before (not stored again).
        """
        ...

    @property
    def outbox_depth(self) -> int:
        """Downlinks in the outbox, not yet acknowledged nor expired."""
        ...

    async def pending_downlinks(self, after: int, limit: int) -> list[OutboxEntry]:
        """Unexpired outbox entries with ids above ``after``, oldest first."""
        ...

    async def downlinks_acked(self, ids: list[int]) -> None: ...

    async def expire_downlinks(self) -> int:
        """Drop outbox entries past their TTL; returns how many."""
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

    async def settle(
        self,
        attempts: list[tuple[Delivery, Attempt]],
        drafts: list[EventDraft],
        *,
        to_devices: Sequence[str | None] = (),
    ) -> list[Event]:
        """``record_attempts`` and ``append_many`` in one commit: attempts and the hook
        events their answers made are kept together or not at all, for one fsync."""
        ...

    def oldest_id(self) -> int:
        """The id of the oldest event still retained (``last_id() + 1`` when none is)."""
        ...

    async def events_after(self, after_id: int, limit: int) -> list[Event]:
        """Retained events with ids above ``after_id``, oldest first, at most ``limit``."""
        ...

    async def recover(self) -> list[StoredDelivery]:
        """Every delivery not yet settled (at start, after a stop or a crash)."""
        ...

    async def take_replays(self) -> list[StoredDelivery]:
        """Deliveries asked for again (dead-letter or window replays) since the last look."""
        ...

    async def disable_hook(self, name: str, reason: str) -> None:
        """Remember that the hook ``name`` answered 410 Gone."""
        ...

    async def put_hook(self, hook: StoredHook) -> None:
        """Keep a hook created through the API, or replace the one with its id; durable once
        this returns. Raises HookNameTaken, changing nothing, when another id has its name."""
        ...

    async def delete_hook(self, hook_id: str) -> bool:
        """Forget a stored hook, durably once this returns; False when there was none."""
        ...

    def stored_hooks(self) -> list[StoredHook]:
        """The hooks created through the API, in creation order (a replace keeps its place);
        answers from the moment the journal is opened, so the daemon can compile them first."""
        ...

    async def list_dead_letters(self, query: DeadLetterQuery) -> list[DeadLetter]:
        """Dead letters matching ``query``, newest first."""
        ...

    async def replay_dead_letters(self, query: DeadLetterQuery) -> Replayed:
        """Queue ``query``'s dead letters again under their ids, for ``take_replays``."""
        ...

    def problems(self) -> list[str]:
        """What stops the journal from storing events now, one sentence each (for
        ``/readyz``); empty when it can."""
        ...

    async def delivery_page(self, query: DeliveryQuery) -> DeliveryPage:
        """A page of deliveries (one hook's, or every hook's), newest first (delivery_log)."""
        ...

    async def delivery_detail(self, delivery: str) -> DeliveryDetail | None:
        """One delivery, its event and every attempt with its request and answer."""
        ...

    async def hook_activity(self, hook: str) -> HookActivity:
        """A hook's last successes and failures, and its attempts per hour for 30 days."""
        ...

    async def aclose(self) -> None: ...
