"""The bus: fan-out, filters, bounded buffers and dropping slow subscribers."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from engine.core.bus import Bus, SubscriptionDropped
from engine.core.model import Event


def event(n: int, name: str = "temp") -> Event:
    return Event(n, name, str(n), 60, False, "2026-11-28T10:00:00.000Z", "dev1", None)


async def test_every_subscriber_gets_every_matching_event() -> None:
    bus = Bus()
    everything = bus.subscribe(lambda e: True, 10)
    temps = bus.subscribe(lambda e: e.name.startswith("temp"), 10)
    bus.publish(event(1))
    bus.publish(event(2, "humidity"))
    assert [e.id for e in await everything.receive_batch()] == [1, 2]
    assert [e.id for e in await temps.receive_batch()] == [1]


async def test_receive_waits_for_an_event() -> None:
    bus = Bus()
    subscription = bus.subscribe(lambda e: True, 10)
    got: list[int] = []

    async def reader() -> None:
        got.extend(e.id for e in await subscription.receive_batch())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        bus.publish(event(7))
    assert got == [7]


async def test_a_full_subscriber_is_dropped_and_the_others_keep_going() -> None:
    bus = Bus()
    dropped: list[str] = []
    slow = bus.subscribe(lambda e: True, 2, on_drop=lambda: dropped.append("slow"))
    fast = bus.subscribe(lambda e: True, 100)
    for n in range(1, 6):
        bus.publish(event(n))
    assert dropped == ["slow"]
    assert slow.dropped
    assert len(bus) == 1
    with pytest.raises(SubscriptionDropped):
        await slow.receive_batch()
    assert [e.id for e in fast.receive_batch_nowait()] == [1, 2, 3, 4, 5]


async def test_close_is_idempotent() -> None:
    bus = Bus()
    subscription = bus.subscribe(lambda e: True, 1)
    subscription.close()
    subscription.close()
    assert len(bus) == 0
    bus.publish(event(1))
    assert subscription.receive_batch_nowait() == []


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Bus().subscribe(lambda e: True, 0)
