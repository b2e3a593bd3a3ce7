"""Deliveries kept by the SQLite journal outlive the engine: recovered at start, in order."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from engine.config.settings import Config
from engine.core.model import Event, EventDraft
from engine.daemon import Engine
from engine.hooks.router import HookSet
from engine.journal.sqlite import SqliteJournal
from tests.conftest import WriteConfig
from tests.helpers import publish_direct, wait_until
from tests.http.sink import Reply, Sink


def sqlite_config(write_config: WriteConfig, path: Path, sink: Sink, hooks: str = "") -> Config:
    hook = hooks or (
        f'\n[[hooks]]\nname = "main"\nevent = "temp"\nurl = "{sink.url}/hook"\nretry = ["1h"]\n'
    )
    return write_config(
        f'\n[delivery]\nallow_networks = ["127.0.0.0/8"]\n{hook}',
        replace={'backend = "memory"': f'backend = "sqlite"\npath = "{path}"'},
    )


@asynccontextmanager
async def engine_on(config: Config) -> AsyncIterator[Engine]:
    engine = Engine(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.run)
        yield engine
        engine.shutdown()


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


async def first_attempt_fails(write_config: WriteConfig, path: Path, sink: Sink) -> Event:
    """Publish one event whose first attempt gets a 503, then stop the engine."""
    sink.script(Reply(503))
    async with engine_on(sqlite_config(write_config, path, sink)) as engine:
        event = await publish_direct(engine, "temp", "21.5")
        await wait_until(lambda: bool(rows(path, "SELECT 1 FROM attempts")))
    return event


async def test_a_delivery_waiting_for_its_retry_is_resent_after_a_restart_with_its_id(
    tmp_path: Path, write_config: WriteConfig, nursery: trio.Nursery
) -> None:
    sink = Sink(Reply(200, b"thanks"))
    await nursery.start(sink.serve)
    path = tmp_path / "j.db"
    await first_attempt_fails(write_config, path, sink)
    [(state, attempts)] = rows(path, "SELECT state, attempts FROM deliveries")
    assert (state, attempts) == ("waiting", 1)
    # Its retry is due an hour from now: a restart keeps it waiting...
    async with engine_on(sqlite_config(write_config, path, sink)) as engine:
        [destination] = engine.dispatcher.destinations
        assert destination.depth == 1 and len(sink.requests) == 1
    # ...and once the time has come, it goes at once, under the same id.
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE deliveries SET due = 0")
    async with engine_on(sqlite_config(write_config, path, sink)) as engine:
        await wait_until(lambda: len(sink.requests) == 2)
        await wait_until(lambda: rows(path, "SELECT state FROM deliveries") == [("delivered",)])
    first, second = (r.header(b"webhook-id") for r in sink.requests)
    assert first == second is not None
    assert rows(path, "SELECT number, status FROM attempts ORDER BY number") == [(1, 503), (2, 200)]
    names = [e for (e,) in rows(path, "SELECT name FROM events ORDER BY id")]
    assert names.count("hook-response/temp/0") == 1


async def test_a_delivery_for_a_hook_no_longer_configured_becomes_a_dead_letter(
    tmp_path: Path, write_config: WriteConfig, nursery: trio.Nursery
) -> None:
    sink = Sink(Reply(200))
    await nursery.start(sink.serve)
    path = tmp_path / "j.db"
    await first_attempt_fails(write_config, path, sink)
    other = f'\n[[hooks]]\nname = "other"\nevent = "x"\nurl = "{sink.url}/x"\n'
    async with engine_on(sqlite_config(write_config, path, sink, other)):
        await wait_until(lambda: bool(rows(path, "SELECT 1 FROM dead_letters")))
    assert rows(path, "SELECT hook, reason FROM dead_letters") == [
        ("main", "hook 'main' is no longer configured")
    ]
    assert len(sink.requests) == 1


async def test_recovery_keeps_an_ordered_hooks_order(
    tmp_path: Path, write_config: WriteConfig, nursery: trio.Nursery
) -> None:
    sink = Sink(Reply(200))
    await nursery.start(sink.serve)
    path = tmp_path / "j.db"
    ordered = (
        f'\n[[hooks]]\nname = "main"\nevent = "temp"\nurl = "{sink.url}/hook"\n'
        'ordered = true\nmax_in_flight = 4\nbody = "{{PARTICLE_EVENT_VALUE}}"\n'
    )
    config = sqlite_config(write_config, path, sink, ordered)
    # Stored but never attempted: the engine stops before the dispatcher sees them.
    journal = SqliteJournal(path, HookSet(config.hooks))
    async with trio.open_nursery() as storing:
        await storing.start(journal.run)
        for i in range(20):
            await journal.append(EventDraft("temp", str(i), 60, False, "2026-11-29T00:00Z", "d1"))
        storing.cancel_scope.cancel()
    await journal.aclose()
    async with engine_on(config):
        await wait_until(lambda: len(sink.requests) == 20)
    assert [r.body for r in sink.requests] == [str(i).encode() for i in range(20)]
