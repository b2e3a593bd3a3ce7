"""Dead letters and replay (engine.journal.admin) on real journals filled by SqliteJournal."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from engine.config.settings import Config
from engine.core.model import Attempt, Delivery, Event, EventDraft, delivery_id, hook_tag
from engine.hooks.router import HookSet
from engine.journal import MemoryJournal, admin
from engine.journal.admin import DeadLetterQuery
from engine.journal.schema import open_database
from engine.journal.sqlite import SqliteJournal
from tests.conftest import WriteConfig
from tests.journal import kit

HOOKS = (
    kit.HOOKS
    + """
[[hooks]]
name = "dev2 temps"
event = "temp"
url = "http://127.0.0.1:9/d"
devices = ["dev2"]

[[hooks]]
name = "off"
event = "temp"
url = "http://127.0.0.1:9/off"
disabled = true
"""
)

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z: dead-letter and event times are set to these


def draft(name: str = "temp", data: str = "21.5", device: str = "dev1") -> EventDraft:
    return EventDraft(name, data, 60, False, "2026-11-29T00:00:00.000Z", device, None)


@pytest.fixture
def config(write_config: WriteConfig) -> Config:
    return write_config(HOOKS)


@asynccontextmanager
async def running(path: Path, config: Config) -> AsyncIterator[SqliteJournal]:
    journal = SqliteJournal(path, HookSet(config.hooks))
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        yield journal
        nursery.cancel_scope.cancel()
    await journal.aclose()


async def give_up(
    journal: SqliteJournal, event: Event, hook: str, status: int = 400, at: float | None = None
) -> str:
    """Make ``event``'s delivery to ``hook`` a dead letter after one attempt; returns its id."""
    key = delivery_id(journal.epoch, event.id, hook_tag(hook))
    delivery = Delivery(key, event, hook, attempts=1, state="dead", last_reason=f"status {status}")
    attempt = Attempt(key, 1, status, 0.25, f"error status {status}", b"bad\nrequest", "dead")
    await journal.record_attempts([(delivery, attempt)])
    if at is not None:
        await journal.run_in_writer(
            lambda conn: conn.execute(
                "UPDATE dead_letters SET at = ? WHERE delivery_id = ?", (at, key)
            )
        )
    return key


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "journal.db"


def connect(path: Path) -> sqlite3.Connection:
    """A connection of the CLI's kind: its own, beside the daemon's."""
    return open_database(path, create=False)


async def test_dead_letters_are_listed_newest_first_and_filtered(
    path: Path, config: Config
) -> None:
    async with running(path, config) as journal:
        first, second = await journal.append_many([draft(), draft("tx", device="dev9")])
        old = await give_up(journal, first, "temps", at=T0)
        middle = await give_up(journal, first, "everything", at=T0 + 100)
        new = await give_up(journal, second, "everything", status=404, at=T0 + 200)
    conn = connect(path)

    def ids(**conditions: object) -> list[str]:
        return [d.id for d in admin.list_dead_letters(conn, DeadLetterQuery(**conditions))]  # type: ignore[arg-type]

    assert ids() == [new, middle, old]
    assert ids(hook="everything") == [new, middle]
    assert ids(since=T0 + 100) == [new, middle]
    assert ids(since=T0, until=T0 + 200) == [middle, old]
    assert ids(limit=1) == [new]
    assert ids(ids=(old, "msg_nope")) == [old]
    [letter] = admin.list_dead_letters(conn, DeadLetterQuery(ids=(new,)))
    assert letter == admin.DeadLetter(
        new, second.id, "tx", "dev9", "everything", T0 + 200, 1, "error status 404"
    )
    assert letter.to_json()["at"] == "2026-01-01T00:03:20.000Z"


async def test_show_gives_the_delivery_its_event_and_every_attempt(
    path: Path, config: Config
) -> None:
    async with running(path, config) as journal:
        event = await journal.append(draft(data='{"t":21}'))
        key = delivery_id(journal.epoch, event.id, hook_tag("temps"))
        delivery = Delivery(key, event, "temps", attempts=1, state="waiting")
        await journal.record_attempts(
            [(delivery, Attempt(key, 1, None, 20.0, "timeout after 20 s from x", b"", "waiting"))]
        )
        delivery.attempts = 2
        await journal.record_attempts(
            [(delivery, Attempt(key, 2, 400, 0.05, "error status 400 from x", b"no", "dead"))]
        )
    conn = connect(path)
    record = admin.show_delivery(conn, key)
    assert record is not None
    assert (record.hook, record.state, record.attempts, record.event) == ("temps", "dead", 2, event)
    assert record.dead_at is not None
    assert [(a.number, a.status, a.reason, a.excerpt) for a in record.attempt_log] == [
        (1, None, "timeout after 20 s from x", b""),
        (2, 400, "error status 400 from x", b"no"),
    ]
    assert record.to_json()["event"] == {
        "id": event.id,
        "name": "temp",
        "device": "dev1",
        "product": None,
        "published_at": event.published_at,
        "data": '{"t":21}',
    }
    assert admin.show_delivery(conn, key.replace(f"_{event.id:x}_", "_ff_")) is None
    assert admin.show_delivery(conn, "not-an-id") is None


async def test_show_finds_a_delivery_without_a_row_through_its_event(
    path: Path, config: Config
) -> None:
    async with running(path, config) as journal:
        event = await journal.append(draft())  # to "temps" and "everything"
        epoch = journal.epoch
        temps, everything, dev2 = (
            delivery_id(epoch, event.id, hook_tag(hook))
            for hook in ("temps", "everything", "dev2 temps")
        )
        delivery = Delivery(temps, event, "temps", attempts=1, state="delivered")
        attempt = Attempt(temps, 1, 200, 0.02, "200", b"ok", "delivered")
        await journal.record_attempts([(delivery, attempt)])
    conn = connect(path)
    assert conn.execute("SELECT count(*) FROM deliveries").fetchone() == (0,)
    shown = admin.show_delivery(conn, temps)
    assert shown is not None
    assert (shown.hook, shown.state, shown.attempts, shown.reason) == (
        "temps",
        "delivered",
        1,
        "200",
    )
    assert [(a.number, a.status, a.excerpt) for a in shown.attempt_log] == [(1, 200, b"ok")]
    pending = admin.show_delivery(conn, everything)
    assert pending is not None and pending.event == event
    assert (pending.hook, pending.state, pending.attempts, pending.attempt_log) == (
        "everything",
        "pending",
        0,
        (),
    )
    assert admin.show_delivery(conn, dev2) is None  # the event was not routed to it
    assert admin.show_delivery(conn, temps.replace(epoch, "00000000")) is None


async def test_a_replayed_dead_letter_is_sent_again_under_its_id(
    path: Path, config: Config
) -> None:
    async with running(path, config) as journal:
        event = await journal.append(draft())
        key = await give_up(journal, event, "temps")
        other = await give_up(journal, event, "everything")
        assert await journal.take_replays() == []
        conn = connect(path)
        with admin.transaction(conn):
            replayed = admin.replay_dead_letters(conn, DeadLetterQuery(ids=(key, "msg_x")), T0)
        assert replayed == admin.Replayed((key,), ("msg_x",), 0)
        assert conn.execute(
            "SELECT state, attempts, due, reason FROM deliveries WHERE id = ?", (key,)
        ).fetchone() == ("replay", 0, T0, "")
        assert [d.id for d in admin.list_dead_letters(conn, DeadLetterQuery())] == [other]
        # The daemon notices the other connection's commit and takes it, once.
        [taken] = await journal.take_replays()
        assert (taken.id, taken.hook, taken.attempts, taken.event) == (key, "temps", 0, event)
        assert await journal.take_replays() == []


async def test_a_filtered_replay_takes_the_oldest_first_and_counts_the_rest(
    path: Path, config: Config
) -> None:
    async with running(path, config) as journal:
        first, second = await journal.append_many([draft(), draft()])
        old = await give_up(journal, first, "everything", at=T0)
        await give_up(journal, second, "everything", at=T0 + 1)
        await give_up(journal, second, "temps", at=T0 + 2)
        replayed = await journal.replay_dead_letters(DeadLetterQuery(hook="everything", limit=1))
        assert replayed == admin.Replayed((old,), (), 1)
        # Asked through the journal itself: taken at the next look, no commit elsewhere needed.
        assert [d.id for d in await journal.take_replays()] == [old]
        left = await journal.list_dead_letters(DeadLetterQuery())
        assert [d.hook for d in left] == ["temps", "everything"]


async def test_a_window_replay_queues_new_deliveries_as_the_router_would(
    path: Path, config: Config
) -> None:
    async with running(path, config) as journal:
        events = await journal.append_many(
            [draft(device="dev1"), draft(device="dev2"), draft("tx", device="dev2"), draft()]
        )
        await journal.recover()  # the first deliveries are pending: they stay as they are
        times = [(T0 + i * 10, e.id) for i, e in enumerate(events)]
        await journal.run_in_writer(
            lambda conn: conn.executemany("UPDATE events SET at = ? WHERE id = ?", times)
        )
        conn = connect(path)
        router = HookSet(config.hooks)
        with admin.transaction(conn):
            first = admin.replay_window(conn, router, "dev2 temps", T0, T0 + 30, now=T0 + 60)
        # "dev2 temps": temp events of dev2 only; the last event is outside the window.
        tag = hook_tag("dev2 temps")
        assert first == admin.WindowReplay(
            "dev2 temps", 1, (delivery_id(journal.epoch, events[1].id, tag, 1),)
        )
        with admin.transaction(conn):
            again = admin.replay_window(conn, router, "everything", T0, T0 + 100, now=T0 + 60)
        assert again.replay == 2
        assert [key.rsplit("_", 1)[1] for key in again.ids] == ["r2"] * 4
        taken = await journal.take_replays()
        assert {(d.hook, d.id) for d in taken} == {("dev2 temps", first.ids[0])} | {
            ("everything", key) for key in again.ids
        }
        assert {d.due for d in taken} == {T0 + 60}


async def test_a_window_replay_refuses_too_many_events_and_a_disabled_hook(
    path: Path, config: Config
) -> None:
    async with running(path, config) as journal:
        await journal.append_many([draft(), draft(), draft()])
    conn = connect(path)
    router = HookSet(config.hooks)
    window = (0.0, T0 * 2)
    too_many = r'more than 2 events in the window go to hook "temps"'
    with pytest.raises(admin.AdminError, match=too_many), admin.transaction(conn):
        admin.replay_window(conn, router, "temps", *window, limit=2, now=T0)
    with pytest.raises(admin.AdminError, match='hook "off" is disabled'), admin.transaction(conn):
        admin.replay_window(conn, router, "off", *window, now=T0)
    assert conn.execute("SELECT count(*) FROM deliveries WHERE state = 'replay'").fetchone() == (0,)
    with admin.transaction(conn):
        assert len(admin.replay_window(conn, router, "temps", *window, limit=3, now=T0).ids) == 3
    nothing = admin.replay_window(conn, router, "temps", 0.0, 1.0, now=T0)
    assert nothing == admin.WindowReplay("temps", 0, ())


async def test_the_memory_journal_lists_and_replays_its_dead_letters() -> None:
    journal = MemoryJournal()
    first, second = await journal.append_many([draft(), draft("tx")])
    dead = [
        Delivery(f"msg_{event.id}", event, hook, attempts=3, state="dead", last_reason="gone")
        for event, hook in ((first, "temps"), (second, "everything"))
    ]
    await journal.record_attempts(
        [(d, Attempt(d.id, 3, 400, 0.1, "400", b"", "dead")) for d in dead]
    )
    listed = await journal.list_dead_letters(DeadLetterQuery(hook="everything"))
    assert [(d.id, d.event_name, d.hook, d.attempts) for d in listed] == [
        ("msg_2", "tx", "everything", 3)
    ]
    replayed = await journal.replay_dead_letters(DeadLetterQuery(ids=("msg_1", "msg_9")))
    assert replayed == admin.Replayed(("msg_1",), ("msg_9",), 0)
    [taken] = await journal.take_replays()
    assert (taken.id, taken.hook, taken.attempts, taken.event) == ("msg_1", "temps", 0, first)
    assert await journal.take_replays() == []
    assert [d.id for d in journal.dead_letters] == ["msg_2"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01T00:00:00Z", T0),
        ("2026-01-01T01:00:00+01:00", T0),
        ("2026-01-01T00:00:00", T0),  # no zone: UTC
        ("2026-01-01", T0),
        ("2h", T0 - 7200),
        ("30m", T0 - 1800),
        ("7d", T0 - 7 * 86400),
        (" 90s ", T0 - 90),
    ],
)
def test_times_are_iso_8601_or_a_duration_ago(text: str, expected: float) -> None:
    assert admin.parse_time(text, now=T0) == expected


@pytest.mark.parametrize("text", ["yesterday", "-2h", "2 hours", "", "2027-13-01"])
def test_a_bad_time_says_what_was_expected(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected an ISO 8601 time .* or a duration ago .*, got"):
        admin.parse_time(text, now=T0)
