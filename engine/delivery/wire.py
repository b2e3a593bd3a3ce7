"""The messages between the main process and its delivery workers (msgpack, no I/O).

A stream of msgpack arrays, ``[kind, ...]``, one per message, over a Unix socket pair:

main -> worker
    ``["start", epoch, {hook: why disabled}, hooks digest, [definition, ...]]`` first (the
    digest is of the config file's hooks; the definitions are the hooks created through the
    API), then
    ``["deliver", [[event, [[hook, id, attempts, recorded, due], ...]], ...]]`` (``event``:
    the 8 fields of an Event; ``due``: unix time, 0 for now), ``["disable", hook, why]``,
    ``["hook", definition]`` (a hook added or changed through the API),
    ``["forget", hook, seq]`` (a hook removed: end its deliveries, answer ``forgotten``),
    ``["release", [hook, ...], seq]`` (no longer this node's, cluster mode: drop their
    queued deliveries unsent and unrecorded, answer ``released``),
    ``["reload", hooks digest, seq]`` (the config file was reloaded: read its hooks again,
    answer ``reloaded``; a worker that finds another digest exits, and its successor starts
    on the file),
    and ``["stop"]`` (finish, report, say ``bye``, exit).
worker -> main
    ``["ready"]`` once started, or ``["failed", sentence]`` when it cannot start, then
    ``["outcomes", [attempt, ...], [event draft + device, ...], [disabled hook, ...]]``,
    ``["destinations", [[name, depth, in flight, breaker], ...]]``, ``["reloaded", seq]``,
    ``["forgotten", seq]``, ``["released", seq, [delivery id, ...]]`` (the ones dropped)
    (none of the hook's attempts is in flight any more; its queued deliveries were
    reported dead before it) and, last, ``["bye"]``.

A definition is ``[name, Particle webhook JSON document, product or None]``.

An attempt is ``[delivery id, hook, number, attempts, state, due, status, duration, reason,
excerpt, request]`` (``due``: unix time of the next try when ``state`` is waiting;
``request``: what was sent, masked, as the delivery log keeps it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import msgpack

from engine.core.model import Attempt, Delivery, Event, EventDraft

MAX_BUFFER = 64 * 1024 * 1024
"""Bytes a message may take: far beyond any batch the engine sends."""

START, DELIVER, DISABLE, STOP = "start", "deliver", "disable", "stop"
HOOK, FORGET, FORGOTTEN, RELOAD, RELOADED = "hook", "forget", "forgotten", "reload", "reloaded"
RELEASE, RELEASED = "release", "released"
READY, FAILED, OUTCOMES, DESTINATIONS, BYE = "ready", "failed", "outcomes", "destinations", "bye"

Item = tuple[str, str, int, int, float]
"""One delivery of an event handed to a worker: (hook, id, attempts, recorded, due), as
``Dispatcher.resume`` takes it."""


Definition = tuple[str, str, int | None]
"""A hook created through the API, as workers get it: (name, document, product)."""


class WireError(Exception):
    """The other side sent something that is not a message of this protocol."""


def pack(*message: object) -> bytes:
    return msgpack.packb(message)  # type: ignore[no-any-return]


def pack_attempt(delivery: Delivery, attempt: Attempt, due: float) -> list[object]:
    return [
        delivery.id,
        delivery.hook,
        attempt.number,
        delivery.attempts,
        attempt.state,
        due,
        attempt.status,
        attempt.duration,
        attempt.reason,
        attempt.excerpt,
        attempt.request,
    ]


def unpack_attempt(fields: Sequence[Any]) -> tuple[str, int, str, float, Attempt]:
    """(delivery id, the delivery's attempts, its state, its due time, the attempt)."""
    try:
        key, _hook, number, attempts, state, due, status, duration, reason, excerpt, sent = fields
        attempt = Attempt(key, number, status, duration, reason, excerpt, state, sent)
    except (TypeError, ValueError) as exc:
        raise WireError(f"an attempt is 11 fields, got {fields!r:.200}") from exc
    return key, attempts, state, due, attempt


def unpack_event(fields: Sequence[Any]) -> Event:
    try:
        return Event(*fields)
    except TypeError as exc:
        raise WireError(f"an event is 8 fields, got {fields!r:.200}") from exc


def unpack_draft(fields: Sequence[Any]) -> tuple[EventDraft, str | None]:
    """An event of the engine's own and the device it goes to (None: to no device)."""
    try:
        *draft, device = fields
        return EventDraft(*draft), device
    except (TypeError, ValueError) as exc:
        raise WireError(f"an event draft is 8 fields, got {fields!r:.200}") from exc


class Decoder:
    """Bytes in, messages out: ``feed`` what was read, then iterate."""

    def __init__(self) -> None:
        self._unpacker = msgpack.Unpacker(
            raw=False, max_buffer_size=MAX_BUFFER, strict_map_key=False, use_list=True
        )

    def feed(self, data: bytes) -> None:
        try:
            self._unpacker.feed(data)
        except msgpack.BufferFull:
            raise WireError(f"a message longer than {MAX_BUFFER} bytes") from None

    def __iter__(self) -> Iterator[list[Any]]:
        try:
            for message in self._unpacker:
                if not isinstance(message, list) or not message or not isinstance(message[0], str):
                    raise WireError(f"expected [kind, ...], got {message!r:.200}")
                yield message
        except WireError:
            raise
        except Exception as exc:  # msgpack's own errors have no common base
            raise WireError(f"not msgpack: {exc}") from None
