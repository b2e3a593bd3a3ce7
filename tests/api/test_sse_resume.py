"""SSE resume: Last-Event-ID replays from the journal, then goes live, no gap, no duplicate."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
import httpx
import pytest
import trio
import trio.testing
from ld_eventsource.actions import Comment, Start
from ld_eventsource.actions import Event as SseEvent
from ld_eventsource.async_client import AsyncSSEClient
from ld_eventsource.config import ErrorStrategy
from ld_eventsource.config.async_connect_strategy import AsyncConnectStrategy

from engine.api.app import Api
from engine.api.broadcast import Broadcaster, accept_all, event_frame
from engine.api.streams import EventStream, plan_resume
from engine.config.settings import Config
from engine.core.bus import Bus
from engine.core.model import Event, EventDraft
from engine.daemon import Engine
from engine.http.h1 import CLOSE_DELIMITED
from engine.http.server import HttpServer
from engine.journal import JournalUnavailable, MemoryJournal
from engine.metrics import Metrics
from tests.api.test_broadcast import Socket
from tests.conftest import ADMIN, DEVICE_ONLY, PRODUCT_ID, PRODUCT_ONLY, Served, WriteConfig
from tests.helpers import Collector, RawClient, publish_direct

DEVICE = "0123456789abcdef01234567"


@dataclass
class Hub:
    """An API served on loopback over a journal the test chose."""

    journal: MemoryJournal
    bus: Bus
    api: Api
    port: int


async def serve_hub(config: Config, journal: MemoryJournal, nursery: trio.Nursery) -> Hub:
    bus = Bus()
    journal.fan_out_to(bus.publish)
    api = Api(config, journal, bus, Metrics())
    server = HttpServer(api.handle, config.limits)
    await nursery.start(api.broadcaster.run)
    [(_, port), *_] = await nursery.start(server.serve, "127.0.0.1", 0)
    return Hub(journal, bus, api, port)


async def open_stream(
    port: int, target: str, *, token: str = ADMIN, last_event_id: str | None = None
) -> tuple[RawClient, bytes]:
    """A raw SSE request; returns the client (past ``:ok``) and the response head."""
    client = await RawClient.connect(port)
    extra = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id is not None else ""
    await client.send(
        f"GET {target} HTTP/1.1\r\nAuthorization: Bearer {token}\r\n{extra}\r\n".encode()
    )
    head = await client.read_head()
    await client.read_until(b":ok\n\n")
    return client, head


async def read_frames(client: RawClient, n: int) -> list[bytes]:
    return [await client.read_until(b"\n\n") for _ in range(n)]


def ids_of(frames: list[bytes]) -> list[int]:
    return [int(frame.split(b"\n")[1].removeprefix(b"id: ")) for frame in frames]


def names_of(frames: list[bytes]) -> list[str]:
    return [frame.split(b"\n")[0].removeprefix(b"event: ").decode() for frame in frames]


# (1) a client library that resumes by itself


async def test_sse_library_resumes_after_client_and_server_drops(
    write_config: WriteConfig, nursery: trio.Nursery
) -> None:
    engine = Engine(write_config("\n[sse]\nbuffer = 8\n"))
    [(host, port), *_] = await nursery.start(engine.run)
    published = 0

    async def publish(n: int, data: str = "x") -> int:
        nonlocal published
        for _ in range(n):
            await publish_direct(engine, "tick", data)
            published += 1
        return published

    async def flood_until_dropped() -> int:
        # The client's loop waits in here, so its stream falls behind and the engine drops it.
        with trio.fail_after(20):
            while len(engine.api.broadcaster):
                await publish(20, "x" * 8000)
        return published

    async def read_as_an_application() -> tuple[list[int], int]:
        """An asyncio program on the library; it reconnects with Last-Event-ID by itself."""
        ids: list[int] = []
        starts = 0
        last = -1
        async with asyncio.timeout(20), aiohttp.ClientSession() as session:
            client = AsyncSSEClient(
                AsyncConnectStrategy.http(
                    f"http://{host}:{port}/v1/devices/events",
                    headers={"Authorization": f"Bearer {ADMIN}"},
                    session=session,
                ),
                initial_retry_delay=0,
                error_strategy=ErrorStrategy.always_continue(),
            )
            async for action in client.all:
                if isinstance(action, Start):
                    starts += 1
                elif isinstance(action, Comment) and action.comment == "ok" and starts == 1:
                    trio.from_thread.run(publish, 10)  # the stream is attached: 1..10 go live
                elif isinstance(action, SseEvent):
                    ids.append(int(action.id))
                    if ids[-1] == 5 and starts == 1:
                        await client.interrupt()  # client side: gone mid-stream, 6..10 unread
                        trio.from_thread.run(publish, 5)  # 11..15 while it is away
                    elif ids[-1] == 15 and starts == 2:
                        last = trio.from_thread.run(flood_until_dropped)  # server side
                    if ids[-1] == last:
                        break
            await client.close()
        return ids, starts

    with trio.fail_after(30):
        ids, starts = await trio.to_thread.run_sync(asyncio.run, read_as_an_application())
    assert starts == 3
    assert ids == list(range(1, published + 1))
    assert "hookwire_sse_subscribers_dropped_total 1.0" in engine.metrics.render().decode()
    nursery.cancel_scope.cancel()


# (2) resume while events are being published


class SlowReadJournal(MemoryJournal):
    """Reads see the journal as it was when they started and end a while later (a query)."""

    async def events_after(self, after_id: int, limit: int) -> list[Event]:
        snapshot = await super().events_after(after_id, limit)
        for _ in range(20):  # others run meanwhile: a publisher stores ~20 events
            await trio.lowlevel.checkpoint()
        return snapshot


async def test_resume_while_publishing_has_no_gap_and_no_duplicate(
    write_config: WriteConfig, nursery: trio.Nursery
) -> None:
    hub = await serve_hub(write_config("\n[sse]\nbuffer = 100000\n"), SlowReadJournal(), nursery)
    for _ in range(2500):  # more than two replay pages
        await publish_direct(hub, "before")
    resume_after = [0, 999, 1000, 2499, 2500]
    attached = trio.Semaphore(0)
    done = trio.Event()
    got: dict[int, list[int]] = {}
    last_id = 0

    async def reader(after: int) -> None:
        client, _ = await open_stream(hub.port, "/v1/devices/events", last_event_id=str(after))
        attached.release()
        ids: list[int] = []
        while not done.is_set() or not ids or ids[-1] < last_id:
            ids.extend(ids_of(await read_frames(client, 1)))
        got[after] = ids
        await client.aclose()

    async with trio.open_nursery() as readers:
        # Each stream opens while events keep coming; publishing goes on past the last one.
        for after in resume_after:
            readers.start_soon(reader, after)
            for _ in range(100):
                last_id = (await publish_direct(hub, "during")).id
        for _ in resume_after:
            await attached.acquire()
        for _ in range(300):
            last_id = (await publish_direct(hub, "after")).id
        done.set()
    assert last_id == 2500 + 100 * len(resume_after) + 300
    for after in resume_after:
        assert got[after] == list(range(after + 1, last_id + 1)), after


class GatedJournal(MemoryJournal):
    """Once gated, reads see the journal as they start and end when the gate opens."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: trio.Event | None = None

    async def events_after(self, after_id: int, limit: int) -> list[Event]:
        snapshot = await super().events_after(after_id, limit)
        if self.gate is not None:
            await self.gate.wait()
        return snapshot


async def stored(journal: MemoryJournal, n: int) -> list[Event]:
    draft = EventDraft("t", "", 60, False, "2026-11-28T10:00:00.000Z", "dev", None)
    return await journal.append_many([draft] * n)


async def test_events_held_during_replay_are_sent_once_after_it() -> None:
    journal = GatedJournal()
    bus = Bus()
    broadcaster = Broadcaster(bus, buffer=10, keepalive=9)
    events = await stored(journal, 5)
    out = Collector()
    async with trio.open_nursery() as nursery:
        await nursery.start(broadcaster.run)
        for event in events[:3]:
            bus.publish(event)
        await trio.testing.wait_all_tasks_blocked()
        stream = EventStream(broadcaster, accept_all, await plan_resume(journal, 2))  # has 3..5
        events += await stored(journal, 1)
        journal.gate = trio.Event()
        nursery.start_soon(stream.run, out, CLOSE_DELIMITED)
        await trio.testing.wait_all_tasks_blocked()  # attached; replayed 3..5; reading 6
        bus.publish(events[3])  # 4 and 6 were stored before the stream attached,
        bus.publish(events[5])  # and come through the bus after
        for event in await stored(journal, 2):
            bus.publish(event)
        await trio.testing.wait_all_tasks_blocked()
        assert repr(broadcaster) == "<Broadcaster sinks=0 holding=1>"
        journal.gate.set()  # replays 6, then sends the held 7 and 8, not 4 or 6
        await trio.testing.wait_all_tasks_blocked()
        bus.publish(events[4])  # 5 comes through the bus last of all
        await trio.testing.wait_all_tasks_blocked()
        assert repr(broadcaster) == "<Broadcaster sinks=0 holding=1>"
        for event in await stored(journal, 1):
            bus.publish(event)
        await trio.testing.wait_all_tasks_blocked()
        assert repr(broadcaster) == "<Broadcaster sinks=1 holding=0>"  # past 6: live
        nursery.cancel_scope.cancel()
    frames = bytes(out.data).split(b"\n\n")
    assert frames[0] == b":ok"
    assert ids_of([frame + b"\n\n" for frame in frames[1:-1]]) == [3, 4, 5, 6, 7, 8, 9]


def frames_of(events: list[Event]) -> bytes:
    return b"".join(event_frame(event) or b"" for event in events)


async def test_replaying_stream_holds_only_what_its_replay_will_not_send() -> None:
    broadcaster = Broadcaster(Bus(), buffer=2, keepalive=9)
    socket = Socket()
    events = await stored(MemoryJournal(), 9)
    sink = broadcaster.attach(accept_all, socket.send_nowait, lambda: None, replaying_to=5)
    broadcaster.deliver(events[:5])  # late: the replay sends them, they take no room
    broadcaster.deliver(events[5:7])  # 6, 7: held, the buffer is full but not exceeded
    assert repr(sink) == "<Sink holding=2 backlog=0/2>"
    broadcaster.release(sink, 6)  # the replay read on to 6
    assert sink.take() == frames_of(events[6:7])  # the stream's task sends the held 7
    assert sink.take() is None
    broadcaster.deliver(events[5:6])  # 6 again (published late): skipped
    assert repr(broadcaster) == "<Broadcaster sinks=1 holding=0>"  # past 6: live
    broadcaster.deliver(events[7:9])
    assert socket.data == frames_of(events[7:9])


async def test_falling_a_buffer_behind_during_replay_closes_the_stream() -> None:
    journal = GatedJournal()
    bus = Bus()
    broadcaster = Broadcaster(bus, buffer=2, keepalive=9)
    await stored(journal, 1)
    out = Collector()
    async with trio.open_nursery() as nursery:
        await nursery.start(broadcaster.run)
        stream = EventStream(broadcaster, accept_all, await plan_resume(journal, 0))
        await stored(journal, 1)
        journal.gate = trio.Event()
        nursery.start_soon(stream.run, out, CLOSE_DELIMITED)
        await trio.testing.wait_all_tasks_blocked()  # replayed 1; reading 2 at the gate
        for event in await stored(journal, 2):
            bus.publish(event)
        await trio.testing.wait_all_tasks_blocked()
        assert len(broadcaster) == 1  # two held: still within the buffer
        for event in await stored(journal, 1):
            bus.publish(event)
        await trio.testing.wait_all_tasks_blocked()
        assert len(broadcaster) == 0  # the stream's task ended: its connection closes
        nursery.cancel_scope.cancel()
    assert out.data.startswith(b":ok\n\nevent: t\nid: 1\n")
    assert out.data.count(b"\n\n") == 2


# (3) filter and scope during replay


@pytest.mark.parametrize(
    ("path", "token", "expected"),
    [
        ("/v1/devices/events", ADMIN, ["a1", "b1", "a2", "p1", "end"]),
        ("/v1/devices/events/a", ADMIN, ["a1", "a2"]),
        (f"/v1/devices/{DEVICE}/events", ADMIN, ["a1", "b1", "p1"]),
        (f"/v1/devices/{DEVICE}/events/b", ADMIN, ["b1"]),
        (f"/v1/products/{PRODUCT_ID}/events", ADMIN, ["p1"]),
        (f"/v1/products/thermostat/devices/{DEVICE}/events", ADMIN, ["p1"]),
        ("/v1/devices/events", PRODUCT_ONLY, ["p1"]),
        ("/v1/events/a", DEVICE_ONLY, ["a1"]),
    ],
)
async def test_replay_keeps_to_the_route_and_the_token(
    write_config: WriteConfig, nursery: trio.Nursery, path: str, token: str, expected: list[str]
) -> None:
    hub = await serve_hub(write_config(), MemoryJournal(), nursery)

    async def publish_set() -> None:
        await publish_direct(hub, "a1", device=DEVICE)
        await publish_direct(hub, "b1", device=DEVICE)
        await publish_direct(hub, "a2", device="other")
        await publish_direct(hub, "p1", device=DEVICE, product=PRODUCT_ID)
        await publish_direct(hub, "end", device="x")

    await publish_set()
    client, _ = await open_stream(hub.port, path, token=token, last_event_id="0")
    replayed = await read_frames(client, len(expected))
    await publish_set()
    # A frame that should not have been replayed would push a live one out of place.
    live = await read_frames(client, len(expected))
    assert names_of(replayed) == names_of(live) == expected
    assert max(ids_of(replayed)) <= 5 < min(ids_of(live))
    await client.aclose()


# (4) older than retention


async def test_id_older_than_retention_is_announced(
    write_config: WriteConfig, nursery: trio.Nursery
) -> None:
    hub = await serve_hub(write_config(), MemoryJournal(keep=5), nursery)
    for _ in range(12):
        await publish_direct(hub, "t")
    client, head = await open_stream(hub.port, "/v1/devices/events", last_event_id="3")
    assert b"\r\nhookwire-oldest-event-id: 8\r\n" in head
    assert await client.read_until(b"\n\n") == (b":events 4 to 7 are past retention and lost\n\n")
    assert ids_of(await read_frames(client, 5)) == [8, 9, 10, 11, 12]
    await publish_direct(hub, "t")
    assert ids_of(await read_frames(client, 1)) == [13]
    await client.aclose()


async def test_id_within_retention_gets_no_notice(
    write_config: WriteConfig, nursery: trio.Nursery
) -> None:
    hub = await serve_hub(write_config(), MemoryJournal(keep=5), nursery)
    for _ in range(12):
        await publish_direct(hub, "t")
    client, head = await open_stream(hub.port, "/v1/devices/events", last_event_id="7")
    assert b"hookwire-oldest-event-id" not in head
    assert ids_of(await read_frames(client, 5)) == [8, 9, 10, 11, 12]
    await client.aclose()


class HoleyJournal(MemoryJournal):
    """A journal that lost some events but not all before them (some are kept longer)."""

    def __init__(self, lost: set[int]) -> None:
        super().__init__()
        self.lost = lost

    async def events_after(self, after_id: int, limit: int) -> list[Event]:
        page = await super().events_after(after_id, limit)
        return [event for event in page if event.id not in self.lost]


@pytest.mark.parametrize(
    ("lost", "after", "oldest", "expected"),
    [
        ({4, 5, 6}, "1", None, ["2", "3", ":events 4 to 6 are past retention and lost", "7", "8"]),
        ({4, 5, 6}, "4", b"7", [":events 5 to 6 are past retention and lost", "7", "8"]),
        (
            {2, 5},
            "1",
            b"3",
            [":event 2 is past retention and lost", "3", "4", ":event 5 is ", "6", "7", "8"],
        ),
        ({6, 7, 8}, "3", None, ["4", "5", ":events 6 to 8 are past retention and lost"]),
    ],
)
async def test_holes_are_announced_where_they_are(
    write_config: WriteConfig,
    nursery: trio.Nursery,
    lost: set[int],
    after: str,
    oldest: bytes | None,
    expected: list[str],
) -> None:
    hub = await serve_hub(write_config(), HoleyJournal(lost), nursery)
    for _ in range(8):
        await publish_direct(hub, "t")
    client, head = await open_stream(hub.port, "/v1/devices/events", last_event_id=after)
    if oldest is None:
        assert b"hookwire-oldest-event-id" not in head
    else:
        assert b"\r\nhookwire-oldest-event-id: %b\r\n" % oldest in head
    got = [block.decode() for block in await read_frames(client, len(expected))]
    for block, want in zip(got, expected, strict=True):
        assert block.startswith(want if want.startswith(":") else f"event: t\nid: {want}\n")
    await publish_direct(hub, "t")
    assert ids_of(await read_frames(client, 1)) == [9]
    await client.aclose()


class FlakyJournal(MemoryJournal):
    """Reads two events at a time, and fails once ``reads`` of them are done."""

    def __init__(self, reads: int) -> None:
        super().__init__()
        self.reads = reads

    async def events_after(self, after_id: int, limit: int) -> list[Event]:
        if self.reads == 0:
            raise JournalUnavailable("the journal cannot read: disk I/O error")
        self.reads -= 1
        return await super().events_after(after_id, 2)


async def test_journal_failing_before_the_replay_is_a_503(
    write_config: WriteConfig, nursery: trio.Nursery
) -> None:
    hub = await serve_hub(write_config(), FlakyJournal(reads=0), nursery)
    await publish_direct(hub, "t")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.port}") as client:
        response = await client.get(
            "/v1/devices/events", headers={"Authorization": f"Bearer {ADMIN}", "Last-Event-ID": "0"}
        )
    assert response.status_code == 503
    message = "stream not resumed: the journal cannot read: disk I/O error"
    assert response.json() == {"ok": False, "error": message, "error_description": message}


async def test_journal_failing_during_the_replay_ends_the_stream(
    write_config: WriteConfig, nursery: trio.Nursery
) -> None:
    hub = await serve_hub(write_config(), FlakyJournal(reads=2), nursery)
    for _ in range(5):
        await publish_direct(hub, "t")
    client, _ = await open_stream(hub.port, "/v1/devices/events", last_event_id="0")
    assert ids_of(await read_frames(client, 4)) == [1, 2, 3, 4]
    # The client resumes after 4 once it reconnects.
    assert (
        await client.read_to_eof()
        == b":replay stopped: the journal cannot read: disk I/O error\n\n"
    )
    assert client.body is not None and client.body.ended  # then the last chunk
    await client.aclose()
    assert len(hub.api.broadcaster) == 0


# (5) ids that are not numbers, or from the future


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "0x10", "1 2", "12345678901234567890"])
async def test_not_a_number_is_refused(served: Served, value: str) -> None:
    async with httpx.AsyncClient(base_url=served.url) as client:
        response = await client.get(
            "/v1/devices/events",
            headers={"Authorization": f"Bearer {ADMIN}", "Last-Event-ID": value},
        )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    message = (
        "Last-Event-ID must be the id of the last event received, a whole number "
        f"(0 to replay everything kept), got {value!r}"
    )
    assert response.json() == {"ok": False, "error": message, "error_description": message}


async def test_future_id_means_the_journal_was_reset(
    write_config: WriteConfig, nursery: trio.Nursery
) -> None:
    hub = await serve_hub(write_config(), MemoryJournal(), nursery)
    for _ in range(3):
        await publish_direct(hub, "t")
    client, head = await open_stream(hub.port, "/v1/devices/events", last_event_id="99")
    assert b"\r\nhookwire-oldest-event-id: 1\r\n" in head
    assert await client.read_until(b"\n\n") == (
        b":event 99 is unknown, the newest is 3: the journal was reset; replaying from 1\n\n"
    )
    assert ids_of(await read_frames(client, 3)) == [1, 2, 3]
    await publish_direct(hub, "t")
    assert ids_of(await read_frames(client, 1)) == [4]
    await client.aclose()


# (6) the query parameter


async def test_query_parameter_resumes_and_the_header_wins(
    write_config: WriteConfig, nursery: trio.Nursery
) -> None:
    hub = await serve_hub(write_config(), MemoryJournal(), nursery)
    for _ in range(5):
        await publish_direct(hub, "t")
    by_query, _ = await open_stream(hub.port, "/v1/devices/events?last_event_id=2")
    # A browser keeps the URL it was given and sends its newer position as the header.
    both, _ = await open_stream(hub.port, "/v1/devices/events?last_event_id=1", last_event_id="4")
    assert ids_of(await read_frames(by_query, 3)) == [3, 4, 5]
    assert ids_of(await read_frames(both, 1)) == [5]
    await by_query.aclose()
    await both.aclose()


async def test_empty_id_is_no_resume(write_config: WriteConfig, nursery: trio.Nursery) -> None:
    hub = await serve_hub(write_config(), MemoryJournal(), nursery)
    await publish_direct(hub, "old")
    client, _ = await open_stream(hub.port, "/v1/devices/events?last_event_id=")
    await publish_direct(hub, "new")
    assert names_of(await read_frames(client, 1)) == ["new"]
    await client.aclose()


async def test_bad_query_parameter_is_refused_by_name(
    write_config: WriteConfig, nursery: trio.Nursery
) -> None:
    hub = await serve_hub(write_config(), MemoryJournal(), nursery)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.port}") as client:
        response = await client.get(
            "/v1/devices/events",
            params={"last_event_id": "\u0663", "access_token": ADMIN},  # an Arabic-Indic 3
        )
    assert response.status_code == 400
    assert response.json()["error"].startswith("last_event_id must be the id of the last event")
