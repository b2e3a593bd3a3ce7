"""Dead letters and replays on the Redis journal: listing, showing, replaying dead
letters, and replaying a time window (``hookwire dead-letters``, ``hookwire replay`` and the
admin API). A base class of ``RedisJournal``; its state is ``RedisBase``'s."""

from __future__ import annotations

import time

import msgpack

from engine.core.model import Event, delivery_id
from engine.journal._redis_base import RedisBase
from engine.journal._redis_support import READ_BATCH, entry_event, redis_errors, text_of
from engine.journal.admin import (
    AttemptRecord,
    DeadLetter,
    DeadLetterQuery,
    DeliveryRecord,
    Replayed,
    WindowReplay,
    event_id_of_delivery,
    window_events,
    window_hook,
)


class DeadLetterKeeping(RedisBase):
    """The dead letters' side of the Redis journal (see the module)."""

    async def _dead(self, query: DeadLetterQuery) -> list[DeadLetter]:
        """Dead letters matching ``query``, newest first (all of them: the caller limits).
        Each row is read once, and its event only when the query admits it."""
        ranked = await self.client.zrange(self._p + "dead", 0, -1, withscores=True)
        scores = {text_of(item.member): item.score / 1000 for item in ranked}
        letters = []
        for key, packed in zip(scores, await self._hmget("rows", list(scores)), strict=True):
            if packed is None:
                continue
            event_id, hook, _, attempts, _, reason, _ = msgpack.unpackb(packed)
            at = scores[key]
            if not query.admits(key, hook, at):
                continue
            event = await self._event_by_id(event_id)
            if event is not None:
                letters.append(
                    DeadLetter(
                        key, event.id, event.name, event.device_id, hook, at, attempts, reason
                    )
                )
        letters.sort(key=lambda letter: (-letter.at, letter.id))
        return letters

    @redis_errors("read dead letters from")
    async def list_dead_letters(self, query: DeadLetterQuery) -> list[DeadLetter]:
        return (await self._dead(query))[: query.limit]

    @redis_errors("read a delivery from")
    async def show_delivery(self, delivery: str) -> DeliveryRecord | None:
        """A delivery, its event and its attempts (for ``hookwire dead-letters show``); None
        when Redis has no such delivery. Attempts are found in the attempts stream from
        the event's time on."""
        event_id = event_id_of_delivery(delivery)
        event = await self._event_by_id(event_id) if event_id is not None else None
        if event is None:
            return None
        packed = (await self._hmget("rows", [delivery]))[0]
        row = msgpack.unpackb(packed) if packed is not None else None
        hook = row[1] if row else None
        if hook is None:  # no row: one of its event's hooks, by the tag in the id
            hooks = [
                h
                for h in self._hooks.hooks
                if delivery == delivery_id(self._epoch, event.id, h.tag)
            ]
            if not hooks:
                return None
            hook = hooks[0].name
        entries = await self.client.xrange(self._p + "events", start=f"{event.id}-1", count=1)
        # From a minute before the event, should Redis's clock be behind the node's.
        at = msgpack.unpackb(entries[0].field_values[b"e"])[7] if entries else 60.0
        since = int((at - 60) * 1000)
        attempts = []
        start = str(since)
        while True:
            found = await self.client.xrange(self._p + "attempts", start=start, count=READ_BATCH)
            for entry in found:
                record = msgpack.unpackb(entry.field_values[b"a"])
                _, key, number, at, status, duration, reason, excerpt = record
                if key == delivery:
                    attempts.append(AttemptRecord(number, at, status, duration, reason, excerpt))
            if len(found) < READ_BATCH:
                break
            start = "(" + text_of(found[-1].identifier)
        dead = await self.client.zscore(self._p + "dead", delivery)
        if row is not None:
            _, _, state, count, due, reason, _ = row
            return DeliveryRecord(
                delivery,
                hook,
                state,
                count,
                due / 1000,
                reason,
                event,
                dead / 1000 if dead is not None else None,
                tuple(attempts),
            )
        if not attempts:
            return DeliveryRecord(delivery, hook, "pending", 0, 0.0, "", event, None, ())
        last = attempts[-1]
        return DeliveryRecord(
            delivery,
            hook,
            "delivered",
            len(attempts),
            last.at,
            last.reason,
            event,
            None,
            tuple(attempts),
        )

    @redis_errors("replay a time window in")
    async def replay_window(
        self, name: str, since: float, until: float, *, limit: int, now: float
    ) -> WindowReplay:
        """Queue every retained event stored in [since, until) that the hook ``name`` takes,
        again, under new delivery ids ending in ``_r<n>``; as the SQLite journal's
        (``admin.replay_window``): AdminError, before anything is queued, for an unknown
        or disabled hook or more than ``limit`` events."""
        hook = window_hook(self._hooks, name)
        in_window: list[Event] = []
        after = 0
        while True:
            entries = await self.client.xrange(
                self._p + "events", start=f"({after}-1", count=READ_BATCH
            )
            for entry in entries:
                packed = entry.field_values[b"e"]
                event = entry_event(entry.identifier, packed)
                after = event.id
                if since <= msgpack.unpackb(packed)[7] < until and event.name.startswith(
                    hook.event
                ):
                    in_window.append(event)
            if len(entries) < READ_BATCH:
                break
        found = window_events(in_window, self._hooks, hook, limit)
        if not found:
            return WindowReplay(hook.name, 0, ())
        replay = int(await self.client.incr(self._p + "replays:count"))
        ids = tuple(delivery_id(self._epoch, i, hook.tag, replay) for i in found)
        pairs = [value for key, i in zip(ids, found, strict=True) for value in (key, i)]
        await self._scripts["REPLAY_WINDOW"](args=[self._p, hook.name, int(now * 1000), *pairs])
        return WindowReplay(hook.name, replay, ids)

    @redis_errors("replay dead letters in")
    async def replay_dead_letters(self, query: DeadLetterQuery) -> Replayed:
        matching = await self._dead(query)
        chosen = [letter.id for letter in matching[: query.limit]]
        done = (
            await self._scripts["REPLAY"](args=[self._p, int(time.time() * 1000), *chosen])
            if chosen
            else []
        )
        replayed = tuple(key.decode() for key in done)
        missing = tuple(key for key in query.ids if key not in replayed)
        return Replayed(replayed, missing, len(matching) - len(chosen))
