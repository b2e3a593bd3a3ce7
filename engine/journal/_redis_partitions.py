"""Reading the delivery partitions of the Redis journal: which this node may read (its
leases, when a lease is set), handing their entries to the dispatcher, taking over a
partition's work from its last owner, giving one up (issue 20). A base class of
``RedisJournal``; its state is ``RedisBase``'s."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import trio
from coredis.exceptions import RedisError, StreamConsumerGroupError

from engine.core.model import StoredDelivery, delivery_id, hook_tag
from engine.journal import _leases as leases
from engine.journal import _redis_scripts as scripts
from engine.journal._redis_base import RedisBase
from engine.journal._redis_support import (
    READ_BATCH,
    autoclaim,
    redis_errors,
    text_of,
)

log = logging.getLogger("hookwire.journal")

BLOCK_MS = 1000
"""How long a blocking read waits for new entries before it asks again."""

UNOWNED = "(unowned)"
"""The consumer entries read by a node that had just given up their partition are put
under, idle for a lease: the owner's next look claims them."""


class PartitionReading(RedisBase):
    """The partitions' side of the Redis journal (see the module)."""

    async def _read_partitions(self) -> None:
        """Hand each new delivery of the partitions this node may read (all of them without
        leases) to the dispatcher, through the consumer group, so each is in flight once."""
        await self._routes_wanted.wait()
        outage = self._outage("the delivery partitions")
        every = {self._stream(n): ">" for n in range(self._partitions)}
        while True:
            streams = every if self.lease is None else self._readable()
            if not streams:
                self._held_changed = trio.Event()
                with trio.move_on_after(BLOCK_MS / 1000):
                    await self._held_changed.wait()
                continue
            try:
                found = await self.client.xreadgroup(
                    scripts.GROUP, self.node, streams, count=READ_BATCH, block=BLOCK_MS
                )
            except StreamConsumerGroupError:  # NOGROUP: Redis restarted without its data
                log.warning("the delivery groups are gone from Redis: making them again")
                with contextlib.suppress(RedisError, OSError):
                    await self._create_groups(self.client)
                continue
            except (RedisError, OSError) as exc:
                await trio.sleep(outage.failed(f"cannot read them from Redis at {self.url}: {exc}"))
                continue
            outage.worked()
            await self._take(
                [
                    (text_of(stream), text_of(entry.identifier), text_of(entry.field_values[b"h"]))
                    for stream, entries in (found or {}).items()
                    for entry in entries
                ]
            )

    def _readable_spec(self) -> str:
        """The partitions this node reads, for the commit script: ``*`` all (no leases),
        their numbers, or none while nobody delivers from this journal."""
        if self._deliver is None:
            return ""
        if self.lease is None:
            return "*"
        return ",".join(str(n) for n in self._readable_partitions())

    async def _take(self, found: list[tuple[str, str, str]]) -> None:
        """Entries (stream, entry id, hook) read through the group, by the reader or by a
        commit: to the dispatcher when this node may still send them, else disowned."""
        if not found:
            return
        still = None if self.lease is None else self._readable()  # once per read
        taken: list[tuple[str, str, str]] = []
        lost: dict[str, list[str]] = {}
        for stream, entry_id, hook in found:
            if still is None or stream in still:
                taken.append((stream, entry_id, hook))
            else:
                lost.setdefault(stream, []).append(entry_id)
        try:
            for stream, entry_ids in lost.items():
                # Given up while the read waited: marked idle for a whole lease, so the
                # partition's owner claims them at its next look.
                await self._disown(stream, entry_ids)
            await self._hand_over_all(taken)
        except (RedisError, OSError) as exc:  # left pending: claimed later
            log.warning("cannot hand over deliveries read from Redis: %s", exc)

    async def _disown(self, stream: str, entry_ids: list[str]) -> None:
        assert self.lease is not None
        idle = int(self.lease * 1000) + 1
        with contextlib.suppress(RedisError, OSError):  # else found a lease later anyway
            await self.client.xclaim(
                stream, scripts.GROUP, UNOWNED, 0, entry_ids, idle=idle, justid=True
            )

    def _readable_partitions(self) -> list[int]:
        """The partitions whose lease this node may use now."""
        now = time.time()
        return [n for n in sorted(self.held) if self._usable_until.get(n, 0.0) > now]

    def _readable(self) -> dict[str, str]:
        """The streams of the partitions whose lease this node may use now."""
        names = self._streams()
        return {names[n]: ">" for n in self._readable_partitions()}

    async def _keep_leases(self, lease: float) -> None:
        """Every third of a lease: a heartbeat; the partitions this node should own among
        the live nodes (``_leases.plan``); renew, release and acquire in one script; take
        over what an acquired partition's last owner left (in flight, waiting)."""
        await self._routes_wanted.wait()
        outage = self._outage("the partition leases")
        nodes_key = self._p + "nodes"
        while True:
            sent = time.time()
            try:
                await self.client.zadd(nodes_key, {self.node: int(sent * 1000)})
                beats = await self.client.zrange(nodes_key, 0, -1, withscores=True)
                heartbeats = {text_of(item.member): item.score / 1000 for item in beats}
                live = leases.live_nodes(heartbeats, sent, lease)
                step = leases.plan(self.node, self._partitions, live, self.held)
                kept_text, acquired_text = await self._scripts["LEASES"](
                    args=[
                        self._p,
                        self.node,
                        int(lease * 1000),
                        ",".join(map(str, sorted(set(self.held) - set(step.release)))),
                        ",".join(map(str, step.release)),
                        ",".join(map(str, step.acquire)),
                    ]
                )
            except (RedisError, OSError) as exc:
                # Held leases stay held here until they are no longer surely valid: those
                # that will not be by the next try are given up now.
                delay = outage.failed(f"cannot renew them in Redis: {exc}")
                deadline = time.time() + delay + leases.look_interval(lease)
                await self._give_up({n for n in self.held if self._usable_until[n] <= deadline})
                await trio.sleep(delay)
                continue
            outage.worked()
            kept = {int(n) for n in text_of(kept_text).split(",") if n}
            acquired = {int(n) for n in text_of(acquired_text).split(",") if n}
            await self._give_up(self.held - kept)
            self.held = kept | acquired
            usable = leases.valid_until(sent, lease)
            for n in self.held:
                self._usable_until[n] = usable
            self._held_changed.set()
            try:
                await self._take_over(acquired)
                for n in sorted(kept):
                    await self._claim(n, min_idle=lease)
            except (RedisError, OSError) as exc:
                # What was not claimed now is claimed at a next look (it stays pending).
                log.warning("cannot claim pending deliveries in Redis: %s", exc)
            await trio.sleep(leases.look_interval(lease))

    async def _claim(self, n: int, min_idle: float = 0.0) -> None:
        """Take partition ``n``'s entries pending under any consumer for ``min_idle``
        seconds or more, and send them (not those this node already has: in its queue,
        an entry's idle time grows too). With ``min_idle`` a lease, that finds entries a
        node read after it lost the partition, and left there."""
        stream, start = self._stream(n), "0-0"
        while True:
            start, entries, _ = await autoclaim(
                self.client, stream, self.node, start, int(min_idle * 1000)
            )
            new = []
            for entry in entries:
                entry_id = text_of(entry.identifier)
                name = entry.field_values[b"h"].decode()
                key = delivery_id(self._epoch, int(entry_id.split("-")[0]), hook_tag(name))
                if key not in self._entries:
                    new.append((stream, entry_id, name))
            await self._hand_over_all(new)
            if start == "0-0":
                break

    async def _give_up(self, partitions: set[int]) -> None:
        """Stop sending these partitions' deliveries (released, lost, or about to lapse)."""
        if not partitions:
            return
        self.held -= partitions
        for n in partitions:
            self._usable_until.pop(n, None)
        streams = {self._stream(n) for n in partitions}
        for key in [key for key, (stream, _) in self._entries.items() if stream in streams]:
            del self._entries[key]  # no longer this node's to send: whoever claims them
        names = {
            hook.name for hook in self._hooks.hooks if self.partition_of(hook.name) in partitions
        }
        if names and self._release is not None:
            await self._release(names)

    async def _take_over(self, partitions: set[int]) -> None:
        """These partitions are this node's now: what their last owners had in flight (their
        pending entries, claimed) goes out again under the same webhook-ids, and their
        deliveries waiting for a retry are scheduled here (the open rows read once)."""
        if not partitions:
            return
        for n in sorted(partitions):
            await self._claim(n)
        if self._restore is None:
            return
        open_ids = list(await self.client.smembers(self._p + "open"))
        for stored in await self._rows(
            open_ids, lambda hook: self.partition_of(hook) in partitions
        ):
            self._restore(stored)

    async def _hand_over_all(self, taken: list[tuple[str, str, str]]) -> None:
        """Hand these partition entries (stream, entry id, hook) to the dispatcher: one call
        per event with all its hooks (an event's deliveries come from several partitions in
        one read)."""
        by_event: dict[int, list[Any]] = {}
        for stream, entry_id, name in taken:
            hook = self._hooks.get(name)
            by_event.setdefault(int(entry_id.split("-")[0]), []).append((stream, entry_id, hook))
        for event_id, found in by_event.items():
            event = await self._event_by_id(event_id)
            route = []
            for stream, entry_id, hook in found:
                if event is None or hook is None or self._deliver is None:
                    # The event is gone (retention) or the hook removed: nothing to send.
                    await self.client.xack(stream, scripts.GROUP, [entry_id])
                    continue
                self._entries[delivery_id(self._epoch, event_id, hook.tag)] = (stream, entry_id)
                route.append(hook)
            if route and event is not None and self._deliver is not None:
                self._deliver(event, tuple(route))

    @redis_errors("recover deliveries from")
    async def recover(self) -> list[StoredDelivery]:
        """Deliveries in flight when a node stopped (claimed from every partition's pending
        entries), and those with open rows: waiting, pending, replayed. With leases, none:
        each partition's are taken over when its lease is acquired."""
        if self.lease is not None:
            return []
        found: list[StoredDelivery] = []
        now = time.time()
        for n in range(self._partitions):
            stream = self._stream(n)
            start = "0-0"
            while True:
                start, entries, _ = await autoclaim(self.client, stream, self.node, start)
                for entry in entries:
                    entry_id = entry.identifier.decode()
                    event_id = int(entry_id.split("-")[0])
                    name = entry.field_values[b"h"].decode()
                    event = await self._event_by_id(event_id)
                    key = delivery_id(self._epoch, event_id, hook_tag(name))
                    if key in self._entries:  # read by this node since it started
                        continue
                    if event is None:
                        await self.client.xack(stream, scripts.GROUP, [entry_id])
                        continue
                    self._entries[key] = (stream, entry_id)
                    found.append(StoredDelivery(key, event, name, 0, now))
                if start in ("0-0", b"0-0"):
                    break
        found += await self._rows(list(await self.client.smembers(self._p + "open")))
        return sorted(found, key=lambda stored: (stored.event.id, stored.id))
