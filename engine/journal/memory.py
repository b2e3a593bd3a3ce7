"""A journal that keeps recent events in memory: for tests and the first releases.

Nothing survives a restart, hooks created through the API included; `[journal] backend =
"memory"` says so in the config.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence

import trio

from engine.core.model import (
    Attempt,
    Delivery,
    Event,
    EventDraft,
    OutboxEntry,
    StoredDelivery,
    StoredHook,
    delivery_id,
)
from engine.hooks.router import Deliver, HookSet
from engine.journal import delivery_log as log
from engine.journal.admin import DeadLetter, DeadLetterQuery, DeliveryRecord, Replayed
from engine.journal.base import HookNameTaken
from engine.journal.delivery_log import (
    DeliveryDetail,
    DeliveryPage,
    DeliveryQuery,
    HookActivity,
    LoggedAttempt,
    LoggedDelivery,
    SentRequest,
    next_try_at,
)

DEFAULT_KEEP = 10_000
"""Recent events (and attempts, and dead letters) kept; bounds memory under any load."""


class MemoryJournal:
    """Numbers events from 1 and keeps the newest ``keep`` of them."""

    def __init__(
        self,
        keep: int = DEFAULT_KEEP,
        *,
        hooks: HookSet | None = None,
        downlink_ttl: float = 60.0,
        dedupe_window: float = 600.0,
    ) -> None:
        self._hooks = hooks
        self._next_id = 1
        self._recent: deque[Event] = deque(maxlen=keep)
        self._epoch = secrets.token_hex(4)
        self.attempts: deque[Attempt] = deque(maxlen=keep)
        self._dead: deque[tuple[Delivery, float]] = deque(maxlen=keep)  # and when, unix time
        self._replays: list[StoredDelivery] = []
        self._downlink_ttl = downlink_ttl
        self._publish: Callable[[Event], None] | None = None
        self._deliver: Deliver | None = None
        self._dedupe_window = dedupe_window
        self._outbox: dict[int, tuple[OutboxEntry, float]] = {}  # by event id, with expiry
        self._keys: dict[tuple[str, str], float] = {}  # (device, key) -> when, oldest first
        self._stored_hooks: dict[str, StoredHook] = {}  # by id, in creation order
        self._log: deque[LoggedAttempt] = deque(maxlen=keep)
        self._hours: dict[tuple[str, int], tuple[int, int]] = {}
        self._routed: dict[str, tuple[Event, str, float]] = {}  # untried, oldest first, since
        self._keep = keep

    def __repr__(self) -> str:
        return f"<MemoryJournal last_id={self._next_id - 1} kept={len(self._recent)}>"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def append(self, draft: EventDraft) -> Event:
        await trio.lowlevel.checkpoint()
        return self._store(draft)

    def append_nowait(self, draft: EventDraft) -> _Stored:
        """Store the event now (nothing here waits): ``wait`` only hands it over."""
        return _Stored(self._store(draft))

    async def append_many(
        self, drafts: list[EventDraft], *, to_devices: Sequence[str | None] = ()
    ) -> list[Event]:
        await trio.lowlevel.checkpoint()
        events = [self._store(draft) for draft in drafts]
        expires = time.time() + self._downlink_ttl
        for event, device in zip(events, to_devices, strict=False):
            if device is not None:
                self._outbox[event.id] = (OutboxEntry(event, device), expires)
        return events

    async def append_keyed(self, items: list[tuple[EventDraft, str | None]]) -> list[Event | None]:
        await trio.lowlevel.checkpoint()
        now = time.time()
        keys = self._keys
        while keys:  # forget keys older than the window (the oldest come first)
            oldest = next(iter(keys))
            if keys[oldest] >= now - self._dedupe_window:
                break
            del keys[oldest]
        stored: list[Event | None] = []
        for draft, key in items:
            if key is not None:
                if (draft.device_id, key) in keys:
                    stored.append(None)
                    continue
                keys[draft.device_id, key] = now
            stored.append(self._store(draft))
        return stored

    @property
    def outbox_depth(self) -> int:
        return len(self._outbox)

    async def pending_downlinks(self, after: int, limit: int) -> list[OutboxEntry]:
        await trio.lowlevel.checkpoint()
        now = time.time()
        found = (  # the dict keeps insertion order: ids increase
            entry
            for entry, expires in self._outbox.values()
            if entry.event.id > after and expires > now
        )
        return list(itertools.islice(found, limit))

    async def downlinks_acked(self, ids: list[int]) -> None:
        await trio.lowlevel.checkpoint()
        for downlink_id in ids:
            self._outbox.pop(downlink_id, None)

    async def expire_downlinks(self) -> int:
        await trio.lowlevel.checkpoint()
        now = time.time()
        expired = [i for i, (_, expires) in self._outbox.items() if expires <= now]
        for downlink_id in expired:
            del self._outbox[downlink_id]
        return len(expired)

    def _store(self, draft: EventDraft) -> Event:
        event = Event.from_draft(draft, self._next_id)
        self._next_id += 1
        self._recent.append(event)
        route = self._hooks.route(draft) if self._hooks is not None else ()
        now = time.time()
        for hook in route:
            self._routed[delivery_id(self._epoch, event.id, hook.tag)] = (event, hook.name, now)
        while len(self._routed) > self._keep:
            del self._routed[next(iter(self._routed))]
        if self._publish is not None:
            self._publish(event)
        if route and self._deliver is not None:
            self._deliver(event, route)
        return event

    def fan_out_to(self, publish: Callable[[Event], None]) -> None:
        self._publish = publish

    def hand_routes_to(self, deliver: Deliver | None) -> None:
        self._deliver = deliver

    def last_id(self) -> int:
        return self._next_id - 1

    @property
    def epoch(self) -> str:
        return self._epoch

    async def record_attempts(self, attempts: list[tuple[Delivery, Attempt]]) -> None:
        await trio.lowlevel.checkpoint()
        self._record(attempts)

    async def settle(
        self,
        attempts: list[tuple[Delivery, Attempt]],
        drafts: list[EventDraft],
        *,
        to_devices: Sequence[str | None] = (),
    ) -> list[Event]:
        self._record(attempts)
        return await self.append_many(drafts, to_devices=to_devices)

    def _record(self, attempts: list[tuple[Delivery, Attempt]]) -> None:
        now, clock = time.time(), trio.current_time()
        for delivery, attempt in attempts:
            self.attempts.append(attempt)
            self._routed.pop(delivery.id, None)
            logged = LoggedAttempt(
                delivery.id,
                delivery.event.id,
                delivery.hook,
                delivery.earlier_attempts + attempt.number,
                now,
                attempt.duration,
                attempt.status,
                attempt.reason,
                attempt.state,
                SentRequest.unpack(attempt.request),
                attempt.excerpt,
                next_try_at(attempt.state, delivery.due, now, clock)
                if attempt.state == "waiting"
                else None,
            )
            self._log.append(logged)
            if attempt.state == "dead":
                delivery.last_reason = attempt.reason  # a worker's delivery comes without it
                self._dead.append((delivery, now))
        for key, (ok, failed) in log.hour_counts(
            (d.hook, now, a.state == "delivered") for d, a in attempts
        ).items():
            held = self._hours.get(key, (0, 0))
            self._hours[key] = (held[0] + ok, held[1] + failed)

    def problems(self) -> list[str]:
        """Nothing keeps memory from being written."""
        return []

    # the delivery log

    async def delivery_page(self, query: DeliveryQuery) -> DeliveryPage:
        await trio.lowlevel.checkpoint()
        found = [
            LoggedDelivery(key, hook, event.id, event.name, "pending", 0, at, "", None)
            for key, (event, hook, at) in self._routed.items()
        ]
        for attempt in self._latest().values():
            event = self._event(attempt.event_id)
            found.append(LoggedDelivery.of(attempt, event.name if event is not None else ""))
        return log.page(found, query)

    async def delivery_detail(self, delivery: str) -> DeliveryDetail | None:
        await trio.lowlevel.checkpoint()
        attempts = tuple(a for a in self._log if a.delivery_id == delivery)
        if not attempts:
            routed = self._routed.get(delivery)
            if routed is None:
                return None
            event, hook, at = routed
            record = DeliveryRecord(delivery, hook, "pending", 0, at, "", event, None, ())
            return DeliveryDetail(record, ())
        last = attempts[-1]
        due = last.next_try if last.next_try is not None else last.at
        tried = self._event(last.event_id)
        if tried is None:
            return None
        dead_at = last.at if last.state == "dead" else None
        record = DeliveryRecord(
            delivery, last.hook, last.state, last.number, due, last.reason, tried, dead_at, ()
        )
        return DeliveryDetail(record, attempts)

    async def hook_activity(self, hook: str) -> HookActivity:
        await trio.lowlevel.checkpoint()
        mine = [attempt for attempt in reversed(self._log) if attempt.hook == hook]
        since = log.oldest_hour(time.time())
        return HookActivity(
            hook,
            tuple([a for a in mine if a.ok][: log.LAST_KEPT]),
            tuple([a for a in mine if not a.ok][: log.LAST_KEPT]),
            tuple(
                (hour, ok, failed)
                for (name, hour), (ok, failed) in sorted(self._hours.items())
                if name == hook and hour >= since
            ),
        )

    def _latest(self) -> dict[str, LoggedAttempt]:
        """Each delivery's last attempt kept."""
        return {attempt.delivery_id: attempt for attempt in self._log}

    def _event(self, event_id: int) -> Event | None:
        recent = self._recent
        if not recent or not recent[0].id <= event_id <= recent[-1].id:
            return None
        return recent[event_id - recent[0].id]

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
        replays, self._replays = self._replays, []
        return replays

    async def disable_hook(self, name: str, reason: str) -> None:
        await trio.lowlevel.checkpoint()  # forgotten at restart

    async def put_hook(self, hook: StoredHook) -> None:
        """Keep ``hook`` (or replace the one with its id) until the process ends."""
        await trio.lowlevel.checkpoint()
        for held in self._stored_hooks.values():
            if held.name == hook.name and held.id != hook.id:
                raise HookNameTaken(hook.name, held.id)
        self._stored_hooks[hook.id] = hook  # a replaced key keeps its place

    async def delete_hook(self, hook_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        return self._stored_hooks.pop(hook_id, None) is not None

    def stored_hooks(self) -> list[StoredHook]:
        """The hooks put since the process started (none survive it), in creation order."""
        return list(self._stored_hooks.values())

    @property
    def dead_letters(self) -> list[Delivery]:
        """The deliveries given up on and not replayed, oldest first."""
        return [delivery for delivery, _ in self._dead]

    async def list_dead_letters(self, query: DeadLetterQuery) -> list[DeadLetter]:
        await trio.lowlevel.checkpoint()
        found = (_dead_letter(d, at) for d, at in reversed(self._dead))
        chosen = (letter for letter in found if query.admits(letter.id, letter.hook, letter.at))
        return list(itertools.islice(chosen, query.limit))

    async def replay_dead_letters(self, query: DeadLetterQuery) -> Replayed:
        await trio.lowlevel.checkpoint()
        matching = [(d, at) for d, at in self._dead if query.admits(d.id, d.hook, at)]
        chosen = matching[: query.limit]
        gone = {d.id for d, _ in chosen}
        self._dead = deque((e for e in self._dead if e[0].id not in gone), self._dead.maxlen)
        now = time.time()
        self._replays.extend(StoredDelivery(d.id, d.event, d.hook, 0, now) for d, _ in chosen)
        ids = tuple(d.id for d, _ in chosen)
        missing = tuple(key for key in query.ids if key not in gone)
        return Replayed(ids, missing, len(matching) - len(chosen))

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


class _Stored:
    """An append that was done when it was asked for (``PendingAppend``)."""

    __slots__ = ("_event",)

    def __init__(self, event: Event) -> None:
        self._event = event

    def __repr__(self) -> str:
        return f"<stored event {self._event.id}>"

    async def wait(self) -> Event:
        await trio.lowlevel.checkpoint()
        return self._event


def _dead_letter(delivery: Delivery, at: float) -> DeadLetter:
    event = delivery.event
    return DeadLetter(
        delivery.id,
        event.id,
        event.name,
        event.device_id,
        delivery.hook,
        at,
        delivery.attempts,
        delivery.last_reason,
    )
