"""The SSE fan-out: direct writes, backlogs, overflow and resets, without sockets."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from engine.api.broadcast import KEEPALIVE, Broadcaster, Sink, StreamStats, accept_all
from engine.core.bus import Bus, SubscriptionDropped
from engine.core.model import Event
from engine.http.h1 import CHUNKED, CLOSE_DELIMITED, LAST_CHUNK, frame_chunk
from tests.helpers import Dechunker


def event(n: int, name: str = "temp") -> Event:
    return Event(n, name, "d", 60, False, "2026-11-28T10:00:00.000Z", "dev", None)


class Socket:
    """A fake socket that takes ``room`` bytes, then nothing."""

    def __init__(self, room: int = 1 << 30) -> None:
        self.room = room
        self.data = bytearray()
        self.broken = False

    def send_nowait(self, data: bytes) -> int:
        if self.broken:
            raise trio.BrokenResourceError
        n = min(self.room, len(data))
        self.room -= n
        self.data += data[:n]
        return n


def sink(socket: Socket, limit: int = 4) -> tuple[Sink, list[str]]:
    dropped: list[str] = []
    made = Sink(accept_all, limit, socket.send_nowait, lambda: dropped.append("x"), 0.0)
    assert made.take() is None  # as after the preamble: idle, direct writes allowed
    return made, dropped


def test_idle_sink_writes_directly() -> None:
    socket = Socket()
    s, _ = sink(socket)
    s.push(b"abc", 1, 1.0)
    assert socket.data == b"abc"
    assert s.take() is None


def test_full_socket_leaves_a_backlog_for_the_stream_task_in_order() -> None:
    socket = Socket(room=2)
    s, _ = sink(socket)
    s.push(b"abc", 1, 1.0)
    s.push(b"def", 1, 1.0)  # never written before the backlog
    assert socket.data == b"ab"
    assert s.take() == b"cdef"
    assert s.busy
    s.push(b"g", 1, 1.0)  # the task is sending: queue behind it
    assert s.take() == b"g"
    assert s.take() is None
    assert not s.busy


def test_overflow_drops_the_sink() -> None:
    socket = Socket(room=0)
    s, dropped = sink(socket, limit=2)
    s.push(b"a", 1, 1.0)
    s.push(b"b", 1, 1.0)
    assert dropped == []
    s.push(b"c", 1, 1.0)
    assert dropped == ["x"]
    assert s.overflowed
    with pytest.raises(SubscriptionDropped):
        s.take()


def test_broken_socket_drops_without_counting_an_overflow() -> None:
    socket = Socket()
    socket.broken = True
    s, dropped = sink(socket)
    s.push(b"a", 1, 1.0)
    assert dropped == ["x"]
    assert not s.overflowed


def test_detached_sink_never_writes_again() -> None:
    socket = Socket()
    s, _ = sink(socket)
    s.detach()
    s.push(b"a", 1, 1.0)
    assert socket.data == b""


async def test_deliver_encodes_once_and_filters_per_sink() -> None:
    broadcaster = Broadcaster(Bus(), buffer=10, keepalive=9)
    everything, temps = Socket(), Socket()
    for socket, accepts in ((everything, accept_all), (temps, lambda e: e.name == "temp")):
        broadcaster.attach(accepts, socket.send_nowait, lambda: None).take()
    broadcaster.deliver([event(1), event(2, "other"), event(3)])
    assert everything.data.count(b"event: ") == 3
    assert temps.data.count(b"event: ") == 2
    assert b"id: 2\n" not in temps.data


async def test_keep_alive_only_for_quiet_sinks() -> None:
    broadcaster = Broadcaster(Bus(), buffer=10, keepalive=9)
    start = trio.current_time()
    quiet, busy = Socket(), Socket()
    sinks = [broadcaster.attach(accept_all, s.send_nowait, lambda: None) for s in (quiet, busy)]
    for s in sinks:
        s.take()
    sinks[1].last_push = start + 5
    broadcaster.keep_alive(now=start + 10)
    assert quiet.data == KEEPALIVE
    assert busy.data == b""


async def test_a_broadcaster_that_falls_behind_resets_its_streams() -> None:
    bus = Bus()
    broadcaster = Broadcaster(bus, buffer=10, keepalive=9, capacity=3)
    dropped: list[int] = []
    broadcaster.attach(accept_all, Socket().send_nowait, lambda: dropped.append(1)).take()
    async with trio.open_nursery() as nursery:
        await nursery.start(broadcaster.run)
        for n in range(5):  # the broadcaster has not run between these: 5 > 3
            bus.publish(event(n))
        await trio.testing.wait_all_tasks_blocked()
        assert dropped == [1]
        assert len(bus) == 1  # it subscribed again
        nursery.cancel_scope.cancel()


async def test_batch_window_groups_events_under_load_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bus = Bus()
    broadcaster = Broadcaster(bus, buffer=10, keepalive=60, batch_window=0.01)
    writes: list[tuple[float, int]] = []

    def send_nowait(data: bytes) -> int:
        writes.append((round(trio.current_time() - start, 3), data.count(b"event: ")))
        return len(data)

    async with trio.open_nursery() as nursery:
        await nursery.start(broadcaster.run)
        broadcaster.attach(accept_all, send_nowait, lambda: None).take()
        start = trio.current_time()
        bus.publish(event(1))  # quiet before: written at once
        for n in range(2, 5):  # then one every millisecond: gathered
            await trio.sleep(0.001)
            bus.publish(event(n))
        await trio.sleep(1)
        bus.publish(event(5))  # quiet again: at once
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    assert writes == [(0.0, 1), (0.01, 3), (1.003, 1)]


async def test_an_event_that_cannot_be_framed_is_logged_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broadcaster = Broadcaster(Bus(), buffer=10, keepalive=9)
    socket = Socket()
    broadcaster.attach(accept_all, socket.send_nowait, lambda: None).take()
    broadcaster.deliver([event(1, "bad\nname"), event(2)])
    assert socket.data.count(b"event: ") == 1
    assert b"id: 2\n" in socket.data
    assert "event 1 cannot be sent over SSE" in caplog.text


class Writes:
    """A fake socket that takes everything and keeps each write as the object it was given."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def send_nowait(self, data: bytes) -> int:
        self.writes.append(data)
        return len(data)


async def test_a_batch_is_framed_once_as_a_chunk_for_every_chunked_sink() -> None:
    broadcaster = Broadcaster(Bus(), buffer=10, keepalive=9)
    a, b, old, temps = Writes(), Writes(), Writes(), Writes()
    for socket, accepts, framing in (
        (a, accept_all, CHUNKED),
        (b, accept_all, CHUNKED),
        (old, accept_all, CLOSE_DELIMITED),  # an HTTP/1.0 client
        (temps, lambda e: e.name == "temp", CHUNKED),
    ):
        broadcaster.attach(accepts, socket.send_nowait, lambda: None, framing=framing).take()
    broadcaster.deliver([event(1), event(2, "other"), event(3)])
    [chunk], [same], [raw], [filtered] = a.writes, b.writes, old.writes, temps.writes
    assert same is chunk  # one object written to every socket
    assert chunk == frame_chunk(raw)
    assert raw.count(b"event: ") == 3
    assert Dechunker().feed(filtered).count(b"event: ") == 2
    broadcaster.keep_alive(trio.current_time() + 10)
    assert a.writes[-1] == frame_chunk(KEEPALIVE)
    assert old.writes[-1] == KEEPALIVE


def test_dropped_sink_keeps_what_finishes_the_chunk_on_the_wire() -> None:
    socket = Socket(room=5)
    dropped: list[str] = []
    s = Sink(accept_all, 2, socket.send_nowait, lambda: dropped.append("x"), 0.0, framing=CHUNKED)
    assert s.take() is None
    first, second = frame_chunk(b"event: a\n\n"), frame_chunk(b"event: b\n\n")
    s.push(first, 1, 1.0)  # five bytes of it go out
    s.push(second, 1, 1.0)
    assert s.partial_rest() == first[5:]
    s.push(second, 1, 1.0)  # three events queued: dropped
    assert dropped == ["x"]
    assert s.backlog == first[5:]  # only what must follow on the wire is kept
    body = Dechunker()
    assert body.feed(bytes(socket.data) + s.partial_rest() + LAST_CHUNK) == b"event: a\n\n"
    assert body.ended


def test_a_sink_whose_task_took_the_backlog_has_nothing_to_finish() -> None:
    socket = Socket(room=5)
    s, _ = sink(socket)
    s.push(frame_chunk(b"event: a\n\n"), 1, 1.0)
    assert s.take() is not None  # the stream's task sends the rest itself
    assert s.partial_rest() == b""


class Counts(StreamStats):
    def __init__(self) -> None:
        self.counted: list[str] = []

    def closed(self) -> None:
        self.counted.append("closed")

    def dropped(self) -> None:
        self.counted.append("dropped")


async def test_a_dropped_sink_leaves_the_fan_out_at_once_and_is_counted() -> None:
    stats = Counts()
    broadcaster = Broadcaster(Bus(), buffer=2, keepalive=9, stats=stats)
    live = broadcaster.attach(accept_all, Socket(room=0).send_nowait, lambda: None)
    resuming = broadcaster.attach(
        accept_all, Socket(room=0).send_nowait, lambda: None, replaying_to=1
    )
    broadcaster.release(resuming, 1)  # replayed: waits for the broadcaster to pass id 1
    broadcaster.deliver([event(2), event(3), event(4)])  # more than either can queue
    assert (live.dropped, resuming.dropped) == (True, True)
    assert repr(broadcaster) == "<Broadcaster sinks=0 holding=0>"
    assert stats.counted == ["dropped", "dropped"]
    broadcaster.detach(live)  # the stream's task ended its body
    broadcaster.detach(resuming)
    assert stats.counted == ["dropped", "dropped", "closed", "closed"]
