"""The Journal contract, one suite run against every backend: memory, SQLite and Redis (a
real redis-server the tests start), the way Svix runs its suite against every queue.

What only a durable journal promises (recovery, hooks and 410 marks that outlive the
process) runs against SQLite and Redis; the rest against all three.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio

from engine.config.settings import Config
from engine.core.model import (
    Event,
    StoredHook,
)
from engine.hooks.router import HookSet, Route
from engine.journal import Journal, MemoryJournal
from engine.journal.admin import DeadLetterQuery
from engine.journal.base import HookNameTaken, JournalUnavailable
from engine.journal.redis import RedisJournal
from engine.journal.sqlite import SqliteJournal
from tests.conftest import WriteConfig
from tests.journal.kit import HOOKS, draft, outcome
from tests.redis_server import RedisServer

BACKENDS = ["memory", "sqlite", "redis"]
DURABLE = ["sqlite", "redis"]

Opener = Callable[[], Any]


@pytest.fixture
def config(write_config: WriteConfig) -> Config:
    return write_config(HOOKS)


@pytest.fixture
def opener(request: pytest.FixtureRequest, tmp_path: Path, config: Config) -> Callable[..., Any]:
    """Opens the backend of ``request.param`` (again, on the same storage, when called
    again), with a fresh HookSet of the config's hooks each time."""
    backend = request.param
    url = request.getfixturevalue("redis_db") if backend == "redis" else ""  # flushed
    memory = MemoryJournal(hooks=HookSet(config.hooks))

    def open_journal(hooks: HookSet | None = None) -> Journal:
        hooks = hooks or HookSet(config.hooks)
        if backend == "memory":
            memory._hooks = hooks
            return memory
        if backend == "sqlite":
            return SqliteJournal(tmp_path / "j.db", hooks)
        return RedisJournal(url, hooks, node="test")

    return open_journal


@asynccontextmanager
async def running(
    journal: Journal,
    *,
    published: list[Event] | None = None,
    routed: list[tuple[int, Route]] | None = None,
) -> AsyncIterator[Journal]:
    if published is not None:
        journal.fan_out_to(published.append)
    if routed is not None:
        journal.hand_routes_to(lambda event, route: routed.append((event.id, route)))
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        yield journal
        nursery.cancel_scope.cancel()
    await journal.aclose()


all_backends = pytest.mark.parametrize("opener", BACKENDS, indirect=True)
durable_backends = pytest.mark.parametrize("opener", DURABLE, indirect=True)


@all_backends
async def test_ids_increase_and_every_event_is_fanned_out_in_order(opener: Opener) -> None:
    published: list[Event] = []
    async with running(opener(), published=published) as journal:
        first = await journal.append(draft("a"))
        pending = [journal.append_nowait(draft(f"n{i}")) for i in range(3)]
        many = await journal.append_many([draft("m1"), draft("m2")])
        waited = [await p.wait() for p in pending]
        assert [first.id, *[e.id for e in waited], *[e.id for e in many]] == [1, 2, 3, 4, 5, 6]
        assert [e.name for e in published] == ["a", "n0", "n1", "n2", "m1", "m2"]
        assert journal.last_id() == 6
        assert [e.name for e in await journal.events_after(3, 2)] == ["n2", "m1"]
        assert await journal.events_after(6, 10) == []
        assert journal.oldest_id() == 1
        assert many[0] == Event(5, "m1", "21.5", 60, True, "2026-11-29T00:00:00.000Z", "dev1")


@all_backends
async def test_keyed_appends_store_a_key_once(opener: Opener) -> None:
    async with running(opener()) as journal:
        stored = await journal.append_keyed(
            [(draft("a"), "k1"), (draft("b"), "k1"), (draft("c", device="dev2"), "k1")]
        )
        assert [e.name if e else None for e in stored] == ["a", None, "c"]
        again = await journal.append_keyed([(draft("d"), "k1"), (draft("e"), None)])
        assert [e.name if e else None for e in again] == [None, "e"]


@all_backends
async def test_the_downlink_outbox(opener: Opener) -> None:
    async with running(opener()) as journal:
        events = await journal.append_many(
            [draft("hook-response/x/0"), draft("plain"), draft("hook-response/y/0")],
            to_devices=["dev1", None, "dev2"],
        )
        assert journal.outbox_depth == 2
        pending = await journal.pending_downlinks(0, 10)
        assert [(entry.event.id, entry.device) for entry in pending] == [
            (events[0].id, "dev1"),
            (events[2].id, "dev2"),
        ]
        assert [e.event.id for e in await journal.pending_downlinks(events[0].id, 10)] == [
            events[2].id
        ]
        await journal.downlinks_acked([events[0].id])
        assert journal.outbox_depth == 1
        assert await journal.expire_downlinks() == 0


@all_backends
async def test_routes_are_handed_to_the_dispatcher(opener: Opener) -> None:
    routed: list[tuple[int, Route]] = []
    both = trio.Event()

    def deliver(event: Event, route: Route) -> None:
        routed.append((event.id, route))
        if sum(len(hooks) for _, hooks in routed) == 2:
            both.set()

    journal = opener()
    journal.hand_routes_to(deliver)
    async with running(journal) as journal:
        event = await journal.append(draft("temp"))
        await journal.append(draft("other"))
        with trio.fail_after(5):  # at once for memory and SQLite; Redis's through its group
            await both.wait()
    assert sorted((i, hook.name) for i, route in routed for hook in route) == [
        (event.id, "everything"),
        (event.id, "temps"),
    ]


@all_backends
async def test_dead_letters_and_their_replay(opener: Opener) -> None:
    async with running(opener()) as journal:
        event = await journal.append(draft("temp"))
        await journal.record_attempts([outcome(journal, event, "temps", "dead", 3)])
        await journal.settle([outcome(journal, event, "everything", "delivered")], [])
        [letter] = await journal.list_dead_letters(DeadLetterQuery())
        assert (letter.hook, letter.event_id, letter.attempts) == ("temps", event.id, 3)
        assert letter.reason == "503"  # the dead attempt's, whoever made it
        assert await journal.list_dead_letters(DeadLetterQuery(hook="everything")) == []
        replayed = await journal.replay_dead_letters(DeadLetterQuery(ids=(letter.id, "nope")))
        assert (replayed.ids, replayed.missing) == ((letter.id,), ("nope",))
        assert await journal.list_dead_letters(DeadLetterQuery()) == []
        [again] = await journal.take_replays()
        assert (again.id, again.hook, again.attempts) == (letter.id, "temps", 0)
        assert await journal.take_replays() == []


@durable_backends
async def test_unsettled_deliveries_are_recovered_after_a_restart(opener: Opener) -> None:
    async with running(opener(), routed=[]) as journal:
        first = await journal.append(draft("temp"))  # temps and everything
        second = await journal.append(draft("tx"))  # everything
        with trio.fail_after(5):  # the Redis journal hands them out from its partitions
            await trio.sleep(0.2)
        await journal.record_attempts(
            [
                outcome(journal, first, "temps", "delivered"),
                outcome(journal, first, "everything", "waiting"),
                outcome(journal, second, "everything", "dead"),
            ]
        )
    async with running(opener()) as journal:
        [waiting] = await journal.recover()
        assert (waiting.event.id, waiting.hook, waiting.attempts) == (first.id, "everything", 1)
        assert waiting.recorded == 1


@durable_backends
async def test_deliveries_that_waited_or_were_replayed_owe_nothing_once_delivered(
    opener: Opener,
) -> None:
    async with running(opener(), routed=[]) as journal:
        event = await journal.append(draft("temp"))  # temps and everything
        with trio.fail_after(5):  # the Redis journal hands them out from its partitions
            await trio.sleep(0.2)
        await journal.record_attempts(
            [
                outcome(journal, event, "temps", "waiting"),
                outcome(journal, event, "everything", "dead"),
            ]
        )
        await journal.settle([outcome(journal, event, "temps", "delivered", 2)], [])
        [letter] = await journal.list_dead_letters(DeadLetterQuery())
        await journal.replay_dead_letters(DeadLetterQuery(ids=(letter.id,)))
        [again] = await journal.take_replays()
        replayed, attempt = outcome(journal, event, "everything", "delivered")
        replayed.earlier_attempts = again.recorded
        await journal.settle([(replayed, replace(attempt, number=1))], [])
        shown = await journal.delivery_detail(replayed.id)
        assert shown is not None
        assert shown.to_json()["attempts"] == len(shown.attempts) == 2  # dead, then delivered
    async with running(opener()) as journal:
        assert await journal.recover() == []
        assert await journal.list_dead_letters(DeadLetterQuery()) == []


@durable_backends
async def test_deliveries_in_flight_at_a_crash_are_recovered(opener: Opener) -> None:
    async with running(opener(), routed=[]) as journal:
        event = await journal.append(draft("temp"))
        await trio.sleep(0.2)
    async with running(opener()) as journal:
        found = await journal.recover()
        assert sorted((d.event.id, d.hook) for d in found) == [
            (event.id, "everything"),
            (event.id, "temps"),
        ]
        await journal.record_attempts([outcome(journal, event, d.hook, "delivered") for d in found])
    async with running(opener()) as journal:
        assert await journal.recover() == []


@durable_backends
async def test_stored_hooks_outlive_the_process(opener: Opener) -> None:
    one = StoredHook("a" * 24, "one", '{"event": "x"}', None, "2026-12-06T00:00:00.000Z")
    two = StoredHook("b" * 24, "two", '{"event": "y"}', 7, "2026-12-06T00:00:01.000Z")
    async with running(opener()) as journal:
        await journal.put_hook(one)
        await journal.put_hook(two)
        with pytest.raises(HookNameTaken):
            await journal.put_hook(StoredHook("c" * 24, "one", "{}", None, "x"))
        assert await journal.delete_hook("b" * 24)
        assert not await journal.delete_hook("b" * 24)
    journal = opener()
    if isinstance(journal, RedisJournal):
        await journal.open()
    assert journal.stored_hooks() == [one]
    await journal.aclose()


__all__ = ["Opener"]


@pytest.mark.parametrize("opener", ["redis"], indirect=True)
async def test_redis_forgets_what_is_older_than_the_retention(
    opener: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(opener()) as journal:
        assert isinstance(journal, RedisJournal)
        old = await journal.append(draft("temp"))
        await journal.record_attempts([outcome(journal, old, "temps", "dead")])
        later = time.time() + 3600
        monkeypatch.setattr(time, "time", lambda: later)
        young = await journal.append(draft("temp"))
        journal._retention = 1800
        assert await journal.prune() == 1
        assert [e.id for e in await journal.events_after(0, 10)] == [young.id]
        assert journal.oldest_id() == young.id
        assert await journal.list_dead_letters(DeadLetterQuery()) == []
        # the hook's log too (its stream ids are Redis's clock, an hour behind here)
        assert (await journal.hook_activity("temps")).failures == ()


@durable_backends
async def test_a_410_mark_outlives_the_process(opener: Opener, config: Config) -> None:
    async with running(opener()) as journal:
        await journal.disable_hook("temps", "410 Gone")
    hooks = HookSet(config.hooks)
    journal = opener(hooks)
    if isinstance(journal, RedisJournal):
        await journal.open()
    assert hooks.is_disabled("temps") and not hooks.is_disabled("everything")
    await journal.aclose()


async def test_redis_down_refuses_appends_clearly_and_the_journal_resumes(
    config: Config, redis_server: RedisServer, redis_db: str
) -> None:
    journal = RedisJournal(redis_db, HookSet(config.hooks), node="test")
    published: list[Event] = []
    async with running(journal, published=published):
        before = await journal.append(draft("a"))
        redis_server.stop()
        with pytest.raises(JournalUnavailable, match="cannot write to Redis at redis://"):
            await journal.append(draft("lost"))
        redis_server.start()  # without persistence: its data is gone, groups included
        with trio.fail_after(10):
            after = await journal.append(draft("b"))
        assert after.id > before.id  # ids never go back, even over a Redis that forgot
        # Read back from the stream before the append returned, as always.
        assert [e.name for e in published] == ["a", "b"]
