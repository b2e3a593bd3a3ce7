"""Trivial HTTP/1.1 servers that answer every request with a fixed 200, as fast as they can.

They are the yardstick for bench/publish.py: the same client against a server that does
no work tells how much of a publish's cost is the engine's own. Two kinds:

- ``trio``: trio streams + the httptools request parser, the engine's own I/O stack
  (so engine/baseline isolates what the engine does per request);
- ``asyncio``: an ``asyncio.Protocol`` that splits requests by hand, about the fastest
  pure-Python server there is (the ceiling for Python on this machine).

Run: ``python bench/harness/baseline_server.py --kind trio --port 8099`` (loopback only).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import httptools
import trio

HOST = "127.0.0.1"
BODY = b'{"ok":true,"id":1}'
RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)
RECEIVE_SIZE = 65536
HEAD_END = b"\r\n\r\n"


# trio + httptools


class _Requests:
    """httptools callback target: counts complete requests."""

    __slots__ = ("complete",)

    def __init__(self) -> None:
        self.complete = 0

    def on_message_complete(self) -> None:
        self.complete += 1


async def _serve_trio_connection(stream: trio.SocketStream) -> None:
    requests = _Requests()
    parser = httptools.HttpRequestParser(requests)
    try:
        while True:
            data = await stream.receive_some(RECEIVE_SIZE)
            if not data:
                return
            try:
                parser.feed_data(data)
            except httptools.HttpParserError:
                return
            if requests.complete:
                count, requests.complete = requests.complete, 0
                await stream.send_all(RESPONSE * count)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def serve_trio(port: int) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(port, host=HOST)
            nursery.start_soon(trio.serve_listeners, _serve_trio_connection, listeners)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                return


# asyncio, hand-split


class _Protocol(asyncio.Protocol):
    """Answers each complete request (head plus content-length body) with RESPONSE."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        pos = 0
        count = 0
        while True:
            head_end = buf.find(HEAD_END, pos)
            if head_end < 0:
                break
            length = _content_length(buf[pos:head_end])
            end = head_end + 4 + length
            if end > len(buf):
                break
            pos = end
            count += 1
        self._buf = buf[pos:]
        if count and self._transport is not None:
            self._transport.write(RESPONSE * count)


def _content_length(head: bytes) -> int:
    at = head.find(b"Content-Length:")
    if at < 0:
        at = head.lower().find(b"content-length:")
    if at < 0:
        return 0
    line_end = head.find(b"\r\n", at)
    return int(head[at + 15 : line_end if line_end >= 0 else len(head)])


async def serve_asyncio(port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(_Protocol, HOST, port, backlog=4096)
    async with server:
        await stop.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["trio", "asyncio"], default="trio")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.kind == "trio":
        trio.run(serve_trio, args.port)
    else:
        asyncio.run(serve_asyncio(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
