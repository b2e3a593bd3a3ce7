"""Small records shared by every part of the engine."""

from __future__ import annotations

from dataclasses import dataclass

REST_DEVICE_ID = "api"
"""Device id of events published over the REST API."""

INTERNAL_DEVICE_ID = "trackle-internal"
"""Device id of the events the engine publishes itself (hook-sent, hook-response, hook-error)."""


@dataclass(frozen=True, slots=True)
class EventDraft:
    """An event as a publisher sent it, validated, before the journal gives it an id."""

    name: str
    data: str
    ttl: int
    private: bool
    published_at: str
    device_id: str
    product_id: int | None = None


@dataclass(frozen=True, slots=True)
class Event:
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
        return cls(
            event_id,
            draft.name,
            draft.data,
            draft.ttl,
            draft.private,
            draft.published_at,
            draft.device_id,
            draft.product_id,
        )
