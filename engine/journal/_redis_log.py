"""The delivery log on the Redis journal: each hook's attempts in a stream of its own
(``hlog:<hook>``, written by the commit script with the attempt) and its counts per hour
(``hours:<hook>``). A base class of ``RedisJournal``; its state is ``RedisBase``'s.

Pending deliveries listed here are those queued again (replays); deliveries read from a
partition and not yet tried are counted by ``hookwire cluster status``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncGenerator, Iterable
from contextlib import aclosing

import msgpack
from coredis import PureToken

from engine.core.model import Event, delivery_id
from engine.journal import delivery_log as log
from engine.journal._redis_base import RedisBase
from engine.journal._redis_support import (
    READ_BATCH,
    entry_event,
    event_id_of,
    redis_errors,
    text_of,
)
from engine.journal.admin import AttemptRecord, DeliveryRecord, event_id_of_delivery
from engine.journal.delivery_log import (
    DeliveryDetail,
    DeliveryPage,
    DeliveryQuery,
    HookActivity,
    LoggedAttempt,
    LoggedDelivery,
    SentRequest,
)

OWED_SHOWN = 200
"""Deliveries not tried yet listed per partition at most (in flight, then not read)."""

LOG_SCAN = 20_000
"""Attempts of one hook a page or an activity view reads at most, newest first."""


def logged(hook: str, packed: bytes | str) -> LoggedAttempt:
    """An entry of a hook's log: the attempt (with its next try, when it left the delivery
    waiting)."""
    key, event_id, number, at, duration, status, reason, state, sent, excerpt, due = (
        msgpack.unpackb(packed)
    )
    return LoggedAttempt(
        key,
        event_id,
        hook,
        number,
        at,
        duration,
        status,
        reason,
        state,
        SentRequest.unpack(sent),
        excerpt,
        due if state == "waiting" else None,
    )


class DeliveryLogReading(RedisBase):
    """The delivery log's side of the Redis journal (see the module)."""

    async def _newest(self, hook: str) -> AsyncGenerator[LoggedAttempt, None]:
        """A hook's attempts, newest first (``LOG_SCAN`` at most), read a page at a time
        as the caller goes on: one that stops early reads no further."""
        end, scanned = "+", 0
        while scanned < LOG_SCAN:
            entries = await self.client.xrevrange(
                self._p + "hlog:" + hook, end=end, start="-", count=READ_BATCH
            )
            scanned += len(entries)
            for entry in entries:
                yield logged(hook, entry.field_values[b"a"])
            if len(entries) < READ_BATCH:
                return
            end = "(" + text_of(entries[-1].identifier)

    @redis_errors("read the delivery log from")
    async def delivery_page(self, query: DeliveryQuery) -> DeliveryPage:
        names = [query.hook] if query.hook is not None else [h.name for h in self._hooks.hooks]
        found: list[LoggedDelivery] = []
        for hook in names:
            found += await self._latest(hook, query)
        if "pending" in query.states:
            found += await self._owed(query.hook)
        shown = log.page(found, query)
        named = [
            dataclasses.replace(entry, event_name=await self._event_name(entry.event_id))
            for entry in shown.deliveries
        ]
        return dataclasses.replace(shown, deliveries=tuple(named))

    async def _latest(self, hook: str, query: DeliveryQuery) -> list[LoggedDelivery]:
        """The newest of a hook's deliveries that ``query`` admits, by their last attempt
        (the first of a delivery met reading its log newest first): enough for a page."""
        found: list[LoggedDelivery] = []
        seen: set[str] = set()
        async with aclosing(self._newest(hook)) as attempts:
            async for attempt in attempts:
                if attempt.delivery_id in seen:
                    continue  # an earlier attempt of a delivery already met
                seen.add(attempt.delivery_id)
                listed = LoggedDelivery.of(attempt, "")  # named once on the page
                if query.admits(listed):
                    found.append(listed)
                    if len(found) > query.limit:
                        break
        return found

    async def _event_name(self, event_id: int) -> str:
        event = await self._event_by_id(event_id)
        return event.name if event is not None else ""

    async def _owed(self, hook: str | None) -> list[LoggedDelivery]:
        """Deliveries not tried yet: read from their partition and in flight, or not read
        yet (``OWED_SHOWN`` per partition at most), and those queued again (replays)."""
        partitions = (
            [self.partition_of(hook)] if hook is not None else list(range(self._partitions))
        )
        found: dict[str, LoggedDelivery] = {}
        for n in partitions:
            flat = await self._scripts["PARTITION_OWED"](args=[self._stream(n), OWED_SHOWN])
            for i in range(0, len(flat), 2):
                name = text_of(flat[i + 1])
                if hook is not None and name != hook:
                    continue
                event_id = event_id_of(flat[i])
                known = self._hooks.get(name)
                event, at = await self._event_and_time(event_id)
                if known is None or event is None:
                    continue
                key = delivery_id(self._epoch, event_id, known.tag)
                found[key] = LoggedDelivery(
                    key, name, event_id, event.name, "pending", 0, at, "", None
                )
        keys = list(await self.client.smembers(self._p + "open"))
        for stored in await self._rows(
            keys, lambda name: hook is None or name == hook, states=("pending", "replay")
        ):
            found[stored.id] = LoggedDelivery(
                stored.id,
                stored.hook,
                stored.event.id,
                stored.event.name,
                "pending",
                stored.recorded,
                stored.due,
                "",
                None,
            )
        return list(found.values())

    async def _event_and_time(self, event_id: int) -> tuple[Event | None, float]:
        """An event and when it was stored (unix time), in one read; (None, 0) when gone."""
        entries = await self.client.xrange(self._p + "events", start=f"{event_id}-1", count=1)
        if not entries or event_id_of(entries[0].identifier) != event_id:
            return None, 0.0
        packed = entries[0].field_values[b"e"]
        return entry_event(entries[0].identifier, packed), float(msgpack.unpackb(packed)[7])

    @redis_errors("read the delivery log from")
    async def hook_activity(self, hook: str) -> HookActivity:
        successes: list[LoggedAttempt] = []
        failures: list[LoggedAttempt] = []
        async with aclosing(self._newest(hook)) as attempts:
            async for attempt in attempts:
                kept = successes if attempt.ok else failures
                if len(kept) < log.LAST_KEPT:
                    kept.append(attempt)
                if len(successes) == len(failures) == log.LAST_KEPT:
                    break
        counts = await self.client.hgetall(self._p + "hours:" + hook)
        return HookActivity(hook, tuple(successes), tuple(failures), hour_rows(counts.items()))

    async def _attempts_of(self, delivery: str, hook: str, since: float) -> list[LoggedAttempt]:
        """The attempts of one delivery, first first: its hook's log from ``since`` on."""
        attempts = []
        start = str(int(since * 1000))
        stream = self._p + "hlog:" + hook
        while True:
            found = await self.client.xrange(stream, start=start, count=READ_BATCH)
            for entry in found:
                attempt = logged(hook, entry.field_values[b"a"])
                if attempt.delivery_id == delivery:
                    attempts.append(attempt)
            if len(found) < READ_BATCH:
                return attempts
            start = "(" + text_of(found[-1].identifier)

    @redis_errors("read a delivery from")
    async def show_delivery(self, delivery: str) -> DeliveryRecord | None:
        """A delivery, its event and its attempts (``hookwire dead-letters show``)."""
        detail = await self.delivery_detail(delivery)
        if detail is None:
            return None
        attempts = tuple(
            AttemptRecord(a.number, a.at, a.status, a.duration, a.reason, a.excerpt)
            for a in detail.attempts
        )
        return dataclasses.replace(detail.record, attempt_log=attempts)

    @redis_errors("read a delivery from")
    async def delivery_detail(self, delivery: str) -> DeliveryDetail | None:
        """One delivery, its event and every attempt; None when Redis has none such."""
        event_id = event_id_of_delivery(delivery)
        event = await self._event_by_id(event_id) if event_id is not None else None
        if event is None:
            return None
        packed = (await self._hmget("rows", [delivery]))[0]
        row = msgpack.unpackb(packed) if packed is not None else None
        hook = row[1] if row else self._hook_of(delivery, event.id)
        if hook is None:
            return None
        # From a minute before the event, should Redis's clock be behind the node's.
        _, at = await self._event_and_time(event.id)
        attempts = tuple(await self._attempts_of(delivery, hook, max(0.0, at - 60)))
        if row is not None:
            _, _, state, count, due, reason, _ = row
            dead = await self.client.zscore(self._p + "dead", delivery)
            dead_at = dead / 1000 if dead is not None else None
            record = DeliveryRecord(
                delivery, hook, state, count, due / 1000, reason, event, dead_at, ()
            )
        elif attempts:
            last = attempts[-1]
            record = DeliveryRecord(
                delivery, hook, last.state, last.number, last.at, last.reason, event, None, ()
            )
        else:
            record = DeliveryRecord(delivery, hook, "pending", 0, at, "", event, None, ())
        return DeliveryDetail(record, attempts)

    def _hook_of(self, delivery: str, event_id: int) -> str | None:
        """The hook a delivery without a row is for: the one whose tag its id carries."""
        for hook in self._hooks.hooks:
            if delivery == delivery_id(self._epoch, event_id, hook.tag):
                return hook.name
        return None

    async def prune_log(self, cutoff: float) -> None:
        """Forget each hook's attempts older than ``cutoff`` (unix time: the retention's),
        and its counts older than 30 days."""
        oldest = log.oldest_hour(time.time())
        for hook in self._hooks.hooks:
            await self.client.xtrim(
                self._p + "hlog:" + hook.name, PureToken.MINID, int(cutoff * 1000)
            )
            key = self._p + "hours:" + hook.name
            fields = await self.client.hkeys(key)
            old = [f for f in fields if int(text_of(f).split(":")[0]) < oldest]
            if old:
                await self.client.hdel(key, old)


def hour_rows(
    fields: Iterable[tuple[bytes | str, bytes | str]],
) -> tuple[tuple[int, int, int], ...]:
    """(hour, delivered, failed) per hour, oldest first, from a ``hours:<hook>`` hash."""
    oldest = log.oldest_hour(time.time())
    hours: dict[int, list[int]] = {}
    for field, value in fields:
        hour, kind = text_of(field).split(":")
        if int(hour) >= oldest:
            hours.setdefault(int(hour), [0, 0])[0 if kind == "d" else 1] = int(value)
    return tuple((hour, ok, failed) for hour, (ok, failed) in sorted(hours.items()))
