"""Small records shared by every part of the engine."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import NamedTuple

REST_DEVICE_ID = "api"
"""Device id of events published over the REST API."""

INTERNAL_DEVICE_ID = "trackle-internal"
"""Device id of the events the engine publishes itself (hook-sent, hook-response, hook-error)."""


class EventDraft(NamedTuple):
    """An event as a publisher sent it, validated, before the journal gives it an id.

    Events are tuples: made once per publish on the hot path, where a frozen dataclass's
    constructor costs several times more.
    """

    name: str
    data: str
    ttl: int
    private: bool
    published_at: str
    device_id: str
    product_id: int | None = None


class Event(NamedTuple):
    """A committed event: stored in the journal, numbered, ready to fan out."""

    id: int
    name: str
    data: str
    ttl: int
    private: bool
    published_at: str
    device_id: str
    product_id: int | None = None

    @classmethod
    def from_draft(cls, draft: EventDraft, event_id: int) -> Event:
        return cls(event_id, *draft)


@dataclass(slots=True)
class Delivery:
    """One event to one hook: retried under the same id until it succeeds or gives up."""

    id: str
    event: Event
    hook: str  # the hook's name
    attempts: int = 0
    due: float = 0.0  # trio clock time of the next attempt
    state: str = "pending"  # pending | in_flight | waiting | delivered | failed | dead
    last_reason: str = ""
    earlier_attempts: int = 0  # on record before a replay: attempt numbers follow them


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one try of a delivery gave: for the journal, metrics and dead letters."""

    delivery_id: str
    number: int
    status: int | None  # the HTTP status, None when no response came
    duration: float
    reason: str  # one line: "200", "error status 404 from host", "timeout after 20 s ..."
    excerpt: bytes = b""  # the start of the response body, at most 2 KB
    state: str = ""  # the delivery's state after this attempt: waiting, delivered or dead
    request: bytes = b""  # the request sent, masked (delivery_log.SentRequest, packed)


def hook_tag(hook_name: str) -> str:
    """A hook's part of its delivery ids: its name hashed (stable across config edits)."""
    return hashlib.blake2s(hook_name.encode(), digest_size=4).hexdigest()


def delivery_id(epoch: str, event_id: int, tag: str, replay: int = 0) -> str:
    """The stable id of one event's delivery to one hook (``webhook-id``).

    A replay of a time window sends the events again under new ids (``replay`` > 0).
    """
    base = f"msg_{epoch}_{event_id:x}_{tag}"
    return f"{base}_r{replay}" if replay else base


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A message for a device, kept until a gateway acknowledges it; its id is the event's."""

    event: Event
    device: str


@dataclass(frozen=True, slots=True)
class StoredDelivery:
    """A delivery not yet settled, as the journal keeps it: recovered at start, or replayed."""

    id: str
    event: Event
    hook: str
    attempts: int  # counted for its retry schedule (a replay starts it again at 0)
    due: float  # unix time of the next attempt
    recorded: int = 0  # attempts on record, replays included: the next is numbered after


@dataclass(frozen=True, slots=True)
class StoredHook:
    """A hook created through the API, as the journal keeps it."""

    id: str  # 24 lowercase hex digits, given by the API
    name: str  # unique among stored hooks
    document: str  # the Particle webhook JSON document as received (text, kept verbatim)
    product: int | None  # the product it was created under (/v1/products/:product/...), or None
    created_at: str  # ISO 8601 UTC as Particle writes it, e.g. "2026-12-06T17:30:00.000Z"
