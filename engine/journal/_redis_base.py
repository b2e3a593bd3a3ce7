"""What every side of the Redis journal shares: the connection, the state the writer, the
partition readers and the dead letters use, and the reads they all make (events by id,
delivery rows). ``RedisJournal`` is built on it, through ``PartitionReading`` and
``DeadLetterKeeping``, each one job."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Container, Sequence
from typing import Any

import coredis
import msgpack
import trio
from coredis.exceptions import StreamDuplicateConsumerGroupError

from engine.core.model import Event, StoredDelivery
from engine.hooks.router import Deliver, HookSet
from engine.journal import _redis_scripts as scripts
from engine.journal._redis_support import PARTITIONS, Outage, entry_event, partition_of
from engine.journal.base import JournalUnavailable


class RedisBase:
    """The connection to Redis at ``url`` and the state shared by the journal's sides."""

    def __init__(
        self,
        url: str,
        hooks: HookSet,
        *,
        node: str,
        prefix: str = "hw:",
        password: str | None = None,
        partitions: int = PARTITIONS,
        lease: float | None = None,
    ) -> None:
        self.url = url
        self.lease = lease  # None: this node reads every partition, without leases
        self.node = node
        self._hooks = hooks
        self._p = prefix
        self._password = password
        self._partitions = partitions
        self._client: coredis.Redis[bytes] | None = None
        self._epoch = ""
        self._recent: dict[int, Event] = {}  # fanned-out events, for the partition readers
        self._deliver: Deliver | None = None
        self._entries: dict[str, tuple[str, str]] = {}  # delivery id -> (stream, entry id)
        self._stream_names: list[str] = []
        self._routes_wanted = trio.Event()
        self._scripts: dict[str, Any] = {}
        self._restore: Callable[[StoredDelivery], None] | None = None
        self._release: Callable[[set[str]], Awaitable[None]] | None = None
        self.held: set[int] = set()  # partitions this node holds a lease on
        self._usable_until: dict[int, float] = {}  # partition -> unix time
        self._held_changed = trio.Event()
        self._outages: list[Outage] = []  # every way of using Redis that can fail

    def _outage(self, what: str) -> Outage:
        """An ``Outage`` of this journal's, whose problem readiness reports."""
        outage = Outage(what)
        self._outages.append(outage)
        return outage

    def problems(self) -> list[str]:
        """What stops this node from using Redis now (for ``/readyz``); empty when nothing."""
        return [o.problem for o in self._outages if o.problem]

    def _connect(self) -> coredis.Redis[bytes]:
        client: coredis.Redis[bytes] = coredis.Redis.from_url(
            self.url, password=self._password, decode_responses=False
        )
        return client

    @property
    def client(self) -> coredis.Redis[bytes]:
        if self._client is None:
            raise JournalUnavailable("the Redis journal is not open")
        return self._client

    async def _create_groups(self, client: coredis.Redis[bytes]) -> None:
        """Every partition's consumer group, made when missing (also after a Redis restart
        that lost them: no NOGROUP limbo)."""
        for n in range(self._partitions):
            with contextlib.suppress(StreamDuplicateConsumerGroupError):
                await client.xgroup_create(self._stream(n), scripts.GROUP, "0", mkstream=True)

    def partition_of(self, hook: str) -> int:
        return partition_of(hook, self._partitions)

    def _stream(self, n: int) -> str:
        return f"{self._p}d:{n}"

    def _streams(self) -> list[str]:
        """Every partition's stream, by number (names made once)."""
        if len(self._stream_names) != self._partitions:
            self._stream_names = [self._stream(n) for n in range(self._partitions)]
        return self._stream_names

    async def _events_by_id(self, ids: Sequence[int]) -> list[Event]:
        found: list[Event] = []
        for event_id in ids:
            entries = await self.client.xrange(
                self._p + "events", start=f"{event_id}-1", end=f"{event_id}-1"
            )
            found.extend(
                entry_event(entry.identifier, entry.field_values[b"e"]) for entry in entries
            )
        return found

    async def _event_by_id(self, event_id: int) -> Event | None:
        event = self._recent.get(event_id)
        if event is None:
            found = await self._events_by_id([event_id])
            event = found[0] if found else None
        return event

    async def _rows(
        self,
        keys: Sequence[bytes | str],
        keep: Callable[[str], bool] | None = None,
        *,
        states: Container[str] | None = None,
    ) -> list[StoredDelivery]:
        """The deliveries these rows keep, with their events (read only for the rows whose
        hook ``keep`` admits, in one of ``states`` when given)."""
        found = []
        for key, packed in zip(keys, await self._hmget("rows", keys), strict=True):
            if packed is None:
                continue
            event_id, hook, state, attempts, due, _, recorded = msgpack.unpackb(packed)
            if keep is not None and not keep(hook):
                continue
            if states is not None and state not in states:
                continue
            event = await self._event_by_id(event_id)
            if event is not None:
                text = key.decode() if isinstance(key, bytes) else key
                found.append(StoredDelivery(text, event, hook, attempts, due / 1000, recorded))
        return found

    async def _hmget(self, name: str, keys: Sequence[bytes | str]) -> list[bytes | None]:
        if not keys:
            return []
        return list(await self.client.hmget(self._p + name, list(keys)))
