"""What the delivery log shows, without I/O: the states a delivery is listed under, the query
of a hook's deliveries (states, a cursor, a limit), the records the journals answer with, and
the hourly counts of a hook's attempts.

Every journal keeps each attempt with its hook, the delivery's state after it and the
request it sent (masked: see ``engine.delivery.request``), for as long as it keeps events
(``[journal] retention``); the hourly counts are kept for ``HOURS_KEPT`` hours.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import msgpack

from engine.journal.admin import DeliveryRecord, event_json, iso_time

STATES = ("pending", "retrying", "delivered", "dead")
"""What a delivery is listed as: not tried yet (or in flight), waiting for its next try,
delivered, given up on."""

JOURNAL_STATES = {"pending": "pending", "replay": "pending", "waiting": "retrying"}
"""A delivery row's state in the journal -> the state it is listed as (others are the same)."""

LIST_LIMIT = 50
MAX_LIMIT = 1000
"""Deliveries one page lists unless told otherwise, and at most."""

LAST_KEPT = 10
"""A hook's last successes and last failures shown (as Particle's console shows them)."""

HOURS_KEPT = 30 * 24
"""Hours of counts kept per hook: 30 days."""

EXCERPT_SHOWN = 1024
"""Bytes of an answer shown: the journal keeps up to 2 KB of it."""


@dataclass(frozen=True, slots=True)
class SentRequest:
    """The request line and headers an attempt sent, secrets masked."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]

    def pack(self) -> bytes:
        return bytes(msgpack.packb([self.method, self.url, [list(h) for h in self.headers]]))

    @classmethod
    def unpack(cls, packed: bytes | None) -> SentRequest | None:
        """The request a journal kept (None for attempts kept before requests were)."""
        if not packed:
            return None
        method, url, headers = msgpack.unpackb(packed)
        return cls(method, url, tuple((name, value) for name, value in headers))

    def to_json(self) -> dict[str, object]:
        return {"method": self.method, "url": self.url, "headers": [list(h) for h in self.headers]}


@dataclass(frozen=True, slots=True)
class LoggedAttempt:
    """One try of a delivery: when, how long, what came back, what it left the delivery in."""

    delivery_id: str
    event_id: int
    hook: str
    number: int
    at: float
    duration: float
    status: int | None
    reason: str  # "200", "error status 503 from host", "timeout after 20 s ..."
    state: str  # the delivery's state after it: delivered, waiting or dead
    request: SentRequest | None
    excerpt: bytes  # the start of the answer
    next_try: float | None = None  # when it left the delivery waiting: its next try

    @property
    def ok(self) -> bool:
        return self.state == "delivered"

    def to_json(self) -> dict[str, object]:
        return {
            "delivery": self.delivery_id,
            "event_id": self.event_id,
            "hook": self.hook,
            "number": self.number,
            "at": iso_time(self.at),
            "duration_ms": round(self.duration * 1000, 3),
            "status": self.status,
            "error": None if self.ok else self.reason,
            "state": JOURNAL_STATES.get(self.state, self.state),
            "next_try": iso_time(self.next_try) if self.next_try is not None else None,
            "request": self.request.to_json() if self.request is not None else None,
            "response": self.excerpt[:EXCERPT_SHOWN].decode("utf-8", "replace"),
        }


@dataclass(frozen=True, slots=True)
class DeliveryQuery:
    """A page of one hook's deliveries (all hooks when None), newest first."""

    hook: str | None = None
    states: tuple[str, ...] = STATES
    before: tuple[float, str] | None = None  # the cursor: (time, delivery id) of the last shown
    limit: int = LIST_LIMIT

    def admits(self, entry: LoggedDelivery) -> bool:
        return (
            entry.state in self.states
            and (self.hook is None or entry.hook == self.hook)
            and (self.before is None or (entry.at, entry.id) < self.before)
        )


@dataclass(frozen=True, slots=True)
class LoggedDelivery:
    """A delivery as the log lists it: its state and its last attempt, if any."""

    id: str
    hook: str
    event_id: int
    event_name: str
    state: str  # one of STATES
    attempts: int
    at: float  # its last attempt's time, or its event's when it has none
    reason: str  # its last attempt's outcome ("" before one)
    next_try: float | None  # when it is tried again (retrying)

    @classmethod
    def of(cls, attempt: LoggedAttempt, event_name: str) -> LoggedDelivery:
        """A delivery as its last attempt left it."""
        state = JOURNAL_STATES.get(attempt.state, attempt.state)
        return cls(
            attempt.delivery_id,
            attempt.hook,
            attempt.event_id,
            event_name,
            state,
            attempt.number,
            attempt.at,
            attempt.reason,
            attempt.next_try if state == "retrying" else None,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "hook": self.hook,
            "event_id": self.event_id,
            "event": self.event_name,
            "state": self.state,
            "attempts": self.attempts,
            "at": iso_time(self.at),
            "last_result": self.reason or None,
            "next_try": iso_time(self.next_try) if self.next_try is not None else None,
        }


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    deliveries: tuple[LoggedDelivery, ...]
    cursor: str | None  # for the next page; None on the last

    def to_json(self) -> dict[str, object]:
        return {
            "deliveries": [entry.to_json() for entry in self.deliveries],
            "next_cursor": self.cursor,
        }


@dataclass(frozen=True, slots=True)
class HookActivity:
    """What Particle's console shows of an integration: its last successes and failures,
    with their requests and answers, and its traffic per hour."""

    hook: str
    successes: tuple[LoggedAttempt, ...]
    failures: tuple[LoggedAttempt, ...]
    hours: tuple[tuple[int, int, int], ...]  # (hour start, unix time; delivered; failed)

    def to_json(self) -> dict[str, object]:
        return {
            "hook": self.hook,
            "last_successes": [attempt.to_json() for attempt in self.successes],
            "last_failures": [attempt.to_json() for attempt in self.failures],
            "hours": [
                {"hour": iso_time(hour), "delivered": ok, "failed": failed}
                for hour, ok, failed in self.hours
            ],
        }


def hour_of(at: float) -> int:
    """The start of the hour (unix time) ``at`` falls in."""
    return int(at // 3600) * 3600


def oldest_hour(now: float) -> int:
    """The first hour whose counts are still kept at ``now`` (``HOURS_KEPT`` hours, this
    one included)."""
    return hour_of(now) - (HOURS_KEPT - 1) * 3600


def next_try_at(state: str, due: float, now: float, clock: float) -> float:
    """An attempt's delivery's next try as unix time, from its ``due`` on trio's clock
    (``clock`` being that clock at ``now``); ``now`` unless the attempt left it waiting."""
    return now + max(0.0, due - clock) if state == "waiting" else now


def hour_counts(
    attempts: Iterable[tuple[str, float, bool]],
) -> dict[tuple[str, int], tuple[int, int]]:
    """Delivered and failed attempts per (hook, hour), from (hook, time, delivered) of each:
    what a batch adds to the counts."""
    counts: dict[tuple[str, int], tuple[int, int]] = {}
    for hook, at, ok in attempts:
        key = (hook, hour_of(at))
        delivered, failed = counts.get(key, (0, 0))
        counts[key] = (delivered + 1, failed) if ok else (delivered, failed + 1)
    return counts


def page(entries: Iterable[LoggedDelivery], query: DeliveryQuery) -> DeliveryPage:
    """The query's page of ``entries`` (from any number of sources, in any order): the
    newest ``limit`` it admits, and the cursor after them when more are left."""
    admitted = sorted(
        (entry for entry in entries if query.admits(entry)),
        key=lambda entry: (entry.at, entry.id),
        reverse=True,
    )
    shown = tuple(admitted[: query.limit])
    more = len(admitted) > query.limit
    return DeliveryPage(shown, encode_cursor(shown[-1]) if more and shown else None)


def encode_cursor(entry: LoggedDelivery) -> str:
    raw = msgpack.packb([entry.at, entry.id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[float, str]:
    """The (time, delivery id) a cursor names; ValueError for one this log did not give."""
    try:
        at, key = msgpack.unpackb(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError, TypeError, msgpack.UnpackException):
        raise ValueError(f"cursor: not a cursor this log gave ({text[:40]!r})") from None
    if not isinstance(at, int | float) or not isinstance(key, str):
        raise ValueError(f"cursor: not a cursor this log gave ({text[:40]!r})")
    return float(at), key


def delivery_query(params: Mapping[str, str], hook: str | None) -> DeliveryQuery:
    """The page ``?state=retrying,dead&cursor=...&limit=`` asks for; ValueError with the
    parameter at fault."""
    states: tuple[str, ...] = STATES
    if params.get("state"):
        asked = tuple(dict.fromkeys(s.strip() for s in params["state"].split(",") if s.strip()))
        unknown = [state for state in asked if state not in STATES]
        if unknown or not asked:
            raise ValueError(
                f"state: expected {', '.join(STATES)} (comma-separated), got {params['state']!r}"
            )
        states = asked
    limit = LIST_LIMIT
    if params.get("limit"):
        text = params["limit"]
        if not text.isdecimal() or not 1 <= int(text) <= MAX_LIMIT:
            raise ValueError(f"limit: expected an integer from 1 to {MAX_LIMIT}, got {text!r}")
        limit = int(text)
    before = decode_cursor(params["cursor"]) if params.get("cursor") else None
    return DeliveryQuery(hook, states, before, limit)


@dataclass(frozen=True, slots=True)
class DeliveryDetail:
    """One delivery, its event, and every attempt with what it sent and got back."""

    record: DeliveryRecord
    attempts: tuple[LoggedAttempt, ...]

    def to_json(self) -> dict[str, object]:
        record, event = self.record, self.record.event
        state = JOURNAL_STATES.get(record.state, record.state)
        return {
            "id": record.id,
            "hook": record.hook,
            "state": state,
            # after a replay the journal counts its new attempts; the log has them all
            "attempts": max(record.attempts, len(self.attempts)),
            "next_try": iso_time(record.due) if state == "retrying" else None,
            "event": event_json(event),
            "attempt_log": [attempt.to_json() for attempt in self.attempts],
        }
