"""Server-Sent Events streams: which events a stream wants, and the task that owns one."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import trio

from engine.api.auth import Principal
from engine.api.broadcast import KEEPALIVE, Broadcaster, Sink, accept_all, event_frame
from engine.bus import EventFilter, SubscriptionDropped
from engine.http.h1 import Request
from engine.http.server import StreamResponse, nowait_sender
from engine.http.sse import HEADERS, PREAMBLE, format_comment, parse_event_id
from engine.journal import Journal, JournalUnavailable
from engine.model import Event

log = logging.getLogger("hookwire.sse")

REPLAY_PAGE = 1000
"""Events read from the journal at once while replaying: bounds a resuming stream's memory."""

OLDEST_HEADER = "hookwire-oldest-event-id"
"""Sent when events after the client's id are gone: the id of the first one still kept."""


def event_filter(
    principal: Principal,
    prefix: str = "",
    device_id: str | None = None,
    product_id: int | None = None,
) -> EventFilter:
    """The test a stream applies to each event: route narrowing, prefix and token reach."""
    checks: list[Callable[[Event], bool]] = []
    if prefix:
        checks.append(lambda e: e.name.startswith(prefix))
    if device_id is not None:
        checks.append(lambda e: e.device_id == device_id)
    if product_id is not None:
        checks.append(lambda e: e.product_id == product_id)
    if principal.products:
        products = principal.products
        checks.append(lambda e: e.product_id in products)
    if principal.devices:
        devices = principal.devices
        checks.append(lambda e: e.device_id in devices)
    if not checks:
        return accept_all
    if len(checks) == 1:
        return checks[0]
    return lambda e: all(check(e) for check in checks)


def requested_resume(request: Request) -> int | None:
    """The id a client resumes after: the header wins (browsers update it on reconnect).

    Raises ValueError (for a 400) when it is not a whole number.
    """
    header = request.header(b"last-event-id")
    if header is not None:
        return parse_event_id(header.decode("latin-1"), "Last-Event-ID")
    query = request.query.get("last_event_id")
    if query is not None:
        return parse_event_id(query, "last_event_id")
    return None


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a stream's replay starts: after ``after_id``, with ``page`` already read."""

    journal: Journal
    after_id: int
    page: list[Event]
    oldest_id: int | None = None
    """For the header, when events after the client's id are gone: the first one kept."""
    notice: str = ""


async def plan_resume(journal: Journal, last_event_id: int) -> Resume:
    """Read the first page after the client's id, and see what it says about lost events.

    Raises JournalUnavailable (for a 503) when the journal cannot be read.
    """
    newest = journal.last_id()
    if last_event_id > newest:
        # Never issued here: the client's ids come from an earlier history (a memory
        # journal restarted, a database replaced); all this one holds is new to it.
        page = await journal.events_after(0, REPLAY_PAGE)
        first = page[0].id if page else newest + 1
        notice = (
            f"event {last_event_id} is unknown, the newest is {newest}: "
            f"the journal was reset; replaying from {first}"
        )
        return Resume(journal, first - 1, page, first, notice)
    page = await journal.events_after(last_event_id, REPLAY_PAGE)
    first = page[0].id if page else newest + 1
    lost = first > last_event_id + 1
    return Resume(journal, last_event_id, page, first if lost else None)


def lost_comment(first: int, last: int) -> bytes:
    """Said where the replay skips ids: the journal no longer has those events."""
    if first == last:
        return format_comment(f"event {first} is past retention and lost")
    return format_comment(f"events {first} to {last} are past retention and lost")


def encode_page(page: list[Event], accepts: EventFilter, expected: int) -> tuple[bytes, int, int]:
    """A page's frames for one stream, with a comment at each hole; (bytes, frames, next id)."""
    parts: list[bytes] = []
    frames = 0
    for event in page:
        if event.id > expected:
            parts.append(lost_comment(expected, event.id - 1))
        expected = event.id + 1
        if accepts(event) and (frame := event_frame(event)) is not None:
            parts.append(frame)
            frames += 1
    return b"".join(parts), frames, expected


class EventStream(StreamResponse):
    """One subscriber's stream: ``:ok``, any replay, then what the broadcaster could not send."""

    def __init__(
        self, broadcaster: Broadcaster, accepts: EventFilter, resume: Resume | None = None
    ) -> None:
        headers = HEADERS
        if resume is not None and resume.oldest_id is not None:
            headers = [*HEADERS, (OLDEST_HEADER, str(resume.oldest_id))]
        super().__init__(200, headers)
        self._broadcaster = broadcaster
        self._accepts = accepts
        self._resume = resume

    async def run(self, stream: trio.abc.SendStream) -> None:
        resume = self._resume
        # Read as the sink attaches (no await between): every newer event reaches the sink.
        end = None if resume is None else resume.journal.last_id()
        with trio.CancelScope() as scope:
            sink = self._broadcaster.attach(
                self._accepts, nowait_sender(stream), scope.cancel, replaying_to=end
            )
            try:
                await stream.send_all(PREAMBLE)
                if resume is not None and end is not None:
                    await self._replay(stream, sink, resume, end)
                while True:
                    data = sink.take()
                    if data is None:
                        await sink.wait()
                    else:
                        await stream.send_all(data)
            except SubscriptionDropped:
                pass
            except JournalUnavailable as exc:
                # The client resumes again from the last event it got.
                log.warning("SSE replay stopped: %s", exc)
                await stream.send_all(format_comment(f"replay stopped: {exc}"))
            finally:
                self._broadcaster.detach(sink)

    async def _replay(
        self, stream: trio.abc.SendStream, sink: Sink, resume: Resume, end: int
    ) -> None:
        """Send the journal's events after the client's up to ``end``; the sink holds the rest."""
        if resume.notice:
            await stream.send_all(format_comment(resume.notice))
        page = resume.page
        expected = resume.after_id + 1
        quiet_since = trio.current_time()
        while True:
            data, frames, expected = encode_page(page, self._accepts, expected)
            if data:
                await stream.send_all(data)
                self._broadcaster.replayed(frames)
                quiet_since = trio.current_time()
            elif trio.current_time() - quiet_since >= self._broadcaster.keepalive:
                await stream.send_all(KEEPALIVE)
                quiet_since = trio.current_time()
            if expected > end:
                break
            page = await resume.journal.events_after(expected - 1, REPLAY_PAGE)
            if not page:
                await stream.send_all(lost_comment(expected, end))
                expected = end + 1
                break
        self._broadcaster.release(sink, expected - 1)
