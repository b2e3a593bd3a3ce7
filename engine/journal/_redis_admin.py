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
    DeadLetter,
    DeadLetterQuery,
    Replayed,
    WindowReplay,
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
