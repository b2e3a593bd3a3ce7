"""Server-Sent Events streams: which events a stream wants, and the task that owns one."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import trio

from engine.api.broadcast import KEEPALIVE, Broadcaster, Sink, accept_all, event_frame
from engine.core.auth import Principal
from engine.core.bus import EventFilter, SubscriptionDropped
from engine.core.model import Event
from engine.http.h1 import BodyFraming, Request
from engine.http.server import StreamResponse, nowait_sender
from engine.http.sse import HEADERS, PREAMBLE, format_comment, parse_event_id
from engine.journal import Journal, JournalUnavailable

log = logging.getLogger("hookwire.sse")

REPLAY_PAGE = 1000
"""Events read from the journal at once while replaying: bounds a resuming stream's memory."""

OLDEST_HEADER = "hookwire-oldest-event-id"
"""Sent when events after the client's id are gone: the id of the first one still kept."""

END_GRACE = 2.0
"""Seconds an ending stream's client gets to take the write in flight and the body's end;
less than the server's shutdown grace, so streams never hold a stopping server up."""

SEND_PIECE = 65536
"""Bytes of a write the client must take within the send timeout: what is timed is that
it makes progress, not how long a large backlog takes."""


class ClientStalled(trio.BrokenResourceError):
    """The client took none of a write's bytes within the broadcaster's send timeout."""


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


class _Body:
    """A stream task's writes to its client: it knows whether one was cut off half-sent."""

    __slots__ = ("_cut", "_ending", "_framing", "_stream", "_timeout", "_writing", "scope")

    def __init__(self, stream: trio.abc.SendStream, framing: BodyFraming, timeout: float) -> None:
        self._stream = stream
        self._framing = framing
        self._timeout = timeout
        self._writing: trio.CancelScope | None = None
        self._ending = math.inf  # when a stopped stream's write in flight is cut
        self._cut = False
        self.scope = trio.CancelScope()  # the stream task's: cancelled when the sink drops

    async def send(self, data: bytes) -> None:
        """Send ``data`` as one piece of the body."""
        await self.send_framed(self._framing.frame(data))

    async def send_framed(self, data: bytes) -> None:
        """Send pieces of the body framed already (a sink's backlog).

        Each SEND_PIECE bytes must be taken within the timeout, else ClientStalled.
        """
        self._cut = True
        view = memoryview(data)
        with trio.CancelScope() as writing:
            self._writing = writing
            try:
                for start in range(0, len(view), SEND_PIECE):
                    writing.deadline = min(self._ending, trio.current_time() + self._timeout)
                    await self._stream.send_all(view[start : start + SEND_PIECE])
            finally:
                self._writing = None
        if writing.cancelled_caught:
            if self._ending < math.inf:
                raise trio.BrokenResourceError("a dropped stream's client stopped reading")
            raise ClientStalled(f"the client took no bytes for {self._timeout:g} s")
        self._cut = False

    def stop(self) -> None:
        """End the stream's task; a write in flight may still finish, within END_GRACE."""
        self._ending = trio.current_time() + END_GRACE
        if self._writing is not None:
            self._writing.shield = True
            self._writing.deadline = min(self._writing.deadline, self._ending)
        self.scope.cancel()

    async def end(self, rest: bytes) -> None:
        """Send ``rest`` (finishing a piece begun) and the body's end, unless a write was cut."""
        tail = rest + self._framing.end
        if self._cut or not tail:
            return
        # A client that left has no body to end.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._stream.send_all(tail)


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

    async def run(self, stream: trio.abc.SendStream, framing: BodyFraming) -> None:
        resume = self._resume
        body = _Body(stream, framing, self._broadcaster.send_timeout)
        # Read as the sink attaches (no await between): every newer event reaches the sink.
        # The bus may be one step ahead of the journal's own count (it gets an event before
        # the append that stored it returns): the newer of the two is what was committed.
        end = (
            None
            if resume is None
            else max(resume.journal.last_id(), self._broadcaster.committed_id)
        )
        with body.scope:
            sink = self._broadcaster.attach(
                self._accepts, nowait_sender(stream), body.stop, replaying_to=end, framing=framing
            )
            try:
                await body.send(PREAMBLE)
                if resume is not None and end is not None:
                    await self._replay(body, sink, resume, end)
                while True:
                    data = sink.take()
                    if data is None:
                        await sink.wait()
                    else:
                        await body.send_framed(data)
            except SubscriptionDropped:
                pass
            except ClientStalled:
                self._broadcaster.stalled()
            except JournalUnavailable as exc:
                # The client resumes again from the last event it got.
                log.warning("SSE replay stopped: %s", exc)
                await body.send(format_comment(f"replay stopped: {exc}"))
            finally:
                self._broadcaster.detach(sink)
                # Dropped, stopping or failed: end the body well-formed if the wire allows.
                with trio.CancelScope(shield=True, deadline=trio.current_time() + END_GRACE):
                    await body.end(sink.partial_rest())

    async def _replay(self, body: _Body, sink: Sink, resume: Resume, end: int) -> None:
        """Send the journal's events after the client's up to ``end``; the sink holds the rest."""
        if resume.notice:
            await body.send(format_comment(resume.notice))
        page = resume.page
        expected = resume.after_id + 1
        quiet_since = trio.current_time()
        while True:
            data, frames, expected = encode_page(page, self._accepts, expected)
            if data:
                await body.send(data)
                self._broadcaster.replayed(frames)
                quiet_since = trio.current_time()
            elif trio.current_time() - quiet_since >= self._broadcaster.keepalive:
                await body.send(KEEPALIVE)
                quiet_since = trio.current_time()
            if expected > end:
                break
            page = await resume.journal.events_after(expected - 1, REPLAY_PAGE)
            if not page:
                await body.send(lost_comment(expected, end))
                expected = end + 1
                break
        self._broadcaster.release(sink, expected - 1)
