"""Hooks created through the API, as the journals keep them: put, replaced, deleted, listed."""

from __future__ import annotations

import logging
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import TypeVar

import msgpack
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.model import EventDraft, StoredHook, delivery_id, hook_tag
from engine.hooks.router import HookSet
from engine.journal import HookNameTaken, Journal, JournalUnavailable, MemoryJournal
from engine.journal.schema import MIGRATIONS, SCHEMA_VERSION, JournalError, open_database
from engine.journal.sqlite import SqliteJournal
from tests.conftest import WriteConfig

J = TypeVar("J", bound=Journal)


def hook(
    number: int, name: str | None = None, *, url: str = "https://example.com/in"
) -> StoredHook:
    """A stored hook numbered ``number`` (its id), named ``hook-<number>`` unless told."""
    document = f'{{"event": "temp", "url": "{url}", "requestType": "POST"}}'
    return StoredHook(
        f"{number:024x}",
        name or f"hook-{number}",
        document,
        None if number % 2 else 1001,
        f"2026-12-06T17:30:{number % 60:02d}.000Z",
    )


def draft(name: str = "temp") -> EventDraft:
    return EventDraft(name, "21.5", 60, True, "2026-12-06T17:30:00.000Z", "dev1", None)


def sqlite_journal(path: Path, hooks: HookSet | None = None, **options: float) -> SqliteJournal:
    return SqliteJournal(path, hooks or HookSet(()), synchronous="normal", **options)


@asynccontextmanager
async def running(journal: J) -> AsyncIterator[J]:
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        yield journal
        nursery.cancel_scope.cancel()
    await journal.aclose()


@pytest.fixture(params=["memory", "sqlite"])
async def journal(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Journal]:
    opened = MemoryJournal() if request.param == "memory" else sqlite_journal(tmp_path / "j.db")
    async with running(opened):
        yield opened


def query(path: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


# both journals


async def test_a_put_keeps_a_hook_and_a_put_with_its_id_replaces_it_in_its_place(
    journal: Journal,
) -> None:
    assert journal.stored_hooks() == []
    first, second, third = hook(1), hook(2), hook(3)
    for each in (first, second, third):
        await journal.put_hook(each)
    assert journal.stored_hooks() == [first, second, third]
    renamed = StoredHook(second.id, "renamed", '{"url": "https://other"}', 7, second.created_at)
    await journal.put_hook(renamed)
    assert journal.stored_hooks() == [first, renamed, third]


async def test_a_delete_says_whether_the_hook_was_there(journal: Journal) -> None:
    for number in (1, 2, 3):
        await journal.put_hook(hook(number))
    assert await journal.delete_hook(hook(2).id) is True
    assert await journal.delete_hook(hook(2).id) is False
    assert await journal.delete_hook("f" * 24) is False
    assert journal.stored_hooks() == [hook(1), hook(3)]
    await journal.put_hook(hook(2))  # created again: the newest
    assert journal.stored_hooks() == [hook(1), hook(3), hook(2)]


async def test_a_name_another_id_holds_is_refused_and_nothing_changes(journal: Journal) -> None:
    await journal.put_hook(hook(1, "temps"))
    await journal.put_hook(hook(2, "other"))
    with pytest.raises(HookNameTaken) as refused:
        await journal.put_hook(hook(3, "temps"))
    assert str(refused.value) == f'the hook name "temps" is taken by the stored hook {hook(1).id}'
    assert (refused.value.name, refused.value.holder) == ("temps", hook(1).id)
    with pytest.raises(HookNameTaken, match=hook(2).id):
        await journal.put_hook(hook(1, "other"))  # a replace may not take a name either
    assert journal.stored_hooks() == [hook(1, "temps"), hook(2, "other")]
    await journal.put_hook(hook(1, "temps", url="https://example.com/moved"))  # its own name
    assert await journal.delete_hook(hook(1).id)
    await journal.put_hook(hook(3, "temps"))  # free again
    assert [h.id for h in journal.stored_hooks()] == [hook(2).id, hook(3).id]


# SQLite: durability, group commit, failures, retention


async def test_stored_hooks_survive_a_restart_and_are_there_before_the_journal_runs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.db"
    async with running(sqlite_journal(path)) as journal:
        for number in (5, 1, 3):
            await journal.put_hook(hook(number))
        await journal.put_hook(hook(1, "renamed"))
        await journal.delete_hook(hook(5).id)
    reopened = sqlite_journal(path)  # opened, not run: what the daemon compiles at start
    assert reopened.stored_hooks() == [hook(1, "renamed"), hook(3)]
    await reopened.aclose()
    assert query(path, "SELECT id, name, product FROM api_hooks ORDER BY seq") == [
        (hook(1).id, "renamed", None),
        (hook(3).id, "hook-3", None),
    ]


async def test_puts_share_a_commit_with_appends_and_a_refused_name_fails_none_of_them(
    tmp_path: Path,
) -> None:
    async with running(sqlite_journal(tmp_path / "j.db", commit_interval=0.1)) as journal:
        await journal.put_hook(hook(1, "temps"))  # alone after a quiet spell: at once
        assert journal.commits == 1
        await journal.put_hook(hook(3))
        commits, writes = journal.commits, journal.writes
        refused: list[HookNameTaken] = []

        async def put_taken() -> None:
            with pytest.raises(HookNameTaken) as caught:
                await journal.put_hook(hook(9, "temps"))
            refused.append(caught.value)

        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            # Within the interval after the last commit: they wait for the next one, together.
            nursery.start_soon(journal.append, draft())
            nursery.start_soon(put_taken)
            nursery.start_soon(journal.put_hook, hook(2))
            nursery.start_soon(journal.delete_hook, hook(3).id)
        assert time.monotonic() - started < 1.0
        assert (journal.commits, journal.writes) == (commits + 1, writes + 4)
        assert [taken.holder for taken in refused] == [hook(1).id]
        assert journal.last_id() == 1
        assert journal.stored_hooks() == [hook(1, "temps"), hook(2)]


async def test_a_put_the_journal_cannot_write_raises_unavailable_and_changes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.db"
    big = StoredHook("a" * 24, "big", "x" * 2_000_000, None, "2026-12-06T17:30:00.000Z")
    async with running(sqlite_journal(path)) as journal:
        await journal.put_hook(hook(1))
        pages = await journal.run_in_writer(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
        await journal.run_in_writer(lambda conn: conn.execute(f"PRAGMA max_page_count={pages}"))
        with pytest.raises(JournalUnavailable, match="database or disk is full"):
            await journal.put_hook(big)
        assert journal.stored_hooks() == [hook(1)]
        await journal.run_in_writer(lambda conn: conn.execute("PRAGMA max_page_count=1000000"))
        await journal.put_hook(hook(2))  # writing works again: so do puts
        assert journal.stored_hooks() == [hook(1), hook(2)]
    assert query(path, "SELECT name FROM api_hooks ORDER BY seq") == [("hook-1",), ("hook-2",)]
    stopped = sqlite_journal(path)
    with pytest.raises(JournalUnavailable, match="the journal is not running"):
        await stopped.put_hook(hook(3))
    with pytest.raises(JournalUnavailable, match="the journal is not running"):
        await stopped.delete_hook(hook(1).id)
    assert stopped.stored_hooks() == [hook(1), hook(2)]
    await stopped.aclose()


async def test_retention_never_prunes_stored_hooks(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with running(sqlite_journal(path, retention=3600)) as journal:
        await journal.put_hook(hook(1))
        await journal.append_many([draft() for _ in range(3)])
        await journal.run_in_writer(lambda conn: conn.execute("UPDATE events SET at = at - 7200"))
        assert await journal.prune() == 3
        assert journal.stored_hooks() == [hook(1)]
    assert query(path, "SELECT count(*) FROM api_hooks") == [(1,)]


async def test_a_stored_hooks_410_mark_is_kept_until_it_is_in_the_hook_set(
    tmp_path: Path, write_config: WriteConfig
) -> None:
    path = tmp_path / "j.db"
    async with running(sqlite_journal(path)) as journal:
        await journal.put_hook(hook(1, "api-hook"))
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.executemany(
            "INSERT INTO disabled_hooks VALUES (?, 'https://example.com/in', 1.0, '410 Gone')",
            [("api-hook",), ("gone",)],
        )
    reopened = sqlite_journal(path)  # not yet in its hook set: kept, not applied
    assert query(path, "SELECT hook FROM disabled_hooks") == [("api-hook",)]
    await reopened.aclose()
    config = write_config(
        '[[hooks]]\nname = "api-hook"\nevent = "temp"\nurl = "https://example.com/in"\n'
    )
    compiled = HookSet(config.hooks)  # as the daemon's hook set once it compiled the hook
    reopened = sqlite_journal(path, compiled)
    reopened.apply_disabled_hooks()  # again: nothing more happens
    assert compiled.is_disabled("api-hook")
    await reopened.aclose()


# schema version 3


def version_2_journal(path: Path) -> None:
    """A journal as version 2 wrote it: an event routed to a hook, its delivery still owed."""
    open_database(path, migrations=MIGRATIONS[:2]).close()
    body = msgpack.packb(["21.5", 60, True, "2026-12-06T17:30:00.000Z"])
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("INSERT INTO meta VALUES ('epoch', '0badcafe')")
        conn.execute(
            "INSERT INTO events VALUES (1, 1000.0, 'temp', 'dev1', NULL, ?, ?)",
            (body, msgpack.packb(["temps"])),
        )


async def test_a_version_2_journal_is_migrated_in_place_once_keeping_its_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "j.db"
    version_2_journal(path)
    with caplog.at_level(logging.INFO, logger="hookwire.journal"):
        async with running(sqlite_journal(path)) as journal:
            assert journal.stored_hooks() == []
            [event] = await journal.events_after(0, 10)
            assert (event.id, event.name, event.data) == (1, "temp", "21.5")
            [owed] = await journal.recover()
            assert owed.id == delivery_id("0badcafe", 1, hook_tag("temps"))
            await journal.put_hook(hook(1))
        async with running(sqlite_journal(path)) as journal:
            assert journal.stored_hooks() == [hook(1)]
    migrated = [r.getMessage() for r in caplog.records if "migrated" in r.getMessage()]
    assert migrated == [f"{path}: journal schema migrated from version 2 to {SCHEMA_VERSION}"]
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_a_failed_migration_from_version_2_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    version_2_journal(path)
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE api_hooks (x)")  # in the way of the migration
    with pytest.raises(JournalError, match="from version 2 to 3 failed"):
        open_database(path)
    assert query(path, "PRAGMA user_version") == [(2,)]
    assert query(path, "SELECT count(*) FROM events") == [(1,)]


# against a plain dict, over random puts and deletes

Action = tuple[str, int, str, int] | tuple[str, int]
"""("put", number, name, url version) or ("delete", number)."""

PUT = st.tuples(st.just("put"), st.integers(1, 6), st.sampled_from("abcd"), st.integers(0, 3))
DELETE = st.tuples(st.just("delete"), st.integers(1, 6))
SESSIONS = st.lists(st.lists(st.one_of(PUT, DELETE), max_size=10), min_size=1, max_size=3)
"""Actions in sessions: the SqliteJournal is opened anew for each."""


def put_of(action: tuple[str, int, str, int]) -> StoredHook:
    _, number, name, version = action
    return hook(number, name, url=f"https://example.com/{version}")


class Model:
    """What the journals should do: a dict by id, in creation order."""

    def __init__(self) -> None:
        self.hooks: dict[str, StoredHook] = {}

    def apply(self, action: Action) -> object:
        """The outcome of ``action``: a delete's bool, or a put's refusing id (None: kept)."""
        if action[0] == "delete":
            return self.hooks.pop(hook(action[1]).id, None) is not None
        stored = put_of(action)
        for held in self.hooks.values():
            if held.name == stored.name and held.id != stored.id:
                return held.id
        self.hooks[stored.id] = stored
        return None


async def apply(journal: Journal, action: Action) -> object:
    """The outcome of ``action`` on ``journal``, as ``Model.apply`` gives it."""
    if action[0] == "delete":
        return await journal.delete_hook(hook(action[1]).id)
    try:
        await journal.put_hook(put_of(action))
    except HookNameTaken as refused:
        return refused.holder
    return None


async def follow(path: Path, sessions: list[list[Action]]) -> None:
    """Run ``sessions`` on a MemoryJournal and on a SqliteJournal opened anew for each, and
    compare both with the model after every action."""
    model, memory = Model(), MemoryJournal()
    for session in sessions:
        sqlite = sqlite_journal(path)
        assert sqlite.stored_hooks() == list(model.hooks.values())
        async with running(sqlite):
            for action in session:
                expected = model.apply(action)
                assert await apply(memory, action) == expected
                assert await apply(sqlite, action) == expected
                assert sqlite.stored_hooks() == memory.stored_hooks() == list(model.hooks.values())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sessions=SESSIONS)
def test_both_journals_keep_what_a_dict_would_across_reopens(sessions: list[list[Action]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        trio.run(follow, Path(folder) / "j.db", sessions)
