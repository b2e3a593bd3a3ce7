"""The SSE fan-out: direct writes, backlogs, overflow and resets, without sockets."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from engine.api.broadcast import KEEPALIVE, Broadcaster, Sink, accept_all
from engine.bus import Bus, SubscriptionDropped
from engine.model import Event


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
