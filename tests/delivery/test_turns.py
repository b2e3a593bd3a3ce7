"""Attempts in flight across destinations: the shared cap, and destinations taking turns."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from engine.delivery.destination import Destination, Job
from engine.delivery.turns import Turns
from engine.http.client import Origin


def test_slots_go_to_whoever_waited_first() -> None:
    woken: list[str] = []
    turns: Turns[str] = Turns(2, woken.append)
    assert turns.take("a") and turns.take("a")
    assert not turns.take("b")
    assert not turns.take("c")
    assert not turns.take("b")  # in line once
    assert not turns.take("a")  # behind b and c, although it asks again
    assert repr(turns) == "<Turns in_use=2/2 waiting=3>"
    turns.release()
    assert woken == ["b"]
    assert not turns.take("c")  # the slot is b's
    assert turns.take("b")
    turns.release()
    turns.release()
    assert woken == ["b", "c", "a"]
    assert turns.take("a") and turns.take("c")
    assert repr(turns) == "<Turns in_use=2/2 waiting=0>"


def test_a_declined_grant_passes_to_the_next_in_line() -> None:
    woken: list[str] = []
    turns: Turns[str] = Turns(1, woken.append)
    assert turns.take("a")
    assert not turns.take("b")
    assert not turns.take("c")
    turns.release()  # granted to b
    turns.decline("b")  # b no longer wants it: c gets it
    assert woken == ["b", "c"]
    assert not turns.take("b")
    turns.decline("b")  # out of line again
    assert turns.take("c")
    turns.release()
    assert turns.in_use == 0
    with pytest.raises(ValueError, match="at least 1"):
        Turns(0, woken.append)


@given(st.lists(st.tuples(st.sampled_from(["take", "release", "decline"]), st.integers(0, 3))))
def test_no_slot_is_lost_or_made(ops: list[tuple[str, int]]) -> None:
    woken: list[int] = []
    turns: Turns[int] = Turns(2, woken.append)
    held = 0  # slots taken and not yet released
    for op, who in ops:
        if op == "take":
            held += turns.take(who)
        elif op == "release" and held:
            turns.release()
            held -= 1
        elif op == "decline":
            turns.decline(who)
        granted = sum(turns._granted.values())
        assert turns.in_use == held + granted <= 2
        if turns.waiting:
            assert turns.in_use == 2  # nobody waits while a slot is free


def job(name: str) -> Job:
    hook: Any = SimpleNamespace(name=name)
    return Job(delivery=name, hook=hook, request=None, context={})  # type: ignore[arg-type]


async def test_destinations_take_turns_for_the_shared_slots(
    autojump_clock: trio.testing.MockClock,
) -> None:
    started: list[str] = []
    all_started = trio.Event()
    in_flight = worst = 0
    turns: Turns[Destination] = Turns(2, Destination.wake)

    async def attempt(destination: Destination, job: Job) -> None:
        nonlocal in_flight, worst
        in_flight += 1
        worst = max(worst, in_flight)
        started.append(job.hook.name)
        if len(started) == 23:
            all_started.set()
        await trio.sleep(1)
        in_flight -= 1
        destination.attempt_done()

    busy, quiet = (
        Destination(Origin("http", host, 80), True, 64, attempt, {}, turns)
        for host in ("busy.example", "quiet.example")
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(busy.run)
        nursery.start_soon(quiet.run)
        for _ in range(20):
            busy.submit(job("busy"))
        await trio.testing.wait_all_tasks_blocked()
        for _ in range(3):
            quiet.submit(job("quiet"))
        await all_started.wait()
        nursery.cancel_scope.cancel()
    assert worst == 2
    # The quiet destination waits for one round of the busy one's, not for all 20.
    quiet_starts = [i for i, name in enumerate(started) if name == "quiet"]
    assert len(quiet_starts) == 3 and quiet_starts[-1] < 8, started
    assert turns.in_use <= 2
