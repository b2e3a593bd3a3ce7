"""Which rows a delivery costs, and finding the unsettled ones again (engine.journal._deliveries).

A delivery has a row only once it waited, died or was replayed; the others are derived from
the hooks stored with their event, and recovery looks at the events from the floor up.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path

import msgpack
import pytest
import trio

from engine.config.settings import Config
from engine.core.model import Attempt, Delivery, delivery_id, hook_tag
from engine.hooks.router import HookSet
from engine.journal import admin
from engine.journal import sqlite as sqlite_journal
from engine.journal.admin import DeadLetterQuery
from engine.journal.schema import MIGRATIONS, SCHEMA_VERSION, open_database
from engine.journal.sqlite import SqliteJournal
from tests.conftest import WriteConfig
from tests.journal.kit import HOOKS, draft, outcome


@pytest.fixture
def config(write_config: WriteConfig) -> Config:
    return write_config(HOOKS)


@asynccontextmanager
async def running(
    path: Path, config: Config, retention: float = 7 * 86400.0
) -> AsyncIterator[SqliteJournal]:
    journal = SqliteJournal(path, HookSet(config.hooks), retention=retention)
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        yield journal
        nursery.cancel_scope.cancel()
    await journal.aclose()


def query(path: Path, sql: str, *parameters: object) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql, parameters).fetchall()


async def test_a_delivery_that_succeeds_at_once_costs_its_attempt_row_only(
    tmp_path: Path, config: Config
) -> None:
    path = tmp_path / "j.db"
    async with running(path, config) as journal:
        event = await journal.append(draft("temp"))  # to "temps" and "everything"
        assert query(path, "SELECT hooks FROM events") == [
            (msgpack.packb(["temps", "everything"]),)
        ]
        commits = journal.commits
        await journal.settle(
            [outcome(journal, event, "temps", "delivered")], [draft("hook-sent/temp")]
        )
        assert [d.hook for d in await journal.recover()] == ["everything"]
        await journal.record_attempts([outcome(journal, event, "everything", "delivered")])
        assert await journal.recover() == []
        assert journal.commits == commits + 4  # the floor moved within these, none more
    assert query(path, "SELECT count(*) FROM deliveries") == [(0,)]
    assert query(path, "SELECT count(*) FROM attempts") == [(2,)]
    assert query(path, "SELECT hooks FROM events WHERE name = 'hook-sent/temp'") == [(None,)]
    assert query(path, "SELECT value FROM meta WHERE key = 'floor'") == [("3",)]


async def test_a_retried_delivery_has_a_row_until_it_is_delivered(
    tmp_path: Path, config: Config
) -> None:
    path = tmp_path / "j.db"
    async with running(path, config) as journal:
        event = await journal.append(draft("tx"))  # to "everything"
        await journal.record_attempts([outcome(journal, event, "everything", "waiting")])
        assert query(path, "SELECT state, attempts FROM deliveries") == [("waiting", 1)]
        [waiting] = await journal.recover()
        assert (waiting.attempts, waiting.recorded) == (1, 1)
        await journal.record_attempts([outcome(journal, event, "everything", "waiting", 2)])
        await journal.record_attempts([outcome(journal, event, "everything", "delivered", 3)])
        assert await journal.recover() == []
    assert query(path, "SELECT state, attempts FROM deliveries") == [("delivered", 3)]


async def test_recovery_finds_every_unsettled_delivery_from_the_floor_up(
    tmp_path: Path, config: Config
) -> None:
    path = tmp_path / "j.db"
    async with running(path, config) as journal:
        done, waiting, half = await journal.append_many([draft(), draft("tx"), draft()])
        await journal.record_attempts(
            [
                outcome(journal, done, "temps", "delivered"),
                outcome(journal, done, "everything", "delivered"),
                outcome(journal, waiting, "everything", "waiting"),
                outcome(journal, half, "everything", "delivered"),
            ]
        )
        epoch = journal.epoch
    # What a crash leaves is what the last commit left: open the file again.
    assert query(path, "SELECT value FROM meta WHERE key = 'floor'") == [(str(half.id),)]
    with closing(sqlite3.connect(path)) as conn, conn:
        # A hook nobody delivered to, below the floor: recovery never looks there.
        conn.execute(
            "UPDATE events SET hooks = ? WHERE id = ?", (msgpack.packb(["ghost"]), done.id)
        )
    async with running(path, config) as journal:
        found = await journal.recover()
    assert [(d.event, d.hook, d.attempts) for d in found] == [
        (waiting, "everything", 1),
        (half, "temps", 0),
    ]
    assert found[1].id == delivery_id(epoch, half.id, hook_tag("temps"))


async def test_the_floor_is_stored_every_few_commits_and_never_ahead(
    tmp_path: Path, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_journal, "FLOOR_EVERY", 4)
    path = tmp_path / "j.db"
    stored: list[int] = []
    async with running(path, config) as journal:
        for _ in range(12):
            event = await journal.append(draft("tx"))
            await journal.record_attempts([outcome(journal, event, "everything", "delivered")])
            [(floor,)] = query(path, "SELECT value FROM meta WHERE key = 'floor'")
            assert isinstance(floor, str) and int(floor) <= event.id + 1
            stored.append(int(floor))
    assert len(set(stored)) == 6  # 24 commits: the first change, then one every 4 commits
    assert stored[-1] > stored[0]


async def test_retention_keeps_an_event_owed_a_delivery_with_the_attempts_of_the_others(
    tmp_path: Path, config: Config
) -> None:
    path = tmp_path / "j.db"
    async with running(path, config, retention=3600) as journal:
        event = await journal.append(draft())
        others = await journal.append_many([draft("nothing") for _ in range(3)])
        await journal.record_attempts([outcome(journal, event, "everything", "delivered")])
        await journal.run_in_writer(lambda conn: conn.execute("UPDATE events SET at = at - 7200"))
        assert await journal.prune() == len(others)
        # Had its attempt gone, "everything" would look pending and be sent again.
        assert [d.hook for d in await journal.recover()] == ["temps"]
        await journal.record_attempts([outcome(journal, event, "temps", "delivered")])
        assert await journal.prune() == 1
    assert query(path, "SELECT count(*) FROM attempts") == [(0,)]


# a journal of schema version 1: a row for every delivery


def version_1_journal(path: Path, epoch: str = "0badcafe") -> dict[str, str]:
    """A journal as version 1 wrote it: its deliveries in every state; returns their ids."""
    open_database(path, migrations=MIGRATIONS[:1]).close()
    body = msgpack.packb(["21.5", 60, True, "2026-11-29T00:00:00.000Z"])
    ids = {
        state: delivery_id(epoch, event_id, hook_tag("temps"))
        for event_id, state in enumerate(["delivered", "dead", "waiting", "replay", "pending"], 1)
    }
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("INSERT INTO meta VALUES ('epoch', ?)", (epoch,))
        for event_id, (state, key) in enumerate(ids.items(), 1):
            conn.execute(
                "INSERT INTO events VALUES (?, ?, 'temp', 'dev1', NULL, ?)",
                (event_id, 1000.0 + event_id, body),
            )
            attempts = 0 if state in ("pending", "replay") else 1
            conn.execute(
                "INSERT INTO deliveries VALUES (?, ?, 'temps', ?, ?, ?, ?)",
                (event_id, key, state, attempts, 2000.0 + event_id, ""),
            )
            if attempts:
                conn.execute(
                    "INSERT INTO attempts VALUES (?, ?, 1, ?, 503, 0.1, 'error status 503', x'')",
                    (event_id, key, 1500.0),
                )
        conn.execute(
            "INSERT INTO dead_letters VALUES (2, ?, 'temps', 1600.0, 1, 'error status 503')",
            (ids["dead"],),
        )
    return ids


async def test_a_version_1_journal_is_migrated_in_place_once_and_its_rows_stay_valid(
    tmp_path: Path, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "j.db"
    ids = version_1_journal(path)
    with caplog.at_level(logging.INFO, logger="hookwire.journal"):
        async with running(path, config) as journal:
            found = await journal.recover()
            assert [(d.id, d.attempts, d.due, d.recorded) for d in found] == [
                (ids["waiting"], 1, 2003.0, 1),
                (ids["replay"], 0, 2004.0, 0),
                (ids["pending"], 0, 2005.0, 0),
            ]
            [letter] = await journal.list_dead_letters(DeadLetterQuery())
            assert letter.id == ids["dead"]
            pending = found[2]
            delivery = Delivery(pending.id, pending.event, "temps", attempts=1, state="delivered")
            attempt = Attempt(pending.id, 1, 200, 0.01, "200", b"", "delivered")
            await journal.record_attempts([(delivery, attempt)])
            fresh = await journal.append(draft("tx"))
        async with running(path, config) as journal:
            assert [d.id for d in await journal.recover()] == [
                ids["waiting"],
                ids["replay"],
                delivery_id("0badcafe", fresh.id, hook_tag("everything")),
            ]
    migrated = [r.getMessage() for r in caplog.records if "migrated" in r.getMessage()]
    assert migrated == [f"{path}: journal schema migrated from version 1 to {SCHEMA_VERSION}"]
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert query(path, "SELECT state FROM deliveries WHERE id = ?", ids["pending"]) == [
        ("delivered",)
    ]
    assert query(path, "SELECT count(*) FROM deliveries") == [(5,)]  # none for the new event
    with closing(open_database(path, create=False)) as conn:
        record = admin.show_delivery(conn, ids["dead"])
        assert record is not None and record.state == "dead" and record.dead_at == 1600.0


def test_a_failed_migration_from_version_1_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    version_1_journal(path)
    before = query(path, "SELECT * FROM deliveries ORDER BY event_id")
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("INSERT INTO meta VALUES ('floor', 'in the way')")  # the insert will fail
    with pytest.raises(Exception, match="from version 1 to 2 failed"):
        open_database(path)
    assert query(path, "PRAGMA user_version") == [(1,)]
    assert "hooks" not in [row[1] for row in query(path, "PRAGMA table_info(events)")]
    assert query(path, "SELECT * FROM deliveries ORDER BY event_id") == before
