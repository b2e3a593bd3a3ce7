"""The journal on Redis (issue 20): what several nodes share, kept where all of them reach it.

- **Events** go to one stream with cluster-wide increasing ids: a script takes the next id
  (INCR) and appends the entry ``<id>-1`` in one step, so ids follow the order in which
  Redis stored them whichever node appended. Every node hands each event to its bus in id
  order, its own and the other nodes' alike: from its writes' answers (each carries the
  events after the node's last) and, while it writes nothing, from reading the stream.
- **Deliveries** of an event are entries of partition streams (``d:<n>``, a fixed number,
  chosen by hook), written in the same script, and read through a consumer group: by the
  same script for the partitions the writing node reads, by a blocking read for the rest.
  The pending-entries list records what is in flight, so a node that stops leaves its work
  there for the next owner of the partition (leases: ``_redis_partitions``).
- A delivery that waits for a retry, dies or is replayed gets a row (as in the SQLite
  journal); rows still owed are in ``open``, waiting ones by due time in ``retry``.
- Writes are batched: everything queued while one script runs goes into the next (one
  round trip per batch, as the SQLite journal's group commit shares one fsync).

What an acknowledged event survives is Redis's persistence: docs/cluster.md says which
settings keep it through a restart.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import coredis
import msgpack
import trio
from coredis.connection import BaseConnection
from coredis.exceptions import (
    NoScriptError,
    RedisError,
)

from engine.core.model import (
    Attempt,
    Delivery,
    Event,
    EventDraft,
    OutboxEntry,
    StoredDelivery,
    StoredHook,
)
from engine.hooks.router import Deliver, HookSet
from engine.journal import _redis_scripts as scripts
from engine.journal._redis_admin import DeadLetterKeeping
from engine.journal._redis_log import DeliveryLogReading
from engine.journal._redis_partitions import BLOCK_MS, PartitionReading
from engine.journal._redis_support import (
    PARTITIONS,
    READ_BATCH,
    entry_event,
    event_id_of,
    partition_of,
    redis_errors,
    text_of,
)
from engine.journal.base import HookNameTaken, JournalUnavailable
from engine.journal.delivery_log import hour_of, next_try_at

log = logging.getLogger("hookwire.journal")

PRUNE_EVERY = 10.0
"""Seconds between two looks for what is older than the retention."""

PRUNE_BATCH = 1000
"""Events one look reads to find where the retention ends."""

HOOKS_POLL = 0.5
"""Seconds between two looks at whether the stored hooks changed (any node's API)."""

FAN_OUT_WAIT = 5.0
"""Seconds an append waits to see its event come back from the stream before it answers
without (the event is stored either way)."""

FOLLOW_QUIET = 0.005
"""Seconds after this node's last write before it reads the event stream itself: the
longest a busy node's subscribers wait for an event of another node."""

WRITE_TIMEOUT = 10.0
"""Seconds one write may take before its callers are told the journal is unavailable."""


@dataclass(eq=False)
class _Work:
    """What one caller queued for the next script: events to append, attempts to keep."""

    items: list[list[Any]] = field(default_factory=list)
    attempts: list[list[Any]] = field(default_factory=list)
    drafts: list[EventDraft] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)
    ids: list[int] = field(default_factory=list)
    error: str | None = None

    async def outcome(self) -> list[int]:
        await self.done.wait()
        if self.error is not None:
            raise JournalUnavailable(self.error)
        return self.ids


class _Pending:
    """An append queued by ``append_nowait``: ``wait`` returns the event once fanned out."""

    __slots__ = ("_journal", "_work")

    def __init__(self, journal: RedisJournal, work: _Work) -> None:
        self._journal = journal
        self._work = work

    async def wait(self) -> Event:
        [event] = await self._journal._fanned_out(self._work)
        assert event is not None
        return event


class RedisJournal(PartitionReading, DeadLetterKeeping, DeliveryLogReading):
    """The Journal on one Redis server (``url``), shared by every node that names it.

    ``open`` connects and reads what must be known before ``run`` (the epoch, the stored
    hooks, the last id); ``run`` serves writes, the event stream and the partitions.
    """

    def __init__(
        self,
        url: str,
        hooks: HookSet,
        *,
        node: str,
        prefix: str = "hw:",
        password: str | None = None,
        retention: float = 7 * 86400.0,
        downlink_ttl: float = 60.0,
        dedupe_window: float = 600.0,
        partitions: int = PARTITIONS,
        lease: float | None = None,
    ) -> None:
        super().__init__(
            url,
            hooks,
            node=node,
            prefix=prefix,
            password=password,
            partitions=partitions,
            lease=lease,
        )
        self._retention = retention
        self._downlink_ttl = downlink_ttl
        self._dedupe_window = dedupe_window
        self._last_id = 0  # the newest id fanned out here
        self._stored_top = 0  # the newest id a write of this node stored
        self._written_at = -FOLLOW_QUIET  # trio time of the last write's answer
        self._oldest_id = 1
        self.outbox_depth = 0
        self._stored: dict[str, StoredHook] = {}
        self._queue: list[_Work] = []
        self._queued = trio.Event()
        self._fanned = trio.lowlevel.ParkingLot()  # woken as _last_id moves
        self._publish: Callable[[Event], None] | None = None
        self._running = False
        self._opened = False
        self._disabled: dict[str, Any] = {}  # hook name -> (url, at, reason), as loaded
        self._writes = self._outage("writes")
        self._writer: BaseConnection | None = None  # the commit script's connection

    def __repr__(self) -> str:
        return f"<RedisJournal {self.url} node={self.node} last_id={self._last_id}>"

    # -- opening -------------------------------------------------------------------------

    async def open(self) -> None:
        """Read what is needed before ``run`` (the epoch, the last id, the stored hooks and
        410 marks), and make the partitions' groups; raises JournalUnavailable."""
        try:
            async with self._connect() as client:
                await self._load(client)
        except (RedisError, OSError) as exc:
            raise JournalUnavailable(f"cannot reach Redis at {self.url}: {exc}") from None
        self._opened = True

    async def _load(self, client: coredis.Redis[bytes]) -> None:
        p = self._p
        await client.set(p + "epoch", secrets.token_hex(4), condition=coredis.PureToken.NX)
        self._epoch = (await client.get(p + "epoch") or b"").decode()
        self._last_id = int(await client.get(p + "next") or 0)
        first = await client.xrange(p + "events", count=1)
        self._oldest_id = event_id_of(first[0].identifier) if first else self._last_id + 1
        self.outbox_depth = await client.hlen(p + "outbox")
        for key, packed in (await client.hgetall(p + "hooks")).items():
            name, document, product, created_at = msgpack.unpackb(packed)
            hook_id = key.decode()
            self._stored[hook_id] = StoredHook(hook_id, name, document, product, created_at)
        await self._create_groups(client)
        disabled = await client.hgetall(p + "disabled")
        self._disabled = {key.decode(): msgpack.unpackb(value) for key, value in disabled.items()}
        self.apply_disabled_hooks()

    def apply_disabled_hooks(self) -> None:
        """Disable the hooks that answered 410, while their url is the one they had (again
        once the stored hooks are in the hook set: theirs too)."""
        for name, (url, _, _) in self._disabled.items():
            hook = self._hooks.get(name)
            if hook is not None and hook.url == url and not self._hooks.is_disabled(name):
                self._hooks.disable(name)
                log.warning("hook %r stays disabled: its target answered 410 Gone", name)

    # -- running -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve writes, follow the event stream and, once routes are wanted, the partitions.

        The connection is this task's (coredis wants it entered and left in one task)."""
        if not self._opened:
            await self.open()
        try:
            async with self._connect() as client, trio.open_nursery() as nursery:
                self._client = client
                self._scripts = {
                    name: client.register_script(getattr(scripts, name)) for name in _SCRIPTS
                }
                self._running = True
                nursery.start_soon(self._write)
                await nursery.start(self._follow_events)
                nursery.start_soon(self._read_partitions)
                if self.lease is not None:
                    nursery.start_soon(self._keep_leases, self.lease)
                task_status.started()
                while True:
                    await trio.sleep(PRUNE_EVERY)
                    try:
                        await self.prune()
                    except (RedisError, OSError) as exc:
                        log.warning("cannot prune the journal in Redis: %s", exc)
        except (RedisError, OSError) as exc:
            raise JournalUnavailable(f"cannot reach Redis at {self.url}: {exc}") from None
        finally:
            self._running = False
            self._client = None
            self._writer = None
            for work in self._queue:
                work.error = "the journal stopped before this was stored"
                work.done.set()
            self._queue.clear()

    def fan_out_to(self, publish: Callable[[Event], None]) -> None:
        self._publish = publish

    def hand_releases_to(self, release: Callable[[set[str]], Awaitable[None]] | None) -> None:
        """Tell ``release`` the hooks whose partitions this node gives up or loses: their
        queued deliveries must not go out from here any more."""
        self._release = release

    def hand_restores_to(self, restore: Callable[[StoredDelivery], None] | None) -> None:
        """Hand the deliveries of a partition this node takes over (in flight on the node
        that held it, or waiting for a retry) to ``restore``."""
        self._restore = restore

    def hand_routes_to(self, deliver: Deliver | None) -> None:
        """Hand every delivery of the partitions read here to ``deliver``: the partitions
        are read from the first call on (a journal nobody delivers from reads none)."""
        self._deliver = deliver
        if deliver is not None:
            self._routes_wanted.set()

    async def _write(self) -> None:
        """One script per batch of everything queued meanwhile."""
        while True:
            await self._queued.wait()
            self._queued = trio.Event()
            batch, self._queue = self._queue, []
            items = [item for work in batch for item in work.items]
            attempts = [attempt for work in batch for attempt in work.attempts]
            now = int(time.time() * 1000)
            # Bytes as msgpack's old raw strings: Redis's cmsgpack reads no bin type.
            batch_items = [now, int(self._dedupe_window * 1000), items, attempts]
            packed = msgpack.packb(batch_items, use_bin_type=False)
            args = [self._p, packed, scripts.HOOK_LOG_KEPT, self._last_id, self.node]
            args += [self._readable_spec(), READ_BATCH, READ_BATCH]
            try:
                with trio.fail_after(WRITE_TIMEOUT):
                    ids, events, taken = await self._commit(args)
            except (RedisError, OSError, trio.TooSlowError) as exc:
                error = f"the journal cannot write to Redis at {self.url}: {exc or 'timed out'}"
                self._writes.failed(error)
                for work in batch:
                    work.error = error
                    work.done.set()
                continue
            self._writes.worked()
            self._fan_out(zip(events[::2], events[1::2], strict=True))
            self._written_at = trio.current_time()
            self._stored_top = max(self._stored_top, *map(int, ids), 0)
            at = 0
            for work in batch:
                work.ids = [int(i) for i in ids[at : at + len(work.items)]]
                at += len(work.items)
                self.outbox_depth += sum(1 for item in work.items if item[4] is not False)
                work.done.set()
            await self._take(
                [
                    (text_of(taken[i]), text_of(taken[i + 1]), text_of(taken[i + 2]))
                    for i in range(0, len(taken), 3)
                ]
            )

    async def _commit(self, args: list[Any]) -> Any:
        """Run the commit script on the writer's own connection: a request straight on the
        connection costs about half the CPU of a client command (no retry policy, pool,
        cache or reply callback on the way), and what the writer sends goes in order."""
        for _ in range(2):
            if self._writer is None or not self._writer.usable:
                self._writer = await self.client.connection_pool.get_connection()
            try:
                return await self._writer.create_request(
                    b"EVALSHA", self._scripts["COMMIT"].sha, 0, *args
                )
            except NoScriptError:  # Redis restarted without its scripts: load it again
                await self.client.script_load(scripts.COMMIT)
        raise NoScriptError("Redis lost the commit script as soon as it was loaded")

    async def _follow_events(self, *, task_status: trio.TaskStatus[None]) -> None:
        """Hand every event of the stream to the bus, in id order, from the last id on:
        read here while this node writes nothing (a write's answer carries the events
        after this node's last, its own and the other nodes', so a busy node reads none)."""
        outage = self._outage("the event stream")
        task_status.started()
        while True:
            quiet_in = self._written_at + FOLLOW_QUIET - trio.current_time()
            if quiet_in > 0 and self._last_id >= self._stored_top:
                await trio.sleep(quiet_in)
                continue
            try:
                found = await self.client.xread(
                    {self._p + "events": f"{self._last_id}-1"}, count=READ_BATCH, block=BLOCK_MS
                )
            except (RedisError, OSError) as exc:
                await trio.sleep(outage.failed(f"cannot read it from Redis at {self.url}: {exc}"))
                continue
            outage.worked()
            for entries in (found or {}).values():
                self._fan_out((entry.identifier, entry.field_values[b"e"]) for entry in entries)

    def _fan_out(self, entries: Iterable[tuple[bytes | str, bytes | str]]) -> None:
        """Hand these stream entries (id, packed event), in id order, to the bus: those
        after the last fanned out (a read and a write's answer may bring the same)."""
        for identifier, packed in entries:
            event = entry_event(identifier, packed)
            if event.id <= self._last_id:
                continue
            self._recent[event.id] = event
            if self._publish is not None:
                self._publish(event)
            self._last_id = event.id
        while len(self._recent) > 4 * READ_BATCH:
            del self._recent[next(iter(self._recent))]
        self._fanned.unpark_all()

    async def _events_of(self, work: _Work) -> list[Event | None]:
        """The events ``work`` stored (None for a key seen before), once fanned out here."""
        return await self._fanned_out(self._submit(work))

    async def _fanned_out(self, work: _Work) -> list[Event | None]:
        ids = await work.outcome()
        top = max(ids, default=0)
        if self._last_id < top:  # the write's answer brought too many events to fan out
            with trio.move_on_after(FAN_OUT_WAIT):
                while self._last_id < top:
                    await self._fanned.park()
        if self._last_id < top:
            # Stored (the script returned), not yet read back: the event stream cannot be
            # read now. The append stands; its subscribers get it once the stream is back.
            log.warning("event %d is stored but not yet read back from Redis", top)
            pairs = zip(work.drafts, ids, strict=True)
            return [Event.from_draft(draft, i) if i else None for draft, i in pairs]
        found = {i: self._recent.get(i) for i in ids if i}
        missing = [i for i, event in found.items() if event is None]
        for event in await self._events_by_id(missing):
            found[event.id] = event
        return [found[i] if i else None for i in ids]

    def _submit(self, work: _Work) -> _Work:
        """Queue ``work`` for the next script, now: ids follow the order of submission."""
        if not self._running:
            work.error = "the journal is not running"
            work.done.set()
        else:
            self._queue.append(work)
            self._queued.set()
        return work

    # -- appending -----------------------------------------------------------------------

    def _item(
        self, draft: EventDraft, key: str | None = None, to_device: str | None = None
    ) -> list[Any]:
        route = self._hooks.route(draft)
        event = msgpack.packb(
            (
                draft.name,
                draft.data,
                draft.ttl,
                draft.private,
                draft.published_at,
                draft.device_id,
                draft.product_id,
                time.time(),
            )
        )
        hooks = [[hook.name, self.partition_of(hook.name)] for hook in route]
        expires = int((time.time() + self._downlink_ttl) * 1000)
        device = to_device if to_device is not None else False
        return [event, draft.device_id, key if key is not None else False, hooks, device, expires]

    async def append(self, draft: EventDraft) -> Event:
        [event] = await self._events_of(_Work(items=[self._item(draft)], drafts=[draft]))
        assert event is not None
        return event

    def append_nowait(self, draft: EventDraft) -> _Pending:
        return _Pending(self, self._submit(_Work(items=[self._item(draft)], drafts=[draft])))

    async def append_many(
        self, drafts: list[EventDraft], *, to_devices: Sequence[str | None] = ()
    ) -> list[Event]:
        return await self.settle([], drafts, to_devices=to_devices)

    async def append_keyed(self, items: list[tuple[EventDraft, str | None]]) -> list[Event | None]:
        work = _Work(items=[self._item(d, key) for d, key in items], drafts=[d for d, _ in items])
        return await self._events_of(work)

    async def settle(
        self,
        attempts: list[tuple[Delivery, Attempt]],
        drafts: list[EventDraft],
        *,
        to_devices: Sequence[str | None] = (),
    ) -> list[Event]:
        devices = list(to_devices) + [None] * (len(drafts) - len(to_devices))
        work = _Work(
            items=[self._item(d, to_device=dev) for d, dev in zip(drafts, devices, strict=True)],
            attempts=self._attempt_rows(attempts),
            drafts=list(drafts),
        )
        events = await self._events_of(work)
        return [event for event in events if event is not None]

    async def record_attempts(self, attempts: list[tuple[Delivery, Attempt]]) -> None:
        await self._submit(_Work(attempts=self._attempt_rows(attempts))).outcome()

    def _attempt_rows(self, attempts: list[tuple[Delivery, Attempt]]) -> list[list[Any]]:
        now, clock = time.time(), trio.current_time()
        rows = []
        for delivery, attempt in attempts:
            due = next_try_at(attempt.state, delivery.due, now, clock)
            recorded = delivery.earlier_attempts + attempt.number
            record = msgpack.packb(
                (
                    delivery.id,
                    delivery.event.id,
                    recorded,
                    now,
                    attempt.duration,
                    attempt.status,
                    attempt.reason,
                    attempt.state,
                    attempt.request,
                    attempt.excerpt,
                    due,
                )
            )
            hour = f"{hour_of(now)}:{'d' if attempt.state == 'delivered' else 'f'}"
            stream, entry = self._entries.get(delivery.id, (False, False))
            if attempt.state != "waiting" or stream is not False:
                self._entries.pop(delivery.id, None)
            rows.append(
                [
                    delivery.id,
                    delivery.event.id,
                    delivery.hook,
                    attempt.state,
                    delivery.attempts,
                    int(due * 1000),
                    attempt.reason,
                    recorded,
                    stream,
                    entry,
                    record,
                    # a row was written when it first waited, or it was replayed
                    attempt.number > 1 or delivery.attempts > 1 or recorded > attempt.number,
                    hour,
                ]
            )
        return rows

    # -- reading -------------------------------------------------------------------------

    def last_id(self) -> int:
        return self._last_id

    def oldest_id(self) -> int:
        return self._oldest_id

    @property
    def epoch(self) -> str:
        return self._epoch

    async def events_after(self, after_id: int, limit: int) -> list[Event]:
        try:
            entries = await self.client.xrange(
                self._p + "events", start=f"({after_id}-1", count=limit
            )
        except (RedisError, OSError) as exc:
            raise JournalUnavailable(f"the journal cannot read Redis: {exc}") from None
        return [entry_event(entry.identifier, entry.field_values[b"e"]) for entry in entries]

    @redis_errors("look for replays in")
    async def take_replays(self) -> list[StoredDelivery]:
        ids = await self._scripts["TAKE_REPLAYS"](args=[self._p])
        return await self._rows(list(ids))

    # -- retention -------------------------------------------------------------------------

    async def prune(self) -> int:
        """Forget the events older than the retention, with their partitions' entries, and
        the dead letters; returns how many events went. Any node may do it: trimming by id
        is the same whoever does it."""
        cutoff = time.time() - self._retention
        stream = self._p + "events"
        keep_from = 0  # the first id to keep, once one is found younger than the cutoff
        removed = 0
        while True:
            entries = await self.client.xrange(stream, count=PRUNE_BATCH)
            old = [e for e in entries if msgpack.unpackb(e.field_values[b"e"])[7] < cutoff]
            if not old:
                break
            keep_from = event_id_of(old[-1].identifier) + 1
            removed += await self.client.xtrim(stream, coredis.PureToken.MINID, keep_from)
            if len(old) < len(entries) or len(entries) < PRUNE_BATCH:
                break
        if keep_from:
            for n in range(self._partitions):
                await self.client.xtrim(self._stream(n), coredis.PureToken.MINID, keep_from)
            self._oldest_id = keep_from
        dead = await self.client.zrange(
            self._p + "dead", "-inf", int(cutoff * 1000), sortby=coredis.PureToken.BYSCORE
        )
        if dead:
            await self.client.hdel(self._p + "rows", list(dead))
            await self.client.zrem(self._p + "dead", list(dead))
        await self.prune_log(cutoff)
        return removed

    # -- the downlink outbox ---------------------------------------------------------------

    @redis_errors("read the downlink outbox in")
    async def pending_downlinks(self, after: int, limit: int) -> list[OutboxEntry]:
        now = time.time() * 1000
        ids = await self.client.zrange(
            self._p + "outbox:ids",
            f"({after}",
            "+inf",
            sortby=coredis.PureToken.BYSCORE,
            offset=0,
            count=limit,
        )
        found = []
        for key, packed in zip(ids, await self._hmget("outbox", list(ids)), strict=True):
            if packed is None:
                continue
            device, expires = msgpack.unpackb(packed)
            if expires <= now:
                continue
            event = await self._event_by_id(int(key))
            if event is not None:
                found.append(OutboxEntry(event, device))
        return found

    @redis_errors("update the downlink outbox in")
    async def downlinks_acked(self, ids: list[int]) -> None:
        if ids:
            gone = await self._scripts["ACK_DOWNLINKS"](args=[self._p, *ids])
            self.outbox_depth = max(0, self.outbox_depth - int(gone))

    @redis_errors("expire downlinks in")
    async def expire_downlinks(self) -> int:
        gone = int(await self._scripts["EXPIRE_DOWNLINKS"](args=[self._p, int(time.time() * 1000)]))
        self.outbox_depth = max(0, self.outbox_depth - gone)
        return gone

    # -- hooks ---------------------------------------------------------------------------

    @redis_errors("keep a hook disabled in")
    async def disable_hook(self, name: str, reason: str) -> None:
        hook = self._hooks.get(name)
        assert hook is not None, f"no hook {name!r}"
        value = msgpack.packb((hook.url, time.time(), reason))
        await self.client.hset(self._p + "disabled", {name: value})

    @redis_errors("store a hook in")
    async def put_hook(self, hook: StoredHook) -> None:
        packed = msgpack.packb((hook.name, hook.document, hook.product, hook.created_at))
        holder = await self._scripts["PUT_HOOK"](args=[self._p, hook.id, hook.name, packed])
        if holder:
            raise HookNameTaken(hook.name, holder.decode())
        self._stored[hook.id] = hook

    @redis_errors("delete a hook in")
    async def delete_hook(self, hook_id: str) -> bool:
        deleted = bool(await self._scripts["DELETE_HOOK"](args=[self._p, hook_id]))
        self._stored.pop(hook_id, None)
        return deleted

    def stored_hooks(self) -> list[StoredHook]:
        return sorted(self._stored.values(), key=lambda hook: (hook.created_at, hook.id))

    async def watch_hooks(
        self, apply: Callable[[list[StoredHook]], Awaitable[None]], every: float = HOOKS_POLL
    ) -> None:
        """Call ``apply`` with the stored hooks each time a node (this one too) changes
        them, looking every ``every`` seconds: a hook created through any node's API is
        applied on every node within about that."""
        seen = None
        outage = self._outage("the stored hooks")
        while True:
            await trio.sleep(every)
            try:
                version = await self.client.get(self._p + "hooks:version")
                if version == seen:
                    continue
                found = await self.client.hgetall(self._p + "hooks")
            except (RedisError, OSError, JournalUnavailable) as exc:
                await trio.sleep(outage.failed(f"cannot read them from Redis: {exc}"))
                continue
            outage.worked()
            seen = version
            stored = {}
            for key, packed in found.items():
                name, document, product, created_at = msgpack.unpackb(packed)
                hook_id = text_of(key)
                stored[hook_id] = StoredHook(hook_id, name, document, product, created_at)
            self._stored = stored
            await apply(self.stored_hooks())

    async def aclose(self) -> None:
        """Nothing to close: the connection is ``run``'s, and ends with it."""
        await trio.lowlevel.checkpoint()


_SCRIPTS = (
    "COMMIT",
    "EXPIRE_DOWNLINKS",
    "ACK_DOWNLINKS",
    "TAKE_REPLAYS",
    "REPLAY",
    "PUT_HOOK",
    "DELETE_HOOK",
    "LEASES",
    "REPLAY_WINDOW",
    "PARTITION_OWED",
)


__all__ = ["PARTITIONS", "RedisJournal", "partition_of"]
