"""A scriptable HTTP/1.1 server for client and delivery tests: records, answers, misbehaves.

    sink = Sink()                               # answers 200 with an empty body
    port = await nursery.start(sink.serve)
    sink.script("reset", Reply(503))            # the next two requests, in order
    ...
    assert sink.requests[0].target == "/hook"

What to do with a request comes from ``script``-ed behaviours first, then from the
default given to ``Sink`` (a behaviour, or a function of the request returning one,
possibly async). A behaviour is a ``Reply``, a ``Raw`` byte string, a ``Flood`` (a fast
body that never ends), or one of:

- ``"close-after"``: answer 200 as usual (keep-alive), then close the connection, as a
  server dropping an idle connection does;
- ``"hangup"``: close the connection without answering;
- ``"reset"``: send part of a response head, then reset the connection (RST);
- ``"garbage"``: send bytes that are not HTTP;
- ``"endless"``: a chunked body that never ends, one chunk a second (for autojump clocks);
- ``"silent"``: never answer (the connection stays open until the client leaves).
"""

from __future__ import annotations

import inspect
import socket
import ssl
import struct
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import trio

from engine.http.h1 import ProtocolError, RequestReader, render_response


@dataclass(frozen=True, slots=True)
class Reply:
    """A normal response; ``delay`` seconds before it is sent."""

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    keep_alive: bool = True
    """False: the response says ``connection: close`` and the connection closes after it."""
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Raw:
    """Exactly these bytes as the answer; then close if ``close``, else keep reading."""

    data: bytes
    close: bool = False


@dataclass(frozen=True, slots=True)
class Flood:
    """A chunked body that never ends: ``chunk`` bytes every ``every`` seconds (for autojump
    clocks). Chunk ``n`` is ``chunk`` copies of ``flood_byte(n)``; ``Sink.flooded`` counts
    the body bytes sent."""

    status: int = 200
    chunk: int = 16 * 1024
    every: float = 0.01


def flood_byte(n: int) -> bytes:
    """What chunk ``n`` of a ``Flood`` is made of: a to z, again and again."""
    return bytes([ord("a") + n % 26])


Special = Literal["close-after", "hangup", "reset", "garbage", "endless", "silent"]
Behaviour = Reply | Raw | Flood | Special


@dataclass(frozen=True, slots=True)
class Received:
    """One request as the sink read it; ``connection`` numbers connections from 0."""

    method: str
    target: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    connection: int

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


Decide = Callable[[Received], Behaviour | Awaitable[Behaviour]]

GARBAGE = b"\x00\x01SSH-2.0-not-http\xff\xfe\r\n\r\n"
ENDLESS_HEAD = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
ENDLESS_CHUNK = b"400\r\n" + b"x" * 1024 + b"\r\n"
FLOOD_HEAD = b"HTTP/1.1 %d Flood\r\ntransfer-encoding: chunked\r\n\r\n"


@dataclass(eq=False)
class Sink:
    """Serves on 127.0.0.1, a free port; ``ssl_context`` (server side) turns TLS on."""

    behaviour: Behaviour | Decide = field(default_factory=Reply)
    ssl_context: ssl.SSLContext | None = None
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    connections_accepted: int = 0
    connections_open: int = 0
    max_connections_open: int = 0
    in_flight: int = 0
    """Requests received and not answered yet."""
    max_in_flight: int = 0
    tls_failures: int = 0
    flooded: int = 0
    """Body bytes sent by ``Flood`` answers, all connections together."""
    _script: deque[Behaviour] = field(default_factory=deque)
    _arrivals: trio.lowlevel.ParkingLot = field(default_factory=trio.lowlevel.ParkingLot)

    async def received(self, count: int) -> None:
        """Return once ``count`` requests in all have arrived (bound it with a timeout)."""
        while len(self.requests) < count:
            await self._arrivals.park()

    def script(self, *behaviours: Behaviour) -> None:
        """Answer the next requests with these, in order, before the default."""
        self._script.extend(behaviours)

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Accept connections until cancelled; reports the port once listening."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._serve_connection, listeners)

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        number = self.connections_accepted
        self.connections_accepted += 1
        self.connections_open += 1
        self.max_connections_open = max(self.max_connections_open, self.connections_open)
        conversation: trio.abc.Stream = stream
        try:
            if self.ssl_context is not None:
                conversation = trio.SSLStream(stream, self.ssl_context, server_side=True)
                try:
                    await conversation.do_handshake()
                except trio.BrokenResourceError:
                    self.tls_failures += 1
                    return
            await self._converse(conversation, stream.socket, number)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ProtocolError):
            pass
        finally:
            self.connections_open -= 1
            await trio.aclose_forcefully(conversation)

    async def _converse(
        self, stream: trio.abc.Stream, sock: trio.socket.SocketType, n: int
    ) -> None:
        reader = RequestReader(65536, 64 * 1024 * 1024)
        while data := await stream.receive_some(65536):
            reader.feed(data)
            while (request := reader.next_request()) is not None:
                received = Received(
                    request.method, request.target, request.headers, request.body, n
                )
                self.requests.append(received)
                self._arrivals.unpark_all()
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    keep_open = await self._answer(stream, sock, await self._decide(received))
                finally:
                    self.in_flight -= 1
                if not keep_open:
                    return

    async def _decide(self, received: Received) -> Behaviour:
        if self._script:
            return self._script.popleft()
        if not callable(self.behaviour):
            return self.behaviour
        decided = self.behaviour(received)
        return await decided if inspect.isawaitable(decided) else decided

    async def _answer(
        self, stream: trio.abc.Stream, sock: trio.socket.SocketType, behaviour: Behaviour
    ) -> bool:
        """Act out ``behaviour``; False when the connection must close."""
        match behaviour:
            case Reply(status, body, headers, keep_alive, delay):
                if delay:
                    await trio.sleep(delay)
                await stream.send_all(
                    render_response(status, list(headers), body, keep_alive=keep_alive)
                )
                return keep_alive
            case Raw(data, close):
                await stream.send_all(data)
                return not close
            case Flood(status, size, every):
                await stream.send_all(FLOOD_HEAD % status)
                n = 0
                while True:
                    await stream.send_all(b"%x\r\n%s\r\n" % (size, flood_byte(n) * size))
                    self.flooded += size
                    n += 1
                    await trio.sleep(every)
            case "close-after":
                await stream.send_all(render_response(200, [], b"", keep_alive=True))
                return False
            case "hangup":
                return False
            case "reset":
                await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-le")
                # Linger 0: close() sends RST instead of FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return False
            case "garbage":
                await stream.send_all(GARBAGE)
                return True
            case "endless":
                await stream.send_all(ENDLESS_HEAD)
                while True:
                    await stream.send_all(ENDLESS_CHUNK)
                    await trio.sleep(1)
            case "silent":
                while await stream.receive_some(65536):
                    pass
                return False
        raise AssertionError(f"unknown behaviour {behaviour!r}")
