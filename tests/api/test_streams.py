"""SSE streams over real sockets: an SSE library we did not write, and exact bytes."""

from __future__ import annotations

from contextlib import aclosing

import h11
import httpx
import orjson
import pytest
import trio
import trio.testing
from httpx_sse import aconnect_sse
from ld_eventsource import SSEClient
from ld_eventsource.actions import Event as SseEvent
from ld_eventsource.config import ConnectStrategy, ErrorStrategy

from engine.api.broadcast import Broadcaster, accept_all
from engine.api.streams import END_GRACE, EventStream
from engine.core.bus import Bus
from engine.core.model import Event
from engine.http.h1 import CHUNKED
from tests.conftest import (
    ADMIN,
    DEVICE_ONLY,
    PRODUCT_ID,
    PRODUCT_ONLY,
    PUBLISHER,
    SUBSCRIBER,
    Served,
)
from tests.helpers import Collector, Dechunker, H11Client, RawClient, publish_direct, wait_until

DEVICE = "0123456789abcdef01234567"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_sse_library_reads_published_events(served: Served) -> None:
    got = []
    async with (
        httpx.AsyncClient(base_url=served.url, timeout=5) as client,
        aconnect_sse(client, "GET", "/v1/events/temp", headers=bearer(SUBSCRIBER)) as source,
    ):
        assert source.response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert source.response.headers["cache-control"] == "no-cache"
        assert source.response.headers["x-accel-buffering"] == "no"
        for name in ("temp", "humidity", "temperature"):
            response = await client.post(
                "/v1/devices/events",
                data={"name": name, "data": "21.5"},
                headers=bearer(PUBLISHER),
            )
            assert response.status_code == 200
        async with aclosing(source.aiter_sse()) as events:
            async for sse in events:
                got.append(sse)
                if len(got) == 2:
                    break
    assert [(s.event, s.id) for s in got] == [("temp", "1"), ("temperature", "3")]
    data = orjson.loads(got[0].data)
    assert set(data) == {"data", "ttl", "published_at", "coreid"}
    assert (data["data"], data["ttl"], data["coreid"]) == ("21.5", 60, "api")


async def test_exact_bytes_on_the_wire(served: Served) -> None:
    client = await RawClient.connect(served.port)
    await client.send(
        b"GET /v1/devices/events?access_token=%s HTTP/1.1\r\nHost: x\r\n\r\n" % SUBSCRIBER.encode()
    )
    head = await client.read_until(b"\r\n\r\n")
    assert head == (
        b"HTTP/1.1 200 OK\r\n"
        b"content-type: text/event-stream; charset=utf-8\r\n"
        b"cache-control: no-cache\r\n"
        b"x-accel-buffering: no\r\n"
        b"transfer-encoding: chunked\r\n"
        b"connection: close\r\n\r\n"
    )
    assert await client.read_until(b"\n\n\r\n") == b"5\r\n:ok\n\n\r\n"
    await wait_until(lambda: len(served.engine.api.broadcaster) == 1)
    await publish_direct(served.engine, "temp", "21.5", device=DEVICE, product=PRODUCT_ID)
    frame = (
        b"event: temp\nid: 1\n"
        b'data: {"data":"21.5","ttl":60,"published_at":"2026-11-28T10:00:00.000Z",'
        b'"coreid":"0123456789abcdef01234567","productID":1001}\n\n'
    )
    assert await client.read_until(b"\n\n\r\n") == b"%x\r\n%b\r\n" % (len(frame), frame)
    await client.aclose()


@pytest.mark.parametrize(
    ("path", "token", "expected"),
    [
        ("/v1/devices/events", ADMIN, ["a1", "b1", "a2", "p1"]),
        ("/v1/devices/events/a", ADMIN, ["a1", "a2"]),
        (f"/v1/devices/{DEVICE}/events", ADMIN, ["a1", "b1"]),
        (f"/v1/devices/{DEVICE}/events/b", ADMIN, ["b1"]),
        (f"/v1/products/{PRODUCT_ID}/events", ADMIN, ["p1"]),
        (f"/v1/products/thermostat/devices/{DEVICE}/events", ADMIN, ["p1"]),
        ("/v1/devices/events", PRODUCT_ONLY, ["p1"]),
        ("/v1/events/a", DEVICE_ONLY, ["a1"]),
    ],
)
async def test_routes_filters_and_token_reach(
    served: Served, path: str, token: str, expected: list[str]
) -> None:
    client = await RawClient.connect(served.port)
    await client.send(
        b"GET %s HTTP/1.1\r\nAuthorization: Bearer %s\r\n\r\n" % (path.encode(), token.encode())
    )
    await client.read_head()
    await client.read_until(b":ok\n\n")
    await wait_until(lambda: len(served.engine.api.broadcaster) == 1)
    await publish_direct(served.engine, "a1", device=DEVICE)
    await publish_direct(served.engine, "b1", device=DEVICE)
    await publish_direct(served.engine, "a2", device="other")
    await publish_direct(served.engine, "p1", device=DEVICE, product=PRODUCT_ID)
    await publish_direct(served.engine, "end", device="x", product=None)
    names = []
    # The token-narrowed streams never see "end"; a sentinel would leak scope, so count.
    for _ in expected:
        frame = await client.read_until(b"\n\n")
        names.append(frame.split(b"\n")[0].removeprefix(b"event: ").decode())
    assert names == expected
    await client.aclose()


@pytest.mark.parametrize(
    ("path", "token", "status", "error"),
    [
        ("/v1/devices/events", None, 401, "access token required"),
        ("/v1/devices/events", PUBLISHER, 403, 'does not have the "subscribe" scope'),
        ("/v1/products/9/events", ADMIN, 404, 'product "9" not found'),
        ("/v1/products/2002/events", PRODUCT_ONLY, 403, "may not use product 2002"),
        ("/v1/devices/someone-else/events", DEVICE_ONLY, 403, 'may not see device "someone-else"'),
        ("/v1/devices/bad$id/events", ADMIN, 400, "device id must be"),
    ],
)
async def test_stream_refusals(
    served: Served, path: str, token: str | None, status: int, error: str
) -> None:
    async with httpx.AsyncClient(base_url=served.url) as client:
        response = await client.get(path, headers=bearer(token) if token else {})
    assert response.status_code == status
    assert error in response.json()["error"]


async def test_slow_subscriber_is_dropped_and_others_get_everything(
    write_config, nursery: trio.Nursery
) -> None:
    from engine.daemon import Engine

    engine = Engine(write_config("\n[sse]\nbuffer = 8\n"))
    [(_, port), *_] = await nursery.start(engine.run)
    slow = await RawClient.connect(port)
    slow.stream.socket.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4096)
    await slow.send(
        b"GET /v1/devices/events HTTP/1.1\r\nAuthorization: Bearer %s\r\n\r\n" % ADMIN.encode()
    )
    fast = await RawClient.connect(port)
    await fast.send(
        b"GET /v1/devices/events HTTP/1.1\r\nAuthorization: Bearer %s\r\n\r\n" % ADMIN.encode()
    )
    await fast.read_head()
    await fast.read_until(b":ok\n\n")
    await wait_until(lambda: len(engine.api.broadcaster) == 2)
    total = 0
    received = 0
    # Publish until the slow one is dropped: the fast one reads along the way.
    with trio.fail_after(20):
        while len(engine.api.broadcaster) == 2:
            for _ in range(50):
                await publish_direct(engine, "load", "x" * 1000)
                total += 1
            while received < total:
                await fast.read_until(b"\n\n")
                received += 1
    assert len(engine.api.broadcaster) == 1
    for _ in range(20):
        await publish_direct(engine, "after", "y")
        total += 1
    while received < total:
        frame = await fast.read_until(b"\n\n")
        received += 1
    assert frame.startswith(b"event: after\nid: %d\n" % total)
    assert "hookwire_sse_subscribers_dropped_total 1.0" in engine.metrics.render().decode()
    await slow.read_to_eof(within=10)  # the engine closed the slow one
    await slow.aclose()
    await fast.aclose()
    nursery.cancel_scope.cancel()


async def test_departed_client_is_removed_at_once(served: Served) -> None:
    client = await RawClient.connect(served.port)
    await client.send(b"GET /v1/devices/events?access_token=%s HTTP/1.1\r\n\r\n" % ADMIN.encode())
    await client.read_head()
    await client.read_until(b":ok\n\n")
    await wait_until(lambda: len(served.engine.api.broadcaster) == 1)
    assert "hookwire_sse_subscribers 1.0" in served.engine.metrics.render().decode()
    await client.aclose()
    await wait_until(lambda: len(served.engine.api.broadcaster) == 0)
    assert "hookwire_sse_subscribers 0.0" in served.engine.metrics.render().decode()


async def test_keepalive_comment_when_idle(autojump_clock: trio.testing.MockClock) -> None:
    bus = Bus()
    broadcaster = Broadcaster(bus, buffer=4, keepalive=9)
    sent: list[tuple[float, bytes]] = []

    def send_nowait(data: bytes) -> int:
        sent.append((trio.current_time(), data))
        return len(data)

    async with trio.open_nursery() as nursery:
        await nursery.start(broadcaster.run)
        sink = broadcaster.attach(accept_all, send_nowait, nursery.cancel_scope.cancel)
        assert sink.take() is None  # the stream's task sent its preamble: now idle
        await trio.sleep(5)
        bus.publish(Event(1, "t", "", 60, False, "x", "d"))
        await trio.sleep(20)
        nursery.cancel_scope.cancel()
    # Silent for 9 s (checked every second): 5 -> 14 and 14 -> 23.
    assert [(round(t), data[:8]) for t, data in sent] == [
        (5, b"event: t"),
        (14, b":keepali"),
        (23, b":keepali"),
    ]


def test_frame_names_and_data_refuse_line_breaks() -> None:
    from engine.http.sse import format_comment, format_event

    with pytest.raises(ValueError, match="CR or LF"):
        format_event("a\nb", 1, b"{}")
    with pytest.raises(ValueError, match="single line"):
        format_event("a", 1, b"{\n}")
    with pytest.raises(ValueError, match="CR or LF"):
        format_comment("x\ry")


# Chunked bodies: HTTP/1.1 clients get them, HTTP/1.0 ones cannot.


async def test_a_synchronous_urllib3_client_gets_a_lone_event_at_once(served: Served) -> None:
    # urllib3 reads a body that only ends with the connection 10,000 bytes at a time, so a
    # lone event would wait there; a chunk it hands over as soon as it has come.
    def first_event() -> SseEvent:
        client = SSEClient(
            ConnectStrategy.http(
                f"{served.url}/v1/devices/events",
                headers=bearer(SUBSCRIBER),
                urllib3_request_options={"timeout": 10.0},
            ),
            error_strategy=ErrorStrategy.always_fail(),
        )
        try:
            return next(iter(client.events))
        finally:
            client.close()

    got: list[SseEvent] = []
    arrived = trio.Event()

    async def read() -> None:
        got.append(await trio.to_thread.run_sync(first_event, abandon_on_cancel=True))
        arrived.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await wait_until(lambda: len(served.engine.api.broadcaster) == 1)
        await publish_direct(served.engine, "temp", "21.5")
        with trio.fail_after(5):
            await arrived.wait()
    assert (got[0].event, got[0].id) == ("temp", "1")
    assert orjson.loads(got[0].data)["data"] == "21.5"


async def test_an_http10_client_gets_a_body_that_ends_with_the_connection(served: Served) -> None:
    client = await RawClient.connect(served.port)
    await client.send(
        b"GET /v1/devices/events HTTP/1.0\r\nAuthorization: Bearer %s\r\n\r\n" % ADMIN.encode()
    )
    head = await client.read_head()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding" not in head
    assert b"content-length" not in head
    assert head.endswith(b"\r\nconnection: close\r\n\r\n")
    assert await client.read_until(b"\n\n") == b":ok\n\n"
    await wait_until(lambda: len(served.engine.api.broadcaster) == 1)
    await publish_direct(served.engine, "temp", "21.5")
    assert (await client.read_until(b"\n\n")).startswith(b"event: temp\nid: 1\ndata: {")
    served.engine.shutdown()
    assert await client.read_to_eof() == b""  # no last chunk: the close is the end
    await client.aclose()


def ids_in(chunk: bytes) -> list[int]:
    """The event ids in a chunk, which must hold whole frames only."""
    assert chunk.endswith(b"\n\n")
    return [int(line[4:]) for line in chunk.split(b"\n") if line.startswith(b"id: ")]


async def test_chunks_hold_whole_frames_and_shutdown_sends_the_last_chunk(
    served: Served,
) -> None:
    client = await H11Client.get(served.port, "/v1/devices/events", ADMIN)
    response = await client.response()
    assert response.status_code == 200
    assert (b"transfer-encoding", b"chunked") in response.headers
    assert await client.chunk() == b":ok\n\n"
    await wait_until(lambda: len(served.engine.api.broadcaster) == 1)
    for _ in range(3):
        await publish_direct(served.engine, "temp", "21.5")
    ids: list[int] = []
    while len(ids) < 3:
        chunk = await client.chunk()
        assert chunk is not None
        ids += ids_in(chunk)
    assert ids == [1, 2, 3]
    served.engine.shutdown()
    assert await client.chunk() is None  # the last chunk: h11 saw a complete response
    assert isinstance(await client.next_event(), h11.ConnectionClosed)
    await client.aclose()


async def test_a_dropped_slow_subscriber_gets_whole_chunks_then_the_last_one(
    write_config, nursery: trio.Nursery
) -> None:
    from engine.daemon import Engine

    engine = Engine(write_config("\n[sse]\nbuffer = 8\n"))
    [(_, port), *_] = await nursery.start(engine.run)
    # No small receive buffer here: below loopback's segment size, TCP would then crawl
    # once the client reads again. The socket buffers fill up first, that is all.
    slow = await H11Client.get(port, "/v1/devices/events", ADMIN)
    assert (await slow.response()).status_code == 200
    assert await slow.chunk() == b":ok\n\n"
    await wait_until(lambda: len(engine.api.broadcaster) == 1)
    published = 0
    with trio.fail_after(20):
        while len(engine.api.broadcaster):  # the client waits: at some point it is dropped
            for _ in range(20):
                await publish_direct(engine, "load", "x" * 8000)
                published += 1
    # It reads again, within the grace: the write in flight, then the body's end.
    ids: list[int] = []
    while (chunk := await slow.chunk()) is not None:
        ids += ids_in(chunk)
    assert ids == list(range(1, len(ids) + 1))
    assert 0 < len(ids) < published
    assert isinstance(await slow.next_event(), h11.ConnectionClosed)
    assert "hookwire_sse_subscribers_dropped_total 1.0" in engine.metrics.render().decode()
    await slow.aclose()
    nursery.cancel_scope.cancel()


class Stalled(Collector):
    """A client that takes its first write, then reads nothing until ``reading`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = trio.Event()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.data:
            await self.reading.wait()
        await super().send_all(data)


@pytest.mark.parametrize("reads_again_after", [1.0, None])
async def test_a_dropped_stream_finishes_its_write_within_the_grace_or_is_cut(
    autojump_clock: trio.testing.MockClock, reads_again_after: float | None
) -> None:
    bus = Bus()
    broadcaster = Broadcaster(bus, buffer=2, keepalive=60)
    client = Stalled()
    ended: list[float] = []

    async def serve() -> None:
        if reads_again_after is None:
            with pytest.raises(trio.BrokenResourceError, match="stopped reading"):
                await EventStream(broadcaster, accept_all).run(client, CHUNKED)
        else:
            await EventStream(broadcaster, accept_all).run(client, CHUNKED)
        ended.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        await nursery.start(broadcaster.run)
        nursery.start_soon(serve)
        await trio.testing.wait_all_tasks_blocked()
        bus.publish(Event(1, "t", "", 60, False, "x", "d"))  # in flight, not taken yet
        await trio.testing.wait_all_tasks_blocked()
        for n in range(2, 5):
            bus.publish(Event(n, "t", "", 60, False, "x", "d"))
        await trio.testing.wait_all_tasks_blocked()
        dropped_at = trio.current_time()
        assert len(broadcaster) == 0  # dropped: out of the fan-out at once
        if reads_again_after is not None:
            await trio.sleep(reads_again_after)
            client.reading.set()
        await trio.sleep(END_GRACE + 1)
        nursery.cancel_scope.cancel()
    body = Dechunker()
    content = body.feed(bytes(client.data))
    if reads_again_after is None:
        assert ended == [pytest.approx(dropped_at + END_GRACE)]
        assert (content, body.ended) == (b":ok\n\n", False)
    else:
        assert ended == [pytest.approx(dropped_at + reads_again_after)]
        assert content.startswith(b":ok\n\nevent: t\nid: 1\n")
        assert content.count(b"event: ") == 1  # the write in flight, nothing queued after
        assert body.ended
