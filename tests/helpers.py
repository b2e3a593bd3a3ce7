"""Small tools for tests that talk to a real engine over loopback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import h11
import trio

from engine.core.model import Event, EventDraft
from engine.daemon import Engine

HOOKWIRE = [sys.executable, "-m", "engine.cli"]
ROOT = Path(__file__).resolve().parents[1]


async def run_cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """Run `hookwire ARGS` from the repository root and capture what it prints."""
    return await trio.run_process(
        [*HOOKWIRE, *args],
        stdin=stdin,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        cwd=ROOT,
    )


async def wait_until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Poll ``condition`` until it holds; for effects that cross a real socket."""
    with trio.fail_after(within):
        # The condition changes on the far side of a socket: there is no event to wait on.
        while not condition():  # noqa: ASYNC110
            await trio.sleep(0.005)


async def publish_direct(
    engine: Engine, name: str, data: str = "", *, device: str = "api", product: int | None = None
) -> Event:
    """Store and fan out an event the way ingest does, without an HTTP round trip."""
    draft = EventDraft(name, data, 60, False, "2026-11-28T10:00:00.000Z", device, product)
    return await engine.journal.append(draft)


class Collector(trio.abc.SendStream):
    """A stream with no socket: every write waits for the stream's task."""

    def __init__(self) -> None:
        self.data = bytearray()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        self.data += data

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


class Dechunker:
    """A chunked body as it arrives, in any pieces, to its content; strict about framing."""

    def __init__(self) -> None:
        self._pending = b""  # an incomplete size line or CRLF
        self._left = 0  # content bytes of the current chunk still to come
        self._crlf = False  # a chunk's content is complete: its CRLF comes next
        self._last = False  # that chunk was the last one (size 0)
        self._chunk = bytearray()
        self.chunks: list[bytes] = []  # each complete chunk's content, in order
        self.ended = False  # the last chunk came

    def feed(self, data: bytes) -> bytes:
        """The content in ``data``; ValueError for anything that is not chunked framing."""
        buf = self._pending + data
        out = bytearray()
        pos = 0
        while pos < len(buf):
            if self.ended:
                raise ValueError(f"bytes after the last chunk: {buf[pos:]!r}")
            if self._left:
                piece = buf[pos : pos + self._left]
                out += piece
                self._chunk += piece
                pos += len(piece)
                self._left -= len(piece)
                self._crlf = not self._left
            elif self._crlf:
                if len(buf) - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise ValueError(f"no CRLF after a chunk: {buf[pos : pos + 2]!r}")
                pos += 2
                self._crlf = False
                self.ended = self._last
                if not self._last:
                    self.chunks.append(bytes(self._chunk))
                    self._chunk.clear()
            else:
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    break
                size = buf[pos:end]
                if not size or size.strip(b"0123456789abcdef"):
                    raise ValueError(f"not a chunk size: {size!r}")
                self._left = int(size, 16)
                self._last = self._crlf = not self._left
                pos = end + 2
        self._pending = buf[pos:]
        return bytes(out)


class RawClient:
    """A socket that sends bytes we choose and reads exactly what comes back.

    After ``read_head`` of a chunked response, reads return the body's content.
    """

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.body: Dechunker | None = None

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def read_head(self, within: float = 5.0) -> bytes:
        """The response head; a chunked body is de-chunked from here on."""
        head = await self.read_until(b"\r\n\r\n", within)
        if b"\r\ntransfer-encoding: chunked\r\n" in head.lower():
            self.body = Dechunker()
            self.buffer = bytearray(self.body.feed(bytes(self.buffer)))
        return head

    async def _fill(self) -> bool:
        """Read once into the buffer; False at the end of the stream."""
        data = await self.stream.receive_some(65536)
        self.buffer += self.body.feed(data) if self.body is not None else data
        return bool(data)

    async def read_until(self, marker: bytes, within: float = 5.0) -> bytes:
        """Everything up to and including ``marker``."""
        with trio.fail_after(within):
            while marker not in self.buffer:
                if not await self._fill():
                    raise EOFError(f"closed before {marker!r}; got {bytes(self.buffer)!r}")
        end = self.buffer.index(marker) + len(marker)
        out = bytes(self.buffer[:end])
        del self.buffer[:end]
        return out

    async def read_to_eof(self, within: float = 5.0) -> bytes:
        """Everything until the peer closes (the body's content, once de-chunking)."""
        with trio.fail_after(within):
            while await self._fill():
                pass
        out = bytes(self.buffer)
        self.buffer.clear()
        return out

    async def aclose(self) -> None:
        await self.stream.aclose()


class H11Client:
    """A GET over a socket, its response parsed by h11: an HTTP parser that is not ours."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def get(cls, port: int, target: str, token: str) -> H11Client:
        client = cls(await trio.open_tcp_stream("127.0.0.1", port))
        headers = [("Host", "127.0.0.1"), ("Authorization", f"Bearer {token}")]
        request = client.conn.send(h11.Request(method="GET", target=target, headers=headers))
        await client.stream.send_all(request + client.conn.send(h11.EndOfMessage()))
        return client

    async def next_event(self, within: float = 5.0) -> object:
        """The next thing h11 makes of the bytes; raises h11's error for a malformed message."""
        with trio.fail_after(within):
            while (event := self.conn.next_event()) is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
        return event

    async def response(self) -> h11.Response:
        event = await self.next_event()
        assert isinstance(event, h11.Response), event
        return event

    async def chunk(self, within: float = 5.0) -> bytes | None:
        """The content of the next whole chunk; None at the body's last chunk."""
        parts: list[bytes] = []
        while True:
            event = await self.next_event(within)
            if isinstance(event, h11.EndOfMessage):
                assert not parts, "the body ended inside a chunk"
                return None
            assert isinstance(event, h11.Data), event
            parts.append(event.data)
            if event.chunk_end:
                return b"".join(parts)

    async def aclose(self) -> None:
        await self.stream.aclose()
