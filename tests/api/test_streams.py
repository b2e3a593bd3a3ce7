"""SSE streams over real sockets: an SSE library we did not write, and exact bytes."""

from __future__ import annotations

from contextlib import aclosing

import httpx
import orjson
import pytest
import trio
import trio.testing
from httpx_sse import aconnect_sse

from engine.api.broadcast import Broadcaster, accept_all
from engine.bus import Bus
from engine.model import Event
from tests.conftest import (
    ADMIN,
    DEVICE_ONLY,
    PRODUCT_ID,
    PRODUCT_ONLY,
    PUBLISHER,
    SUBSCRIBER,
    Served,
)
from tests.helpers import RawClient, publish_direct, wait_until

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
        b"connection: close\r\n\r\n"
    )
    assert await client.read_until(b"\n\n") == b":ok\n\n"
    await wait_until(lambda: len(served.engine.api.broadcaster) == 1)
    await publish_direct(served.engine, "temp", "21.5", device=DEVICE, product=PRODUCT_ID)
    frame = await client.read_until(b"\n\n")
    assert frame == (
        b"event: temp\nid: 1\n"
        b'data: {"data":"21.5","ttl":60,"published_at":"2026-11-28T10:00:00.000Z",'
        b'"coreid":"0123456789abcdef01234567","productID":1001}\n\n'
    )
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
