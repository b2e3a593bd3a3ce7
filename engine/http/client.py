"""Pooled HTTP/1.1 client over trio streams: the delivery transport; framing is ``h1client``.

One ``ConnectionPool`` per ``Origin`` (scheme, host, port), connecting to an address
that was resolved and vetted elsewhere. A request takes an idle keep-alive connection,
or opens one while fewer than ``max_connections`` are open, or waits its turn (FIFO);
all of it, connecting included, within the request's ``timeout``. Pools may share a
``ConnectionBudget``: a cap on the connections they hold open together, below the
process's file-descriptor limit, so many destinations wait for a slot instead of failing.

The pool changes its state in small synchronous ``*_nowait`` methods that return the
work left to do (a connection to close); the I/O happens afterwards, and closes are
shielded and bounded in time, so a cancelled request never leaves a half-used
connection behind. Failures are translated once, here, into ``HttpClientError``
subclasses named by phase, so a retry policy decides on types, not on messages.
"""

from __future__ import annotations

import contextlib
import os
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import trio

from engine.http.h1client import (
    MAX_BODY_BYTES,
    HttpClientError,
    LocalProtocolError,
    RemoteProtocolError,
    ResponseReader,
    render_request,
)

__all__ = [
    "MAX_BODY_BYTES",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionBudget",
    "ConnectionPool",
    "HttpClientError",
    "LocalProtocolError",
    "Origin",
    "PoolClosed",
    "ReadError",
    "ReadTimeout",
    "RemoteProtocolError",
    "Response",
    "TLSError",
    "WriteError",
]

RECEIVE_SIZE = 65536
"""Bytes asked of the socket per read: most responses arrive in one."""

CLOSE_TIMEOUT = 1.0
"""Seconds a connection may take to close (a TLS goodbye to a stuck peer) before it is cut."""

_DEFAULT_PORTS = {"http": 80, "https": 443}


class ConnectError(HttpClientError):
    """The TCP connection could not be made; nothing was sent."""


class ConnectTimeout(HttpClientError):
    """The deadline passed while connecting (TCP or TLS handshake); nothing was sent."""


class TLSError(HttpClientError):
    """The TLS handshake failed (certificate refused, no common protocol); nothing was sent."""


class WriteError(HttpClientError):
    """The connection broke while the request was being sent."""


class ReadError(HttpClientError):
    """The connection was reset or closed before the response was complete."""


class ReadTimeout(HttpClientError):
    """The deadline passed after connecting: waiting for the response or a free connection."""


class PoolClosed(HttpClientError):
    """The pool was closed before or during the request."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where requests go: one pool, one destination queue, one circuit breaker each."""

    scheme: str
    """``"http"`` or ``"https"``."""
    host: str
    """The name, for the Host header, TLS SNI and certificate checks."""
    port: int

    def __post_init__(self) -> None:
        if self.scheme not in _DEFAULT_PORTS:
            raise ValueError(f"unsupported scheme {self.scheme!r}: expected http or https")

    @property
    def authority(self) -> str:
        """``host[:port]`` as the Host header wants it: the port only when not the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == _DEFAULT_PORTS[self.scheme]:
            return host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.authority}"


@dataclass(slots=True)
class Response:
    """A response; ``body`` holds at most ``MAX_BODY_BYTES``, all that was read of it."""

    status: int
    headers: list[tuple[bytes, bytes]]
    """Header fields in order; names lowercase."""
    body: bytes
    truncated: bool
    """True when the body was longer than ``MAX_BODY_BYTES``: the rest was not read, and
    the connection was closed rather than left mid-body."""

    def header(self, name: bytes) -> bytes | None:
        """The first value of a header; ``name`` must be lowercase."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


class _Connection:
    """One open stream and its history."""

    __slots__ = ("budget", "idle_since", "requests", "socket", "stream")

    def __init__(
        self,
        stream: trio.abc.Stream,
        socket: trio.socket.SocketType | None,
        budget: ConnectionBudget | None,
    ) -> None:
        self.stream = stream
        self.budget = budget
        """The budget whose slot this connection holds, given back when it closes."""
        self.socket = socket
        """Plain TCP only: requests go straight to the socket, skipping the stream's
        per-call bookkeeping (measured: 4 of 29 µs of CPU per request)."""
        self.idle_since = 0.0
        self.requests = 0
        """Responses read completely; a connection with any is one the server may have dropped."""


class _Waiter:
    """A request queued for a connection; granted a slot, or a connection with it."""

    __slots__ = ("connection", "event", "granted")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.granted = False
        self.connection: _Connection | None = None


class ConnectionBudget:
    """At most ``limit`` connections open at once across the pools that share it.

    A pool takes a slot before it opens a connection, and the slot comes back when that
    connection closes. When every slot is taken, the connection idle the longest in any
    pool is closed to make room; with none idle, the opener waits its turn (FIFO), and
    a connection that finishes its request meanwhile is closed for the first in line
    instead of kept idle. One budget per process keeps a thousand destinations from
    running it out of file descriptors.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a connection budget needs at least 1 connection")
        self.limit = limit
        self._open = 0
        """Slots taken: connections open or being opened."""
        self._idle: dict[_Connection, ConnectionPool] = {}
        """Idle connections of every pool, the longest idle first."""
        self._waiters: deque[_Waiter] = deque()

    def __repr__(self) -> str:
        return (
            f"<ConnectionBudget open={self._open}/{self.limit} idle={len(self._idle)} "
            f"waiting={len(self._waiters)}>"
        )

    @property
    def open(self) -> int:
        """Connections open or being opened."""
        return self._open

    @property
    def wanted(self) -> bool:
        """True while openers wait: a connection set free should close, not idle."""
        return bool(self._waiters)

    async def take(self) -> None:
        """Take a slot: a free one, the slot of the longest-idle connection, or wait."""
        while True:
            if self._open < self.limit and not self._waiters:
                self._open += 1
                return
            if self._idle:
                connection, pool = next(iter(self._idle.items()))
                pool._evict_nowait(connection)  # off the idle lists; its close frees the slot
                await _close(connection)
                continue
            waiter = _Waiter()
            self._waiters.append(waiter)
            try:
                await waiter.event.wait()
            except BaseException:
                if waiter.granted:
                    self.give_back()
                else:
                    self._waiters.remove(waiter)
                raise
            return

    def give_back(self) -> None:
        """Return a slot: to the first opener in line, or to the free ones."""
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.granted = True
            waiter.event.set()
        else:
            self._open -= 1

    def idle(self, connection: _Connection, pool: ConnectionPool) -> None:
        self._idle[connection] = pool

    def busy(self, connection: _Connection) -> None:
        """The connection left its pool's idle list: in use again, or about to close."""
        self._idle.pop(connection, None)


class _Stale(Exception):
    """A reused connection was closed by the server before it answered: try a fresh one."""


class ConnectionPool:
    """Keep-alive HTTP/1.1 connections to one origin, at most ``max_connections`` at once.

    ``address`` is the IP address to connect to (DNS and SSRF checks happen before).
    ``ssl_context`` verifies the server (default: the system's CAs); pass one shared
    context to many pools, building it costs milliseconds. ``verify_tls=False`` uses
    a context that checks neither the certificate nor the name, and ignores
    ``ssl_context``. Idle connections are closed once older than ``idle_timeout``,
    when the pool is next used: the pool runs no task of its own. Pools given the same
    ``budget`` share its cap on open connections.
    """

    def __init__(
        self,
        origin: Origin,
        *,
        address: str,
        max_connections: int = 16,
        verify_tls: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        idle_timeout: float = 30.0,
        budget: ConnectionBudget | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.origin = origin
        self._address = (address, origin.port)
        self._family = trio.socket.AF_INET6 if ":" in address else trio.socket.AF_INET
        self._host_header = origin.authority
        self._max_connections = max_connections
        self._idle_timeout = idle_timeout
        self._budget = budget
        self._ssl_context: ssl.SSLContext | None = None
        if origin.scheme == "https":
            self._ssl_context = _tls_context(ssl_context, verify_tls)
        self._idle: list[_Connection] = []
        """Oldest first: the newest is reused, the oldest expire."""
        self._in_use: set[_Connection] = set()
        self._reserved = 0
        """Slots taken: connections in use plus connections being opened."""
        self._waiters: deque[_Waiter] = deque()
        self._closed = False

    def __repr__(self) -> str:
        origin = self.origin
        closed = " closed" if self._closed else ""
        return (
            f"<ConnectionPool {origin.scheme}://{origin.host}:{origin.port}{closed} "
            f"active={self._reserved} idle={len(self._idle)} waiting={len(self._waiters)}>"
        )

    @property
    def address(self) -> str:
        """The IP address this pool connects to."""
        return self._address[0]

    async def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes = b"",
        *,
        # Our own deadline, not the caller's fail_after: the phase it cuts names the error.
        timeout: float,  # noqa: ASYNC109
        on_sent: Callable[[], object] | None = None,
        max_body: int = MAX_BODY_BYTES,
    ) -> Response:
        """Send one request and read its response, all within ``timeout`` seconds.

        Reading stops once the body passes ``max_body`` bytes (``Response.truncated``);
        that connection is closed, since the rest of the body was never read.

        ``target`` is the path and query; ``headers`` must not carry Host,
        Content-Length or Transfer-Encoding (the pool writes them). Raises an
        ``HttpClientError`` subclass named by the phase that failed. ``on_sent`` is called
        once, as soon as the request has been written.
        """
        data = render_request(method, target, self._host_header, headers, body)
        written = _Once(on_sent)
        phase = "waiting"
        with trio.move_on_after(timeout) as deadline:
            now = trio.current_time()
            if self._idle and self._idle[0].idle_since <= now - self._idle_timeout:
                for expired in self._expire_nowait(now):
                    await _close(expired)
            lease = self._acquire_nowait()
            connection = await self._wait(lease) if isinstance(lease, _Waiter) else lease
            reusable = False
            try:
                if connection is None:
                    if self._budget is not None:
                        await self._budget.take()
                    phase = "connecting"
                    connection = await self._connect()
                phase = "exchanging"
                try:
                    reader = await self._exchange(connection, data, method, written, max_body)
                except _Stale:
                    stale, connection = connection, None
                    self._in_use.discard(stale)  # the slot stays ours for the fresh one
                    await _close(stale)
                    if self._budget is not None:
                        phase = "waiting"
                        await self._budget.take()
                    phase = "connecting"
                    connection = await self._connect()
                    phase = "exchanging"
                    reader = await self._exchange(connection, data, method, written, max_body)
                reusable = reader.keep_alive
                return Response(reader.status, reader.headers, reader.body, reader.truncated)
            finally:
                to_close = self._release_nowait(connection, reusable, trio.current_time())
                if to_close is not None:
                    await _close(to_close)
        assert deadline.cancelled_caught
        if phase == "connecting":
            raise ConnectTimeout(f"timeout after {timeout:g} s while connecting")
        if phase == "waiting":
            raise ReadTimeout(f"timeout after {timeout:g} s waiting for a free connection")
        raise ReadTimeout(f"timeout after {timeout:g} s")

    async def aclose(self) -> None:
        """Close every connection; requests in progress or queued raise ``PoolClosed``."""
        for connection in self._close_nowait():
            await _close(connection)

    def _was_closed(self) -> PoolClosed:
        """The error of a request that the pool's closing cut short."""
        return PoolClosed(f"connection pool for {self.origin} was closed")

    # State changes: synchronous, no I/O; they return what is left to do.

    def _expire_nowait(self, now: float) -> list[_Connection]:
        """Take out the idle connections older than ``idle_timeout``, for the caller to close."""
        idle = self._idle
        cutoff = now - self._idle_timeout
        count = 0
        while count < len(idle) and idle[count].idle_since <= cutoff:
            count += 1
        expired = idle[:count]
        del idle[:count]
        if self._budget is not None:
            for connection in expired:
                self._budget.busy(connection)
        return expired

    def _acquire_nowait(self) -> _Connection | _Waiter | None:
        """Take the newest idle connection, else reserve a slot (None), else queue a waiter."""
        if self._closed:
            raise PoolClosed(f"connection pool for {self.origin} is closed")
        if self._idle:
            connection = self._idle.pop()
            if self._budget is not None:
                self._budget.busy(connection)
            self._reserved += 1
            self._in_use.add(connection)
            return connection
        if self._reserved < self._max_connections:
            self._reserved += 1
            return None
        waiter = _Waiter()
        self._waiters.append(waiter)
        return waiter

    def _release_nowait(
        self, connection: _Connection | None, reusable: bool, now: float
    ) -> _Connection | None:
        """Give a slot back, with its connection if reusable; returns a connection to close.

        The oldest waiter gets the slot (and the connection) directly, so no newcomer
        can overtake it; with nobody waiting the connection goes idle.
        """
        to_close = None
        if connection is not None:
            self._in_use.discard(connection)
            if not reusable or self._closed:
                to_close, connection = connection, None
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.granted = True
            waiter.connection = connection
            if connection is not None:
                self._in_use.add(connection)
            waiter.event.set()
        else:
            self._reserved -= 1
            if connection is None:
                pass
            elif self._budget is None:
                connection.idle_since = now
                self._idle.append(connection)
            elif self._budget.wanted:  # another pool waits for a slot: this one's
                to_close = connection
            else:
                connection.idle_since = now
                self._idle.append(connection)
                self._budget.idle(connection, self)
        return to_close

    def _evict_nowait(self, connection: _Connection) -> None:
        """The budget takes an idle connection to close, to open one elsewhere."""
        self._idle.remove(connection)
        if self._budget is not None:
            self._budget.busy(connection)

    def _abandon_nowait(self, waiter: _Waiter) -> _Connection | None:
        """A queued request gives up (cancelled); what it was granted meanwhile passes on."""
        if waiter.granted:
            return self._release_nowait(waiter.connection, True, trio.current_time())
        if not self._closed:
            self._waiters.remove(waiter)
        return None

    def _opened_nowait(self, connection: _Connection) -> bool:
        """Count a new connection as in use; False if the pool closed while it opened."""
        if self._closed:
            return False
        self._in_use.add(connection)
        return True

    def _close_nowait(self) -> list[_Connection]:
        """Mark the pool closed and wake the queue; returns every open connection."""
        self._closed = True
        connections = [*self._idle, *self._in_use]
        if self._budget is not None:
            for connection in self._idle:
                self._budget.busy(connection)
        self._idle.clear()
        self._in_use.clear()
        for waiter in self._waiters:
            waiter.event.set()  # not granted: it raises PoolClosed
        self._waiters.clear()
        return connections

    # I/O

    async def _wait(self, waiter: _Waiter) -> _Connection | None:
        """Wait for our turn: a connection, or None when granted a slot for a new one."""
        try:
            await waiter.event.wait()
        except BaseException:
            to_close = self._abandon_nowait(waiter)
            if to_close is not None:
                await _close(to_close)
            raise
        if not waiter.granted:
            raise self._was_closed()
        return waiter.connection

    async def _connect(self) -> _Connection:
        """Open a connection (TCP, then TLS for https) into a slot already reserved.

        The budget's slot, when there is a budget, is taken too; it passes to the
        connection, or back to the budget if none could be opened."""
        try:
            return await self._open_stream()
        except BaseException:
            if self._budget is not None:
                self._budget.give_back()
            raise

    async def _open_stream(self) -> _Connection:
        host, port = self._address
        try:
            sock = trio.socket.socket(self._family, trio.socket.SOCK_STREAM)
        except OSError as exc:  # out of file descriptors: this attempt fails, not the engine
            raise ConnectError(
                f"cannot connect to {self.origin} at {host}:{port}: {_os_reason(exc)}"
            ) from exc
        try:
            await sock.connect(self._address)
        except OSError as exc:
            sock.close()
            raise ConnectError(
                f"cannot connect to {self.origin} at {host}:{port}: {_os_reason(exc)}"
            ) from exc
        except BaseException:
            sock.close()
            raise
        stream: trio.abc.Stream = trio.SocketStream(sock)
        plain: trio.socket.SocketType | None = sock
        if self._ssl_context is not None:
            plain = None
            tls = trio.SSLStream(
                stream, self._ssl_context, server_hostname=self.origin.host, https_compatible=True
            )
            stream = tls
            try:
                await tls.do_handshake()
            except trio.BrokenResourceError as exc:
                await trio.aclose_forcefully(tls)
                raise TLSError(
                    f"TLS handshake with {self.origin} failed: {_tls_reason(exc.__cause__)}"
                ) from exc
            except BaseException:
                await trio.aclose_forcefully(tls)
                raise
        connection = _Connection(stream, plain, None)
        if not self._opened_nowait(connection):
            await _close(connection)
            raise self._was_closed()
        connection.budget = self._budget
        return connection

    async def _exchange(
        self, connection: _Connection, data: bytes, method: str, written: _Once, max_body: int
    ) -> ResponseReader:
        """Send one request, read its response (to the body limit); transport errors end here."""
        stream = connection.stream
        sock = connection.socket
        reused = connection.requests > 0
        try:
            if sock is None:
                await stream.send_all(data)
            elif (sent := await sock.send(data)) < len(data):
                await stream.send_all(memoryview(data)[sent:])  # a big body: let trio loop
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            if self._closed:
                raise self._was_closed() from exc
            if reused:
                raise _Stale from exc
            raise WriteError(f"connection lost while sending the request: {_reason(exc)}") from exc
        written()
        reader = ResponseReader(method, max_body)
        receive = stream.receive_some if sock is None else sock.recv
        answered = False
        try:
            while not reader.complete:
                chunk = await receive(RECEIVE_SIZE)
                if chunk:
                    answered = True
                    reader.feed(chunk)
                elif reused and not answered:
                    raise _Stale
                else:
                    try:
                        reader.feed_eof()
                    except RemoteProtocolError as exc:
                        raise ReadError(str(exc)) from None
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            if self._closed:
                raise self._was_closed() from exc
            if reused and not answered:
                raise _Stale from exc
            raise ReadError(f"connection lost while reading the response: {_reason(exc)}") from exc
        connection.requests += 1
        return reader


class _Once:
    """Calls ``callback`` the first time it is called (a retried request is sent twice)."""

    __slots__ = ("_callback",)

    def __init__(self, callback: Callable[[], object] | None) -> None:
        self._callback = callback

    def __call__(self) -> None:
        if self._callback is not None:
            callback, self._callback = self._callback, None
            callback()


async def _close(connection: _Connection) -> None:
    """Close a connection, even from a cancelled task, giving up after ``CLOSE_TIMEOUT``;
    its budget slot, if it holds one, is given back."""
    budget, connection.budget = connection.budget, None
    try:
        with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
            # A stream that broke while closing is closed all the same.
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await connection.stream.aclose()
    finally:
        if budget is not None:
            budget.give_back()


def _tls_context(given: ssl.SSLContext | None, verify: bool) -> ssl.SSLContext:
    if verify and given is not None:
        return given
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


def _tls_reason(exc: BaseException | None) -> str:
    """What a TLS failure means, in words: "certificate verify failed: self-signed certificate"."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason.replace("_", " ").lower()
    if exc is None:
        return "connection closed during the handshake"
    return _os_reason(exc)


def _reason(exc: BaseException) -> str:
    """The cause of a broken socket or stream, in words: "connection reset by peer"."""
    if isinstance(exc, OSError):
        return _os_reason(exc)
    cause = exc.__cause__
    if isinstance(cause, ssl.SSLError):
        return _tls_reason(cause)
    if cause is not None:
        return _os_reason(cause)
    return str(exc) or "connection closed"


def _os_reason(exc: BaseException) -> str:
    """An OS error in words, without the address trio adds: "connection refused"."""
    if isinstance(exc, OSError) and exc.errno:
        text = os.strerror(exc.errno)
        return text[0].lower() + text[1:]
    return str(exc) or type(exc).__name__
