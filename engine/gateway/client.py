"""A gateway's end of the channel, for tests, the benchmark and gateway authors.

    async with open_gateway(token, tcp=("127.0.0.1", 7070)) as gateway:
        seq = await gateway.publish("0123456789abcdef01234567", "temp", "21.5")
        await gateway.wait_acked()
        async for down in gateway.downlinks:
            ...
            await gateway.ack_downlinks([down.id])

Over TLS (``[gateway] tls = true``): ``open_gateway(token, tcp=..., cafile="ca.pem")``, or
``ssl_context=`` a client context of your own (``ssl.create_default_context()`` for a
certificate from a public authority).

Publishes not yet acknowledged are kept in ``unacked``; hand them to the next
``open_gateway(..., resend=...)`` after a lost connection, and the engine stores each once.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import trio

from engine.gateway.protocol import PROTOCOL_VERSION, FrameDecoder, FrameError

MAX_FRAME = 1 << 20


class GatewayRefused(Exception):
    """The engine sent an error frame (refused the hello, or closed the stream)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Down:
    """A message for a device, to be acknowledged with ``ack_downlinks``."""

    id: int
    device: str
    name: str
    data: str
    published_at: str


class GatewayClient:
    """An open, welcomed connection; ``open_gateway`` makes one."""

    def __init__(self, stream: trio.abc.Stream, welcome: dict[str, Any], first_seq: int) -> None:
        self.stream = stream
        self.welcome = welcome
        self.unacked: dict[int, bytes] = {}
        self.nacks: dict[int, tuple[str, str]] = {}
        self.error: GatewayRefused | None = None
        self.on_ack: Callable[[int], object] | None = None  # called with each acked seq
        self._next_seq = first_seq
        self._send_lock = trio.Lock()
        self._acked_lot = trio.lowlevel.ParkingLot()
        self._closed = False
        self._downlinks_in, self.downlinks = trio.open_memory_channel[Down](
            int(welcome.get("max_unacked", 1024))
        )

    def __repr__(self) -> str:
        return f"<GatewayClient unacked={len(self.unacked)} nacks={len(self.nacks)}>"

    # publishing

    async def publish(
        self,
        device: str,
        name: str,
        data: str = "",
        *,
        ttl: int = 60,
        private: bool = True,
        product: int | None = None,
        published_at: str | None = None,
        key: str | None = None,
    ) -> int:
        """Send one event; returns its sequence number (acknowledged later)."""
        [seq] = await self.publish_many(
            [
                {
                    "device": device,
                    "name": name,
                    "data": data,
                    "ttl": ttl,
                    "private": private,
                    "product": product,
                    "published_at": published_at,
                    "key": key,
                }
            ]
        )
        return seq

    async def publish_many(self, events: Iterable[dict[str, Any]]) -> list[int]:
        """Send several events (maps of pub fields) in one write; returns their seqs."""
        seqs: list[int] = []
        frames: list[bytes] = []
        for event in events:
            seq = self._next_seq
            self._next_seq += 1
            fields = {k: v for k, v in event.items() if v is not None}
            frame = msgpack.packb({"op": "pub", "seq": seq, **fields})
            self.unacked[seq] = frame
            seqs.append(seq)
            frames.append(frame)
        await self._send(b"".join(frames))
        return seqs

    async def resend(self, frames: dict[int, bytes]) -> None:
        """Send again publishes another connection left unacknowledged (same seqs)."""
        self.unacked.update(frames)
        self._next_seq = max(self._next_seq, max(frames, default=0) + 1)
        await self._send(b"".join(frames[seq] for seq in sorted(frames)))

    async def wait_acked(self, seq: int | None = None) -> None:
        """Until ``seq`` (or every publish sent so far) is acknowledged or refused."""
        while (seq in self.unacked) if seq is not None else bool(self.unacked):
            if self.error is not None:
                raise self.error
            if self._closed:
                raise trio.ClosedResourceError("the connection closed with publishes unacked")
            await self._acked_lot.park()

    # downlinks

    async def ack_downlinks(self, ids: Iterable[int]) -> None:
        await self._send(msgpack.packb({"op": "down-ack", "ids": list(ids)}))

    async def ping(self) -> None:
        await self._send(msgpack.packb({"op": "ping"}))

    async def _send(self, data: bytes) -> None:
        async with self._send_lock:
            await self.stream.send_all(data)

    # the reader task

    async def read_frames(self, decoder: FrameDecoder) -> None:
        """Take acks, nacks, downlinks and errors until the engine closes."""
        try:
            while True:
                data = await self.stream.receive_some(decoder.max_frame)
                if not data:
                    return
                for frame in decoder.feed(data):
                    await self._take(frame)
        finally:
            self._closed = True
            self._acked_lot.unpark_all()
            await self._downlinks_in.aclose()

    async def _take(self, frame: dict[Any, Any]) -> None:
        op = frame.get("op")
        if op == "ack":
            for first, last in frame["ranges"]:
                for seq in range(first, last + 1):
                    if self.unacked.pop(seq, None) is not None and self.on_ack is not None:
                        self.on_ack(seq)
            self._acked_lot.unpark_all()
        elif op == "nack":
            self.nacks[frame["seq"]] = (frame["error"], frame["message"])
            self.unacked.pop(frame["seq"], None)
            self._acked_lot.unpark_all()
        elif op == "down":
            down = Down(
                frame["id"], frame["device"], frame["name"], frame["data"], frame["published_at"]
            )
            await self._downlinks_in.send(down)  # a full channel stops reading: backpressure
        elif op == "error":
            self.error = GatewayRefused(frame["error"], frame["message"])
            self._acked_lot.unpark_all()


@asynccontextmanager
async def open_gateway(
    token: str,
    *,
    tcp: tuple[str, int] | None = None,
    unix: str | Path | None = None,
    name: str = "gateway",
    first_seq: int | None = None,
    resend: dict[int, bytes] | None = None,
    connect_timeout: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
    cafile: str | Path | None = None,
    server_hostname: str | None = None,
) -> AsyncIterator[GatewayClient]:
    """Connect, say hello, wait for the welcome; the reader runs until the block ends.

    ``first_seq`` defaults to microseconds since the epoch, so a restarted gateway never
    reuses a sequence number the engine may still remember. TLS (TCP only): ``cafile``,
    the CA certificates to trust, or a client ``ssl_context``; ``server_hostname`` is the
    name the certificate must carry (default: the host of ``tcp``).
    """
    if (tcp is None) == (unix is None):
        raise ValueError("give exactly one of tcp=(host, port) or unix=path")
    if (ssl_context is not None or cafile is not None) and tcp is None:
        raise ValueError("TLS is for the TCP listener: the Unix socket never serves it")
    if cafile is not None:
        if ssl_context is not None:
            raise ValueError("give ssl_context or cafile, not both")
        ssl_context = ssl.create_default_context(cafile=cafile)
    with trio.fail_after(connect_timeout):
        if tcp is None:
            stream: trio.abc.Stream = await trio.open_unix_socket(str(unix))
        elif ssl_context is None:
            stream = await trio.open_tcp_stream(*tcp)
        else:
            secured = trio.SSLStream(
                await trio.open_tcp_stream(*tcp),
                ssl_context,
                server_hostname=server_hostname or tcp[0],
            )
            try:
                await secured.do_handshake()
            except BaseException:
                await trio.aclose_forcefully(secured)
                raise
            stream = secured
    async with stream:
        decoder = FrameDecoder(MAX_FRAME)
        hello = {"op": "hello", "token": token, "version": PROTOCOL_VERSION, "name": name}
        await stream.send_all(msgpack.packb(hello))
        with trio.fail_after(connect_timeout):
            welcome = await _first_frame(stream, decoder)
        if welcome.get("op") == "error":
            raise GatewayRefused(welcome["error"], welcome["message"])
        seq = first_seq if first_seq is not None else time.time_ns() // 1000
        client = GatewayClient(stream, welcome, seq)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.read_frames, decoder)
            if resend:
                await client.resend(resend)
            yield client
            nursery.cancel_scope.cancel()


async def _first_frame(stream: trio.abc.Stream, decoder: FrameDecoder) -> dict[str, Any]:
    while True:
        data = await stream.receive_some(decoder.max_frame)
        if not data:
            raise GatewayRefused("closed", "the engine closed the connection before welcoming")
        frames = decoder.feed(data)
        if frames:
            if len(frames) > 1:
                raise FrameError("unexpected", "frames before the welcome", fatal=True)
            return frames[0]
