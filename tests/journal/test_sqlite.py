"""The SQLite journal on real files: group commit, recovery, faults, retention, migrations."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from engine.config.settings import Config
from engine.core.model import Attempt, Delivery, delivery_id, hook_tag
from engine.hooks.router import HookSet
from engine.journal import JournalUnavailable
from engine.journal.schema import MIGRATIONS, SCHEMA_VERSION, JournalError, open_database
from engine.journal.sqlite import STOP_TIMEOUT, SqliteJournal, insert_rows
from tests.conftest import WriteConfig
from tests.helpers import wait_until
from tests.journal.kit import HOOKS, draft


@pytest.fixture
def hooks_config(write_config: WriteConfig) -> Config:
    return write_config(HOOKS)


OpenJournal = Callable[..., "AsyncIterator[SqliteJournal]"]


@asynccontextmanager
async def running(
    path: Path, config: Config, *, retention: float = 7 * 86400.0, commit_interval: float = 0.0
) -> AsyncIterator[SqliteJournal]:
    journal = SqliteJournal(
        path, HookSet(config.hooks), retention=retention, commit_interval=commit_interval
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        yield journal
        nursery.cancel_scope.cancel()
    await journal.aclose()


async def test_appends_are_numbered_stored_and_kept_across_a_restart(
    tmp_path: Path, hooks_config: Config
) -> None:
    path = tmp_path / "j.db"
    async with running(path, hooks_config) as journal:
        first = await journal.append(draft(data="a"))
        more = await journal.append_many([draft(data="b"), draft("other", "c")])
        epoch = journal.epoch
        assert [first.id, *(e.id for e in more)] == [1, 2, 3]
        assert journal.last_id() == 3
    async with running(path, hooks_config) as journal:
        assert journal.epoch == epoch
        assert journal.last_id() == 3
        assert journal.oldest_id() == 1
        assert [e.data for e in await journal.events_after(1, 10)] == ["b", "c"]
        assert (await journal.append(draft())).id == 4
        stored = (await journal.events_after(0, 1))[0]
        assert stored == first


async def test_concurrent_appends_share_commits(tmp_path: Path, hooks_config: Config) -> None:
    async with running(tmp_path / "j.db", hooks_config) as journal:
        ids: list[int] = []

        async def publish(i: int) -> None:
            ids.append((await journal.append(draft(data=str(i)))).id)

        before = journal.commits
        async with trio.open_nursery() as nursery:
            for i in range(300):
                nursery.start_soon(publish, i)
        assert sorted(ids) == list(range(1, 301))
        assert journal.commits - before < 100  # one fsync serves many callers


async def test_appends_and_outcomes_of_the_same_moment_share_one_commit(
    tmp_path: Path, hooks_config: Config
) -> None:
    async with running(tmp_path / "j.db", hooks_config, commit_interval=0.1) as journal:
        event = await journal.append(draft("temp"))  # alone after a quiet spell: at once
        assert (journal.commits, journal.events_stored) == (1, 1)
        [stored, *_] = await journal.recover()
        ok = Delivery(stored.id, event, stored.hook, attempts=1, state="delivered")
        attempt = Attempt(ok.id, 1, 200, 0.01, "200", b"", "delivered")
        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            # Within the interval after the last commit: they wait for the next one, together.
            nursery.start_soon(journal.append, draft("temp"))
            nursery.start_soon(journal.settle, [(ok, attempt)], [draft("hook-sent/temp")])
            nursery.start_soon(journal.append_many, [draft("x"), draft("y")])
        assert time.monotonic() - started < 1.0
        assert journal.commits == 3  # the append, the recovery's read, then one for all three
        assert (journal.writes, journal.events_stored) == (5, 5)


async def test_appends_queued_nowait_keep_their_order_and_share_the_next_commit(
    tmp_path: Path, hooks_config: Config
) -> None:
    async with running(tmp_path / "j.db", hooks_config, commit_interval=0.1) as journal:
        await journal.append(draft(data="first"))  # alone after a quiet spell: at once
        commits = journal.commits
        pending = [journal.append_nowait(draft(data=str(i))) for i in range(5)]
        assert repr(pending[0]) == "<pending append queued>"
        last = await pending[-1].wait()
        assert repr(pending[0]) == "<pending append stored>"
        assert journal.commits == commits + 1  # the five, together
        assert [(await appended.wait()).id for appended in pending] == [2, 3, 4, 5, 6]
        assert last.id == journal.last_id() == 6
        assert [e.data for e in await journal.events_after(1, 10)] == ["0", "1", "2", "3", "4"]
        # Stored, and last_id moves, whether or not anyone waits for it.
        journal.append_nowait(draft(data="never awaited"))
        await wait_until(lambda: journal.last_id() == 7)
    journal = SqliteJournal(tmp_path / "j.db", HookSet(hooks_config.hooks))
    refused = journal.append_nowait(draft())  # the journal is not running
    with pytest.raises(JournalUnavailable, match="the journal is not running"):
        await refused.wait()
    assert repr(refused) == "<pending append failed>"


async def test_a_stop_commits_what_waits_for_the_interval_at_once(
    tmp_path: Path, hooks_config: Config
) -> None:
    path = tmp_path / "j.db"
    journal = SqliteJournal(path, HookSet(hooks_config.hooks), commit_interval=3600.0)
    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        await journal.append(draft(data="first"))  # after a quiet spell: at once
        nursery.start_soon(journal.append, draft(data="waits an hour"))
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    await journal.aclose()
    assert time.monotonic() - started < STOP_TIMEOUT / 2
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM events").fetchone() == (2,)


def test_a_negative_commit_interval_is_refused(tmp_path: Path, hooks_config: Config) -> None:
    with pytest.raises(ValueError, match="commit_interval must be 0 or more"):
        SqliteJournal(tmp_path / "j.db", HookSet(hooks_config.hooks), commit_interval=-0.001)


async def test_an_event_and_its_deliveries_are_written_together(
    tmp_path: Path, hooks_config: Config
) -> None:
    path = tmp_path / "j.db"
    async with running(path, hooks_config) as journal:
        event = await journal.append(draft("temp"))
        await journal.append(draft("hook-sent/temp"))  # the engine's own: no deliveries
        await journal.append(draft("x"))  # matches no hook
        recovered = await journal.recover()
    ids = {d.hook: d.id for d in recovered}
    assert ids == {
        "temps": delivery_id(journal.epoch, event.id, hook_tag("temps")),
        "everything": delivery_id(journal.epoch, event.id, hook_tag("everything")),
    }
    assert all(d.event == event and d.attempts == 0 for d in recovered)


async def test_attempts_settle_deliveries_and_the_dead_become_dead_letters(
    tmp_path: Path, hooks_config: Config
) -> None:
    path = tmp_path / "j.db"
    async with running(path, hooks_config) as journal:
        event = await journal.append(draft("temp"))
        found = {d.hook: d for d in await journal.recover()}
        temps, everything = found["temps"], found["everything"]
        ok = Delivery(temps.id, event, "temps", attempts=1, state="delivered")
        waiting = Delivery(everything.id, event, "everything", attempts=1, state="waiting")
        waiting.due = trio.current_time() + 300
        await journal.record_attempts(
            [
                (ok, Attempt(ok.id, 1, 200, 0.01, "200", b"{}", "delivered")),
                (waiting, Attempt(waiting.id, 1, 503, 0.02, "error status 503", b"", "waiting")),
            ]
        )
        [left] = await journal.recover()
        assert left.id == everything.id and left.attempts == 1
        assert left.due > trio.current_time() and left.due > 1e9  # unix time, ~5 min ahead
        waiting.attempts = 2
        waiting.state = "dead"
        await journal.record_attempts(
            [(waiting, Attempt(waiting.id, 2, 400, 0.01, "error status 400", b"no", "dead"))]
        )
        assert await journal.recover() == []
    conn = sqlite3.connect(path)
    assert conn.execute(
        "SELECT delivery_id, hook, attempts, reason FROM dead_letters"
    ).fetchall() == [(everything.id, "everything", 2, "error status 400")]
    assert conn.execute("SELECT count(*) FROM attempts").fetchone() == (3,)


async def test_settle_keeps_attempts_and_their_hook_events_in_one_commit_or_neither(
    tmp_path: Path, hooks_config: Config
) -> None:
    path = tmp_path / "j.db"
    async with running(path, hooks_config) as journal:
        event = await journal.append(draft("temp"))
        found = {d.hook: d for d in await journal.recover()}
        ok = Delivery(found["temps"].id, event, "temps", attempts=1, state="delivered")
        attempt = Attempt(ok.id, 1, 200, 0.01, "200", b"{}", "delivered")
        answer = draft("hook-response/temp/0", data="{}")
        pages = await journal.run_in_writer(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
        await journal.run_in_writer(lambda conn: conn.execute(f"PRAGMA max_page_count={pages}"))
        with pytest.raises(JournalUnavailable, match="database or disk is full"):
            await journal.settle([(ok, attempt)], [answer] * 20 + [draft(data="x" * 60_000)])
        assert len(await journal.recover()) == 2  # the attempt went with the refused events
        await journal.run_in_writer(lambda conn: conn.execute("PRAGMA max_page_count=1000000"))
        commits = journal.commits
        [stored] = await journal.settle([(ok, attempt)], [answer], to_devices=["dev1"])
        assert journal.commits == commits + 1
        assert stored.id == event.id + 1 and stored.name == "hook-response/temp/0"
        assert [d.hook for d in await journal.recover()] == ["everything"]
        assert journal.outbox_depth == 1
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM attempts").fetchone() == (1,)


async def test_a_stop_lets_queued_work_commit_in_real_time_even_under_a_mock_clock(
    tmp_path: Path, hooks_config: Config, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "j.db"
    journal = SqliteJournal(path, HookSet(hooks_config.hooks))
    started = threading.Event()

    def slow(conn: sqlite3.Connection) -> None:
        started.set()
        time.sleep(0.3)  # real time, while trio's clock may jump ahead
        conn.execute("INSERT INTO meta VALUES ('slow', 'committed')")

    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        nursery.start_soon(journal.run_in_writer, slow)
        await trio.to_thread.run_sync(started.wait)
        nursery.cancel_scope.cancel()
    await journal.aclose()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'slow'").fetchone() == ("committed",)


async def test_replays_asked_by_another_connection_are_taken_once(
    tmp_path: Path, hooks_config: Config
) -> None:
    path = tmp_path / "j.db"
    async with running(path, hooks_config) as journal:
        event = await journal.append(draft("tx"))  # one delivery, to "everything"
        assert len(await journal.take_replays()) == 0
        # A delivery has a row once it died (or waited, or was replayed): give it one.
        [stored] = await journal.recover()
        dead = Delivery(stored.id, event, stored.hook, attempts=1, state="dead")
        await journal.record_attempts([(dead, Attempt(dead.id, 1, 400, 0.01, "400", b"", "dead"))])
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("UPDATE deliveries SET state = 'replay'")
        other.close()
        [replayed] = await journal.take_replays()
        assert replayed.hook == "everything"
        assert await journal.take_replays() == []


async def test_a_disabled_hook_stays_disabled_until_its_url_changes(
    tmp_path: Path, write_config: WriteConfig
) -> None:
    path = tmp_path / "j.db"
    config = write_config(HOOKS)
    async with running(path, config) as journal:
        await journal.disable_hook("temps", "410 Gone")
    again = HookSet(config.hooks)
    SqliteJournal(path, again).__repr__()
    assert again.is_disabled("temps") and not again.is_disabled("everything")
    moved = write_config(HOOKS.replace("127.0.0.1:9/t", "127.0.0.1:9/new"))
    router = HookSet(moved.hooks)
    SqliteJournal(path, router)
    assert not router.is_disabled("temps")
    assert not HookSet(config.hooks).is_disabled("temps")


async def test_a_full_disk_refuses_appends_then_recovers_by_itself(
    tmp_path: Path, hooks_config: Config
) -> None:
    async with running(tmp_path / "j.db", hooks_config) as journal:
        await journal.append(draft())
        pages = await journal.run_in_writer(
            lambda conn: conn.execute("PRAGMA page_count").fetchone()[0]
        )
        await journal.run_in_writer(lambda conn: conn.execute(f"PRAGMA max_page_count={pages}"))
        big = "x" * 60_000
        with pytest.raises(JournalUnavailable, match="database or disk is full"):
            await journal.append_many([draft(data=big) for _ in range(20)])
        assert journal.last_id() == 1
        await journal.run_in_writer(lambda conn: conn.execute("PRAGMA max_page_count=1000000"))
        after = await journal.append(draft())
        assert after.id == 2  # no id was used by the refused batch


async def test_publishing_while_the_disk_is_full_answers_503(
    tmp_path: Path, write_config: WriteConfig, nursery: trio.Nursery
) -> None:
    import httpx

    from engine.daemon import Engine
    from tests.conftest import PUBLISHER

    config = write_config(
        replace={'backend = "memory"': f'backend = "sqlite"\npath = "{tmp_path / "j.db"}"'}
    )
    engine = Engine(config)
    [(host, port), *_] = await nursery.start(engine.run)
    journal = engine.journal
    assert isinstance(journal, SqliteJournal)
    pages = await journal.run_in_writer(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
    await journal.run_in_writer(lambda conn: conn.execute(f"PRAGMA max_page_count={pages}"))
    auth = {"authorization": f"Bearer {PUBLISHER}"}
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}", headers=auth) as client:
        for _ in range(500):  # until a page is needed that may not be had
            full = await client.post("/v1/devices/events", data={"name": "t", "data": "x" * 500})
            if full.status_code != 200:
                break
        assert full.status_code == 503
        assert (
            "event not stored: the journal cannot write: database or disk is full"
            in (full.json()["error"])
        )
        ready = await client.get("/readyz")  # not ready, with the reason
        assert ready.status_code == 503
        assert "the journal cannot write: database or disk is full" in ready.json()["problems"]
        await journal.run_in_writer(lambda conn: conn.execute("PRAGMA max_page_count=1000000"))
        ok = await client.post("/v1/devices/events", data={"name": "t", "data": "x" * 500})
        assert ok.status_code == 200
        assert (await client.get("/readyz")).status_code == 200  # ready again
        metrics = (await client.get("/metrics")).text
    assert "hookwire_journal_commit_failures_total 1.0" in metrics
    assert f"hookwire_journal_last_event_id {float(ok.json()['id'])}" in metrics
    nursery.cancel_scope.cancel()


async def test_retention_prunes_old_events_but_keeps_those_still_owed(
    tmp_path: Path, hooks_config: Config
) -> None:
    async with running(tmp_path / "j.db", hooks_config, retention=3600) as journal:
        owed = await journal.append(draft("temp"))  # two deliveries, never settled
        old = await journal.append_many([draft("nothing") for _ in range(2500)])
        recent = await journal.append(draft("nothing"))
        await journal.run_in_writer(
            lambda conn: conn.execute("UPDATE events SET at = at - 7200 WHERE id < ?", (recent.id,))
        )
        assert await journal.prune() == len(old)
        assert journal.oldest_id() == owed.id
        kept = await journal.events_after(0, 10)
        assert [e.id for e in kept] == [owed.id, recent.id]
        assert len(await journal.recover()) == 2
        assert await journal.prune() == 0


def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    path.write_bytes(b"these are somebody's notes, not a database\n" * 100)
    before = path.read_bytes()
    with pytest.raises(JournalError, match=r"not a SQLite database.*refusing to touch it"):
        open_database(path)
    assert path.read_bytes() == before


def test_another_applications_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (text)")
    conn.commit()
    conn.close()
    with pytest.raises(JournalError, match="not a Hookwire journal"):
        open_database(path)


def test_a_database_from_a_newer_hookwire_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    open_database(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(JournalError, match=f"schema version {SCHEMA_VERSION + 1}.*Upgrade"):
        open_database(path)


def test_migrations_run_forward_in_order(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    open_database(path).close()
    later = (*MIGRATIONS, "ALTER TABLE events ADD COLUMN source TEXT NOT NULL DEFAULT ''")
    conn = open_database(path, migrations=later)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION + 1,)
    assert "source" in [row[1] for row in conn.execute("PRAGMA table_info(events)")]
    conn.close()
    with pytest.raises(JournalError, match="written by a newer Hookwire"):
        open_database(path)


def test_a_failed_migration_names_the_versions_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    open_database(path).close()
    broken = (*MIGRATIONS, "ALTER TABLE nowhere ADD COLUMN x")
    with pytest.raises(
        JournalError, match=f"from version {SCHEMA_VERSION} to {SCHEMA_VERSION + 1}"
    ):
        open_database(path, migrations=broken)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match=r"the folder .*nowhere does not exist"):
        open_database(tmp_path / "nowhere" / "j.db")
    assert not (tmp_path / "nowhere").exists()


def test_a_folder_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root may write anywhere it can open: use a folder no one can create files in.
        with pytest.raises(JournalError, match=r"not writable|cannot open the journal"):
            open_database(Path("/proc/self/hookwire.db"))
        return
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    with pytest.raises(JournalError, match="is not writable by this user"):
        open_database(folder / "j.db")


def test_a_path_that_is_a_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="is a directory"):
        open_database(tmp_path)


async def test_a_replayed_delivery_keeps_its_earlier_attempts(
    tmp_path: Path, hooks_config: Config
) -> None:
    path = tmp_path / "j.db"
    async with running(path, hooks_config) as journal:
        event = await journal.append(draft("tx"))
        [stored] = await journal.recover()
        delivery = Delivery(stored.id, event, stored.hook, attempts=1, state="dead")
        dead = Attempt(delivery.id, 1, 400, 0.01, "error status 400", b"", "dead")
        await journal.record_attempts([(delivery, dead)])
        await journal.run_in_writer(
            lambda conn: conn.execute("UPDATE deliveries SET state = 'replay', attempts = 0")
        )
        journal.ask_replays()
        [replayed] = await journal.take_replays()
        assert (replayed.attempts, replayed.recorded) == (0, 1)
        again = Delivery(
            stored.id, event, stored.hook, attempts=1, state="delivered"
        )  # counted anew
        again.earlier_attempts = replayed.recorded - replayed.attempts
        await journal.record_attempts(
            [(again, Attempt(again.id, 1, 200, 0.01, "200", b"", "delivered"))]
        )
    numbers = sqlite3.connect(path).execute("SELECT number, status FROM attempts").fetchall()
    assert numbers == [(1, 400), (2, 200)]


async def test_committed_events_are_fanned_out_in_id_order_before_appends_return(
    tmp_path: Path, hooks_config: Config
) -> None:
    seen: list[int] = []
    async with running(tmp_path / "j.db", hooks_config) as journal:
        journal.fan_out_to(lambda event: seen.append(event.id))

        async def publish(i: int) -> None:
            event = await journal.append(draft(data=str(i)))
            assert event.id in seen  # fanned out before the publisher hears "stored"

        async with trio.open_nursery() as nursery:
            for i in range(300):
                nursery.start_soon(publish, i)
        await journal.append_keyed([(draft(), "k"), (draft(), "k")])  # the second: a duplicate
    assert seen == list(range(1, 302))


async def test_a_key_is_seen_per_device_within_the_window_and_taken_over_after_it(
    tmp_path: Path, hooks_config: Config
) -> None:
    path = tmp_path / "j.db"
    async with running(path, hooks_config) as journal:
        batch = [(draft(device="d1"), f"k{i}") for i in range(100)]  # two statements' worth
        batch += [(draft(device="d2"), "k0"), (draft(device="d1"), "k0"), (draft(), None)]
        stored = await journal.append_keyed(batch)
        assert [event is not None for event in stored] == [True] * 101 + [False, True]
        assert [event.id for event in stored if event is not None] == list(range(1, 103))
        again = await journal.append_keyed(
            [(draft(device="d1"), "k5"), (draft(device="d1"), "new")]
        )
        assert again[0] is None and again[1] is not None and again[1].id == 103
    with sqlite3.connect(path) as conn:  # k7 was stored long ago: outside the window
        conn.execute("UPDATE ingest_keys SET at = at - 601 WHERE key = 'k7'")
    async with running(path, hooks_config) as journal:
        late = await journal.append_keyed([(draft(device="d1"), "k7"), (draft(device="d1"), "k8")])
        assert late[0] is not None and late[0].id == 104 and late[1] is None
    count = sqlite3.connect(path).execute("SELECT count(*) FROM ingest_keys").fetchone()
    assert count == (102,)


async def test_the_writer_checkpoints_the_wal_itself(tmp_path: Path, hooks_config: Config) -> None:
    path = tmp_path / "j.db"
    async with running(path, hooks_config) as journal:
        start = path.stat().st_size
        for i in range(150):  # one commit each, with time to spare between them
            await journal.append(draft("nothing", data=f"{i:04d}" + "x" * 996))
        assert path.stat().st_size - start > 100_000  # the pages reached the database file


@pytest.mark.parametrize("count", [0, 1, 63, 64, 65, 200])
def test_insert_rows_writes_every_row_in_order(count: int) -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a INTEGER, b TEXT)")
    rows = [(i, f"r{i}") for i in range(count)]
    insert_rows(conn, "INSERT INTO t VALUES", rows)
    assert conn.execute("SELECT a, b FROM t ORDER BY rowid").fetchall() == rows
