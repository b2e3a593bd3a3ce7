"""Two Redis journals (two nodes) on one real redis-server, writing at once: each fans out
every event of both, in id order, with no gap and no duplicate (a busy node takes them from
its writes' answers, a quiet one reads the stream), and each delivery goes out from one
node only (both read every partition here: no leases)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from engine.config.settings import Config
from engine.hooks.router import HookSet
from engine.journal.redis import RedisJournal
from tests.conftest import WriteConfig
from tests.journal.kit import HOOKS, draft

ROUNDS = 40
"""Batches each node appends, a few events at a time, while the other appends too."""


class Tally:
    """What both nodes fanned out and handed to their dispatchers; ``done`` is set once
    each node fanned out ``events`` and together they handed out ``deliveries``."""

    def __init__(self, events: int, deliveries: int) -> None:
        self.events, self.deliveries = events, deliveries
        self.published: dict[str, list[int]] = {}
        self.routed: list[tuple[int, str]] = []
        self.done = trio.Event()

    def node(self, url: str, config: Config, name: str) -> RedisJournal:
        journal = RedisJournal(url, HookSet(config.hooks), node=name)
        published = self.published.setdefault(name, [])
        journal.fan_out_to(lambda event: self._note(published.append, event.id))
        journal.hand_routes_to(
            lambda event, route: self._note(
                self.routed.extend, [(event.id, hook.name) for hook in route]
            )
        )
        return journal

    def _note(self, add: Callable[[Any], None], what: Any) -> None:
        add(what)
        fanned = all(len(ids) >= self.events for ids in self.published.values())
        if fanned and len(self.routed) >= self.deliveries:
            self.done.set()


@asynccontextmanager
async def two_nodes(url: str, config: Config, tally: Tally) -> AsyncIterator[list[RedisJournal]]:
    journals = [tally.node(url, config, name) for name in ("node-a", "node-b")]
    async with trio.open_nursery() as nursery:
        for journal in journals:
            await nursery.start(journal.run)
        yield journals
        nursery.cancel_scope.cancel()
    for journal in journals:
        await journal.aclose()


async def test_both_nodes_fan_out_every_event_in_order_and_deliver_each_once(
    redis_db: str, write_config: WriteConfig
) -> None:
    events = 2 * ROUNDS * 3
    # every "temp..." event (node a's) goes to two hooks, every other "t..." to one
    tally = Tally(events, ROUNDS * 3 * 3)

    async def write(journal: RedisJournal, name: str) -> None:
        for i in range(ROUNDS):
            pending = [journal.append_nowait(draft(f"{name}{i}.{k}")) for k in range(3)]
            for appended in pending:
                await appended.wait()

    async with two_nodes(redis_db, write_config(HOOKS), tally) as (a, b):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(write, a, "temp-a")
            nursery.start_soon(write, b, "t-b")
        with trio.fail_after(10):
            await tally.done.wait()
    assert tally.published == {
        "node-a": list(range(1, events + 1)),
        "node-b": list(range(1, events + 1)),
    }
    assert len(tally.routed) == len(set(tally.routed)) == ROUNDS * 3 * 3
