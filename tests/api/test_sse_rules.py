"""Two rules of SSE streams: where a new stream starts, and when a silent client is closed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import trio
import trio.testing
from httpx_sse import aconnect_sse

from engine.api.app import Api
from engine.api.broadcast import Broadcaster, accept_all
from engine.api.streams import EventStream
from engine.config.settings import Config
from engine.core.bus import Bus
from engine.core.model import Event
from engine.daemon import Engine
from engine.http.h1 import CHUNKED
from engine.http.server import HttpServer
from engine.journal import MemoryJournal
from engine.metrics import Metrics
from tests.api.test_broadcast import Socket
from tests.conftest import ADMIN, PUBLISHER, SUBSCRIBER, WriteConfig
from tests.helpers import Collector, Dechunker, RawClient, publish_direct, wait_until


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def event(n: int, name: str = "temp") -> Event:
    return Event(n, name, "d", 60, False, "2026-11-28T10:00:00.000Z", "dev", None)


# (1) A stream without Last-Event-ID carries the events committed after it attached.


async def test_a_new_stream_never_gets_an_event_acknowledged_before_it_opened(
    write_config: WriteConfig, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # A long batch window: the second event is still on its way through the broadcaster
    # while the stream opens, as it is for 10 ms (or longer, under load) by default.
    engine = Engine(write_config('\n[sse]\nbatch_window = "1s"\n'))
    [(host, port), *_] = await nursery.start(engine.run)
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=5) as client:

        async def publish(name: str) -> int:
            response = await client.post(
                "/v1/devices/events", data={"name": name}, headers=bearer(PUBLISHER)
            )
            assert response.status_code == 200
            event_id: int = response.json()["id"]
            return event_id

        assert [await publish("temp"), await publish("temp")] == [1, 2]
        async with aconnect_sse(
            client, "GET", "/v1/devices/events/temp", headers=bearer(SUBSCRIBER)
        ) as source:
            await wait_until(lambda: len(engine.api.broadcaster) == 1)
            assert await publish("temp/kitchen") == 3
            first = await anext(source.aiter_sse())
    assert (first.event, first.id) == ("temp/kitchen", "3")
    nursery.cancel_scope.cancel()


async def test_a_stream_resumed_meanwhile_still_gets_what_it_missed_once(
    write_config: WriteConfig, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    engine = Engine(write_config('\n[sse]\nbatch_window = "1s"\n'))
    [(host, port), *_] = await nursery.start(engine.run)
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=5) as client:
        for _ in range(2):
            await publish_direct(engine, "temp")
        resumed = {**bearer(SUBSCRIBER), "Last-Event-ID": "1"}
        async with aconnect_sse(
            client, "GET", "/v1/devices/events/temp", headers=resumed
        ) as source:
            await wait_until(lambda: len(engine.api.broadcaster) == 1)
            await publish_direct(engine, "temp/kitchen")
            got = []
            async for sse in source.aiter_sse():
                got.append((sse.event, sse.id))
                if len(got) == 2:
                    break
    assert got == [("temp", "2"), ("temp/kitchen", "3")]
    nursery.cancel_scope.cancel()


async def test_a_new_stream_joins_the_fan_out_once_past_what_it_missed() -> None:
    bus = Bus()
    broadcaster = Broadcaster(bus, buffer=10, keepalive=9)
    broadcaster.deliver([event(1)])
    bus.publish(event(1))
    bus.publish(event(2))  # committed, acknowledged, not fanned out yet
    socket = Socket()
    sink = broadcaster.attach(accept_all, socket.send_nowait, lambda: None)
    assert sink.take() is None
    assert repr(broadcaster) == "<Broadcaster sinks=0 holding=1>"
    broadcaster.deliver([event(2), event(3)])
    assert socket.data.count(b"event: ") == 1
    assert b"id: 3\n" in socket.data
    assert repr(broadcaster) == "<Broadcaster sinks=1 holding=0>"  # past 2: live
    # With nothing on its way, a new stream is live at once.
    assert broadcaster.attach(accept_all, Socket().send_nowait, lambda: None).after == 2
    assert repr(broadcaster) == "<Broadcaster sinks=2 holding=0>"


# (2) A client that takes no bytes is closed within a bounded time, whatever it matches.


@dataclass
class Hub:
    journal: MemoryJournal
    api: Api
    metrics: Metrics
    port: int


async def serve_small_buffers(config: Config, nursery: trio.Nursery) -> Hub:
    """An API whose sockets have the smallest send buffers the kernel allows."""
    journal = MemoryJournal()
    bus = Bus()
    journal.fan_out_to(bus.publish)
    metrics = Metrics()
    api = Api(config, journal, bus, metrics)
    server = HttpServer(api.handle, config.limits)
    await nursery.start(api.broadcaster.run)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    for listener in listeners:  # accepted sockets inherit it
        listener.socket.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_SNDBUF, 1)
    await nursery.start(trio.serve_listeners, server.serve_connection, listeners)
    return Hub(journal, api, metrics, listeners[0].socket.getsockname()[1])


@asynccontextmanager
async def open_raw_stream(
    port: int, target: str, *, receive_buffer: int = 0
) -> AsyncIterator[RawClient]:
    """A raw SSE request past its ``:ok``; ``receive_buffer`` is set before connecting."""
    sock = trio.socket.socket()
    client = RawClient(trio.SocketStream(sock))
    try:
        if receive_buffer:
            sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, receive_buffer)
        await sock.connect(("127.0.0.1", port))
        await client.send(
            f"GET {target} HTTP/1.1\r\nAuthorization: Bearer {ADMIN}\r\n\r\n".encode()
        )
        await client.read_head()
        await client.read_until(b":ok\n\n")
        yield client
    finally:
        await client.aclose()


async def next_event_id(client: RawClient) -> int:
    """The id of the next event, past any keepalive comments."""
    while not (frame := await client.read_until(b"\n\n")).startswith(b"event: "):
        assert frame == b":keepalive\n\n"
    return int(frame.split(b"\n")[1].removeprefix(b"id: "))


async def test_a_client_that_reads_nothing_and_matches_nothing_is_closed(
    write_config: WriteConfig, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    config = write_config('\n[sse]\nkeepalive = "1s"\n[limits]\nidle_timeout = "30s"\n')
    hub = await serve_small_buffers(config, nursery)
    broadcaster = hub.api.broadcaster
    async with (
        open_raw_stream(hub.port, "/v1/devices/events/nothing", receive_buffer=1) as stalled,
        open_raw_stream(hub.port, "/v1/devices/events/temp") as reader,
    ):
        await wait_until(lambda: len(broadcaster) == 2)
        started = trio.current_time()
        ids: list[int] = []
        # Keepalives alone fill the stalled client's socket (a few hundred bytes here, with
        # the smallest buffers), then it has the send timeout to take some; the reader gets
        # every event meanwhile.
        with trio.fail_after(3600):
            while len(broadcaster) == 2:
                await trio.sleep(1)
                published = await publish_direct(hub, "temp")
                ids.append(await next_event_id(reader))
                assert ids[-1] == published.id
        assert 30 < trio.current_time() - started < 600
        published = await publish_direct(hub, "temp")
        assert await next_event_id(reader) == published.id
        assert "hookwire_sse_subscribers_dropped_total 1.0" in hub.metrics.render().decode()
        assert set((await stalled.read_to_eof()).split(b"\n\n")) <= {b":keepalive", b""}


class Deaf(Collector):
    """A client that takes the first write, then nothing ever again."""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.data:
            await trio.sleep_forever()
        await super().send_all(data)


async def test_a_write_not_taken_within_the_send_timeout_closes_the_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broadcaster = Broadcaster(Bus(), buffer=4, keepalive=9, send_timeout=30)
    client = Deaf()
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(broadcaster.run)
            started = trio.current_time()
            await EventStream(broadcaster, accept_all).run(client, CHUNKED)
            ended = trio.current_time()
            nursery.cancel_scope.cancel()
    # The first keepalive (after 9..10 s) is never taken: 30 s later the stream ends.
    assert 39 <= ended - started <= 40
    assert Dechunker().feed(bytes(client.data)) == b":ok\n\n"
    assert len(broadcaster) == 0


async def test_keepalives_never_pile_up_behind_bytes_the_client_has_not_taken() -> None:
    broadcaster = Broadcaster(Bus(), buffer=4, keepalive=9)
    sink = broadcaster.attach(accept_all, Socket(room=0).send_nowait, lambda: None)
    assert sink.take() is None
    broadcaster.deliver([event(1)])  # not taken: queued for the stream's task
    queued = bytes(sink.backlog)
    start = trio.current_time()
    for seconds in range(10, 100_000, 10):
        broadcaster.keep_alive(start + seconds)
    assert sink.backlog == queued
    assert repr(sink) == "<Sink idle backlog=1/4>"
