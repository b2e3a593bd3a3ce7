"""The Redis journal's small parts: errors as JournalUnavailable, outages logged once,
the partition of a hook, and reading stream entries (no state of their own)."""

from __future__ import annotations

import functools
import logging
import time
import zlib
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import coredis
import msgpack
from coredis.exceptions import RedisError

from engine.core.model import Event
from engine.journal import _redis_scripts as scripts
from engine.journal.base import JournalUnavailable

log = logging.getLogger("hookwire.journal")

PARTITIONS = 64
"""Delivery partitions: streams a node reads through the consumer group."""

READ_BATCH = 512
"""Entries one XREAD, XREADGROUP or XAUTOCLAIM asks for."""

RETRY_FIRST = 0.1
RETRY_MOST = 5.0
"""A reader tries Redis again after a failure this soon, doubling up to the most."""

P = ParamSpec("P")
R = TypeVar("R")


def redis_errors(
    doing: str,
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """A method whose Redis failures are JournalUnavailable ("cannot <doing> Redis at
    <url>: <why>"), as every caller of a journal expects, never a Redis exception."""

    def decorate(
        method: Callable[P, Coroutine[Any, Any, R]],
    ) -> Callable[P, Coroutine[Any, Any, R]]:
        @functools.wraps(method)
        async def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await method(*args, **kwargs)
            except (RedisError, OSError) as exc:
                url = getattr(args[0], "url", "?")
                raise JournalUnavailable(
                    f"the journal cannot {doing} Redis at {url}: {exc}"
                ) from None

        return wrapped

    return decorate


def partition_of(hook: str, partitions: int = PARTITIONS) -> int:
    """The partition of a hook's deliveries (by name: one hook's stay in one place)."""
    return zlib.crc32(hook.encode()) % partitions


class Outage:
    """Failures of one way of using Redis: logged once when they begin and once when they
    end (not once per retry), and the delay before the next try, doubling."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.since: float | None = None
        self.why = ""  # the last failure's, while it lasts
        self._delay = RETRY_FIRST

    def failed(self, why: str) -> float:
        """Note a failure; returns the seconds to wait before trying again."""
        self.why = why
        if self.since is None:
            self.since = time.monotonic()
            log.warning("%s: %s; retrying", self.what, why)
        delay, self._delay = self._delay, min(self._delay * 2, RETRY_MOST)
        return delay

    def worked(self) -> None:
        if self.since is not None:
            log.warning(
                "%s: Redis answers again after %.1f s", self.what, time.monotonic() - self.since
            )
            self.since = None
        self.why = ""
        self._delay = RETRY_FIRST

    @property
    def problem(self) -> str | None:
        """What is wrong, while it is: for readiness."""
        return f"{self.what}: {self.why}" if self.since is not None else None


async def autoclaim(
    client: coredis.Redis[bytes], stream: str, node: str, start: str, min_idle_ms: int = 0
) -> tuple[str, list[Any], Any]:
    """One XAUTOCLAIM page of the pending entries idle that long (0: all) to ``node``."""
    result = await client.xautoclaim(
        stream, scripts.GROUP, node, min_idle_ms, start, count=READ_BATCH
    )
    following, entries = result[0], result[1]
    text = following.decode() if isinstance(following, bytes) else str(following)
    return text, [entry for entry in entries if entry is not None], result[2:]


def text_of(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def event_id_of(identifier: bytes | str) -> int:
    return int(text_of(identifier).split("-")[0])


def entry_event(identifier: bytes | str, packed: bytes | str) -> Event:
    name, data, ttl, private, published_at, device, product, _ = msgpack.unpackb(packed)
    return Event(event_id_of(identifier), name, data, ttl, private, published_at, device, product)
