"""HTTP/1.1 server over trio streams; framing is ``engine.http.h1``, routing is the caller's.

One task per connection, owned by the server's nursery. Requests on a connection are
handled and answered in order (pipelining), responses that are ready together leave in one
write. A handler may answer ``Deferred``: it has done in order what had to be (a publish:
its checks, and queueing its append), and the rest is awaited later, so the pipelined
requests of one read are all handled before their deferred answers are awaited, in order
(their appends share a commit). A streamed response (length unknown) is chunked for
HTTP/1.1 clients and ends with the connection for HTTP/1.0 ones, which know no chunks.
Limits: an idle keep-alive connection is closed after ``idle_timeout``; a request must
arrive completely within ``request_timeout`` of its first byte (else 408, slow-loris);
the head and body sizes are bounded by the reader (431/414, 413). With a TLS context
(``engine.http.tls``) each connection is an ``SSLStream`` whose handshake must end within
``request_timeout``; a failed or late one closes the connection, counted and logged at
debug (plain HTTP sent to the TLS port gets a plain 400 saying to use https).
"""

from __future__ import annotations

import logging
import math
import os
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import orjson
import trio

from engine.http.h1 import (
    BodyFraming,
    ProtocolError,
    Request,
    RequestReader,
    render_head,
    render_response,
    streamed_body_framing,
)
from engine.http.tls import PLAIN_HTTP, failure_reason

log = logging.getLogger("hookwire.http")

RECEIVE_SIZE = 65536
"""Bytes asked of the socket per read: one read holds many pipelined requests."""

FEED_SIZE = 8192
"""Bytes parsed at once: the requests waiting for an answer are those of at most this many
bytes (a read of tiny pipelined requests would otherwise become thousands of objects)."""

WRITE_BUDGET = 65536
"""Bytes of pipelined answers gathered before they are written: one socket write's worth."""

YIELD_AFTER_REQUESTS = 16
YIELD_AFTER_SECONDS = 0.002
"""Pipelined requests (or seconds of handling) after which a connection lets others run."""

MAX_DEFERRED = 64
"""Deferred answers a connection holds before it awaits them: bounds the appends one peer
has queued in the journal, and what it holds in memory, at once."""

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
"""Requests that only read (RFC 9110 9.2.1): handled once the deferred answers before them
are resolved, so they see what those requests did, as if each had waited for the last."""

SHUTDOWN_GRACE = 3.0
"""Seconds that requests being handled get to finish when the server stops."""

JSON = [("content-type", "application/json")]

NO_CONTENT = 204
"""A status with neither content nor Content-Length (RFC 9110 8.6): a CORS preflight's."""


@dataclass(slots=True)
class Response:
    """A response whose whole body is known."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=lambda: JSON)


class StreamResponse:
    """A response that takes the connection over (Server-Sent Events).

    The server sends the head, then awaits ``run(stream, framing)``: ``run`` sends the body
    delimited by ``framing`` (chunks for HTTP/1.1 clients, none for HTTP/1.0 ones) and,
    when it ends the body itself, ``framing.end``. When the peer goes away or the server
    stops, ``run`` is cancelled. The connection closes afterwards.
    """

    def __init__(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.status = status
        self.headers = headers

    async def run(self, stream: trio.abc.SendStream, framing: BodyFraming) -> None:
        raise NotImplementedError


class Deferred:
    """An answer to await later: the server goes on with the pipelined requests behind it.

    A handler returns one once it has done, in request order, everything that must happen
    in order (for a publish: authenticate, validate, rate limit, queue the append). The
    server awaits ``resolve()`` before it writes this answer, in request order, after it
    handled the other requests of the same read (at most ``MAX_DEFERRED`` of them wait).
    """

    __slots__ = ("resolve",)

    def __init__(self, resolve: Callable[[], Awaitable[Response]]) -> None:
        self.resolve = resolve

    def __repr__(self) -> str:
        return f"<Deferred {self.resolve!r}>"


def nowait_sender(stream: trio.abc.SendStream) -> Callable[[bytes], int] | None:
    """A synchronous, non-blocking write to ``stream``'s socket, or None if it has none.

    For fan-out: one syscall instead of a task switch per write. The caller must stop
    using it before the stream closes (the descriptor number could be reused), and must
    not call it while a ``send_all`` on the same stream is in progress.
    """
    if not isinstance(stream, trio.SocketStream):
        return None
    fd = stream.socket.fileno()

    def send_nowait(data: bytes) -> int:
        try:
            return os.write(fd, data)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            raise trio.BrokenResourceError(f"peer went away: {exc}") from exc

    return send_nowait


Handler = Callable[[Request], Awaitable[Response | StreamResponse | Deferred]]


def error_response(
    status: int,
    message: str,
    headers: list[tuple[str, str]] = JSON,
    details: Mapping[str, object] | None = None,
) -> Response:
    """The JSON error every route answers with: ``{"ok":false,"error":"...",
    "error_description":"..."}``, the same sentence twice (Particle's clients show
    ``error_description``), and any ``details`` a route adds."""
    body = {"ok": False, "error": message, "error_description": message, **(details or {})}
    return Response(status, orjson.dumps(body), headers)


class ServerLimits(Protocol):
    """The limits the server enforces; ``[limits]`` of the config is one."""

    @property
    def max_header_bytes(self) -> int: ...
    @property
    def max_body_bytes(self) -> int: ...
    @property
    def idle_timeout(self) -> float: ...
    @property
    def request_timeout(self) -> float: ...


class CannotListen(OSError):
    """A listener could not be opened: the address, what it was for, and the system's
    reason (``hookwire run`` prints it as one line: ``cannot serve: cannot listen on...``)."""

    def __init__(self, where: str, purpose: str, error: OSError) -> None:
        super().__init__(error.errno, error.strerror)
        self.where = where
        self.purpose = purpose
        self.error = error

    def __str__(self) -> str:
        return f"cannot listen on {self.where} for {self.purpose}: {self.error}"


class HttpServer:
    """Serves ``handler`` on TCP listeners until cancelled or ``shutdown()``."""

    def __init__(
        self,
        handler: Handler,
        limits: ServerLimits,
        on_protocol_error: Callable[[int], object] | None = None,
        *,
        tls: ssl.SSLContext | None = None,
        purpose: str = "the API",
    ) -> None:
        """``tls``: serve HTTPS with this server context (``engine.http.tls``); ``purpose``:
        what a listener that cannot open was for, in the error."""
        self.purpose = purpose
        self._handler = handler
        self._limits = limits
        self._on_protocol_error = on_protocol_error
        self._tls = tls
        self.tls_failures = 0  # handshakes that failed or did not end in time
        self._interruptible: set[trio.CancelScope] = set()
        self._closing = False
        self._connections = 0
        self._accepting: trio.CancelScope | None = None

    def __repr__(self) -> str:
        state = "closing" if self._closing else "serving"
        tls = f" tls_failures={self.tls_failures}" if self._tls is not None else ""
        return f"<HttpServer {state} connections={self._connections}{tls}>"

    @property
    def scheme(self) -> str:
        """``https`` when the server speaks TLS, else ``http``: what its URLs start with."""
        return "http" if self._tls is None else "https"

    async def serve(
        self,
        host: str,
        port: int,
        *,
        task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port``; reports the bound (host, port) pairs when ready. Raises
        CannotListen naming the address and ``purpose`` when it cannot."""
        try:
            listeners = await trio.open_tcp_listeners(port, host=host)
        except OSError as exc:
            raise CannotListen(f"{host}:{port}", self.purpose, exc) from None
        addresses = [listener.socket.getsockname()[:2] for listener in listeners]
        async with trio.open_nursery() as connections:
            with trio.CancelScope() as self._accepting:
                task_status.started(addresses)
                await trio.serve_listeners(
                    self.serve_connection, listeners, handler_nursery=connections
                )
            # Stopped accepting: let requests in progress finish, then cut the rest.
            connections.cancel_scope.deadline = trio.current_time() + SHUTDOWN_GRACE

    def shutdown(self) -> None:
        """Stop accepting, end streams and idle connections; ``serve`` returns soon after."""
        self._closing = True
        if self._accepting is not None:
            self._accepting.cancel()
        for scope in list(self._interruptible):
            scope.cancel()

    async def serve_connection(self, stream: trio.abc.Stream) -> None:
        """Converse with one peer until it leaves, misbehaves or times out; closes ``stream``
        (the connection as accepted: TLS, when configured, is layered here)."""
        self._connections += 1
        try:
            if self._tls is not None:
                secured = await self._handshake(stream)
                if secured is None:
                    return
                stream = secured
            await self._converse(stream)
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the peer went away; nothing to answer
        except* Exception:
            log.exception("connection handler failed")
        finally:
            self._connections -= 1
            await trio.aclose_forcefully(stream)

    async def _handshake(
        self, transport: trio.abc.Stream
    ) -> trio.SSLStream[trio.abc.Stream] | None:
        """The TLS stream over ``transport`` once its handshake is done; None when it
        failed or did not end within ``request_timeout`` (the caller closes ``transport``)."""
        assert self._tls is not None
        # https_compatible: HTTP frames its own bodies, and clients often leave without
        # TLS's close_notify; that is no truncation attack here.
        stream = trio.SSLStream(transport, self._tls, server_side=True, https_compatible=True)
        with trio.CancelScope(
            deadline=trio.current_time() + self._limits.request_timeout
        ) as waiting:
            self._interruptible.add(waiting)
            try:
                await stream.do_handshake()
                return stream
            except trio.BrokenResourceError as exc:
                why = failure_reason(exc)
            finally:
                self._interruptible.discard(waiting)
        if self._closing:
            return None
        if waiting.cancelled_caught:
            why = f"not done within {self._limits.request_timeout:g} s"
        self.tls_failures += 1
        log.debug("TLS handshake failed: %s", why)
        if why == PLAIN_HTTP:  # no TLS alert was sent: the peer can read a plain answer
            await self._send_error(transport, 400, "this port speaks HTTPS: use https://")
        return None

    async def _converse(self, stream: trio.abc.Stream) -> None:
        limits = self._limits
        reader = RequestReader(limits.max_header_bytes, limits.max_body_bytes)
        request_deadline: float | None = None
        # Idle time runs from the connection's start or its last answered request, so
        # bytes that start no request (bare CRLFs) do not keep a connection open.
        idle_deadline = trio.current_time() + limits.idle_timeout
        while True:
            if request_deadline is None and reader.in_progress:
                request_deadline = trio.current_time() + limits.request_timeout
            deadline = request_deadline if request_deadline is not None else idle_deadline
            with trio.CancelScope(deadline=deadline) as waiting:
                if self._closing and not reader.in_progress:
                    return
                self._interruptible.add(waiting)
                try:
                    data = await stream.receive_some(RECEIVE_SIZE)
                finally:
                    self._interruptible.discard(waiting)
            if waiting.cancelled_caught:
                if reader.in_progress:
                    await self._send_error(stream, 408, "request not received in time")
                return
            if not data:
                return
            for start in range(0, len(data), FEED_SIZE):
                answered = await self._take(stream, reader, data[start : start + FEED_SIZE])
                if answered is None:
                    return
                if answered:
                    idle_deadline = trio.current_time() + limits.idle_timeout
            if not reader.in_progress:
                request_deadline = None

    async def _take(
        self, stream: trio.abc.Stream, reader: RequestReader, data: bytes | bytearray
    ) -> int | None:
        """Parse ``data`` and answer every request it completes, in order: how many were
        answered, or None when the connection must close.

        Answers leave in one write when they are few and small; past a budget of bytes or
        requests they are written (or the task yields) before the next is handled, so a
        peer that pipelines much and reads little holds little memory and no other
        connection waits on it. Deferred answers are awaited, in order, once the requests
        of ``data`` are handled, or before a request that must see what they did, or when
        too many or too much waits behind them.
        """
        failure: ProtocolError | None = None
        try:
            reader.feed(data)
        except ProtocolError as exc:
            failure = exc
        answers = _Answers()
        answered = 0
        keep_open = True
        yield_at = math.inf
        while keep_open and (request := reader.next_request()) is not None:
            if answered:
                # A second request from one read: from here on it may not hog the loop.
                now = trio.current_time()
                if yield_at == math.inf:
                    yield_at = now + YIELD_AFTER_SECONDS
                elif now >= yield_at or answered % YIELD_AFTER_REQUESTS == 0:
                    await trio.lowlevel.checkpoint()
                    yield_at = trio.current_time() + YIELD_AFTER_SECONDS
            if answers.deferred and request.method in SAFE_METHODS:
                await self._settle(stream, answers)
            keep_open = request.keep_alive and not self._closing
            result = await self._handler(request)
            answered += 1
            head_only = request.method == "HEAD"
            if isinstance(result, Deferred):
                answers.defer(result, keep_open, head_only)
                if answers.deferred >= MAX_DEFERRED:
                    await self._settle(stream, answers)
                continue
            if isinstance(result, StreamResponse):
                if not head_only:
                    await self._settle(stream, answers)
                    if answers.out:
                        await self._write(stream, answers.out)
                    await self._stream(stream, result, streamed_body_framing(request))
                    return None
                rendered = _stream_head(result, request, keep_open)
            else:
                rendered = _render(result, keep_open, head_only)
            if answers.add(rendered):
                await self._settle(stream, answers)
            if len(answers.out) >= WRITE_BUDGET:
                await self._write(stream, answers.out)
                answers.out = bytearray()
        await self._settle(stream, answers)
        if answers.out:
            await self._write(stream, answers.out)
        if not keep_open:
            return None
        if failure is not None:
            log.debug("closing a connection: %s (%d)", failure, failure.status_hint)
            if self._on_protocol_error is not None:
                self._on_protocol_error(failure.status_hint)
            await self._send_error(stream, failure.status_hint, str(failure))
            return None
        if reader.closed:
            return None
        interim = reader.interim_nowait()
        if interim is not None:
            await self._write(stream, interim)
        return answered

    async def _settle(self, stream: trio.abc.Stream, answers: _Answers) -> None:
        """Await the deferred answers in order, then move them and the answers behind them
        to ``answers.out``, writing it whenever it reaches the budget.

        All are awaited before anything is written, so none waits on a peer that stops
        reading (a publish is counted when its answer is resolved); they are rendered as
        they are written, so at most a budget of their bytes is held.
        """
        if not answers.waiting:
            return
        waiting, answers.waiting = answers.waiting, []
        answers.deferred = answers.waiting_bytes = 0
        resolved = [
            item if isinstance(item, bytes) else (await item[0].resolve(), item[1], item[2])
            for item in waiting
        ]
        for item in resolved:
            answers.out += item if isinstance(item, bytes) else _render(*item)
            if len(answers.out) >= WRITE_BUDGET:
                await self._write(stream, answers.out)
                answers.out = bytearray()

    async def _write(self, stream: trio.abc.Stream, data: bytes | bytearray) -> None:
        with trio.CancelScope(deadline=trio.current_time() + self._limits.idle_timeout) as cs:
            await stream.send_all(data)
        if cs.cancelled_caught:
            raise trio.BrokenResourceError("peer stopped reading the response")

    async def _send_error(self, stream: trio.abc.Stream, status: int, message: str) -> None:
        response = error_response(status, message)
        await self._write(
            stream,
            render_response(status, response.headers, response.body, keep_alive=False),
        )

    async def _stream(
        self, stream: trio.abc.Stream, response: StreamResponse, framing: BodyFraming
    ) -> None:
        head = render_head(
            response.status,
            response.headers,
            content_length=None,
            keep_alive=False,
            chunked=framing.chunked,
        )
        await self._write(stream, head)
        async with trio.open_nursery() as nursery:
            self._interruptible.add(nursery.cancel_scope)
            try:
                if self._closing:
                    nursery.cancel_scope.cancel()
                nursery.start_soon(_cancel_on_eof, stream, nursery.cancel_scope)
                await response.run(stream, framing)
                nursery.cancel_scope.cancel()
            finally:
                self._interruptible.discard(nursery.cancel_scope)


class _Answers:
    """The answers to one read's requests, in request order, until they are written.

    Answers gather in ``out`` until one is deferred; from there on, the answers behind it
    wait in ``waiting`` (rendered, or deferred with how to render them) until ``_settle``.
    """

    __slots__ = ("deferred", "out", "waiting", "waiting_bytes")

    def __init__(self) -> None:
        self.out = bytearray()
        self.waiting: list[bytes | tuple[Deferred, bool, bool]] = []
        self.deferred = 0  # deferred answers in ``waiting``
        self.waiting_bytes = 0  # bytes of the rendered answers in ``waiting``

    def __repr__(self) -> str:
        return f"<Answers out={len(self.out)} waiting={len(self.waiting)} deferred={self.deferred}>"

    def defer(self, deferred: Deferred, keep_alive: bool, head_only: bool) -> None:
        self.waiting.append((deferred, keep_alive, head_only))
        self.deferred += 1

    def add(self, rendered: bytes) -> bool:
        """Add a rendered answer in its place; True when the ones waiting must be settled
        (a write's worth of bytes waits behind a deferred answer)."""
        if not self.waiting:
            self.out += rendered
            return False
        self.waiting.append(rendered)
        self.waiting_bytes += len(rendered)
        return self.waiting_bytes >= WRITE_BUDGET


def _render(response: Response, keep_alive: bool, head_only: bool) -> bytes:
    """A whole response; for HEAD, its head alone, with the length GET would have sent."""
    if response.status == NO_CONTENT:
        return render_head(NO_CONTENT, response.headers, content_length=None, keep_alive=keep_alive)
    if not head_only:
        return render_response(
            response.status, response.headers, response.body, keep_alive=keep_alive
        )
    return render_head(
        response.status, response.headers, content_length=len(response.body), keep_alive=keep_alive
    )


def _stream_head(response: StreamResponse, request: Request, keep_alive: bool) -> bytes:
    """What HEAD of a stream answers: the head GET would have sent, and no body."""
    return render_head(
        response.status,
        response.headers,
        content_length=None,
        keep_alive=keep_alive,
        chunked=streamed_body_framing(request).chunked,
    )


async def _cancel_on_eof(stream: trio.abc.Stream, scope: trio.CancelScope) -> None:
    """Read (and ignore) what a streaming peer sends, so its departure is seen at once."""
    try:
        while await stream.receive_some(RECEIVE_SIZE):
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    scope.cancel()
