"""The delivery log of the SQLite journal, as SQL over a connection: the daemon's reader and
the CLI's own connection share it (reads only; the writer keeps the rows, ``sqlite.py``).

Attempts carry their hook, the delivery's state after them and the request they sent
(schema version 4); ``hook_hours`` counts them per hook and hour.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from engine.journal import delivery_log as log
from engine.journal._deliveries import open_rows, owed_since
from engine.journal.admin import event_id_of_delivery, show_delivery
from engine.journal.delivery_log import (
    DeliveryPage,
    DeliveryQuery,
    HookActivity,
    LoggedAttempt,
    LoggedDelivery,
    SentRequest,
)

ATTEMPT_COLUMNS = (
    "a.delivery_id, a.event_id, a.hook, a.number, a.at, a.duration, a.status, a.reason,"
    " a.state, a.request, a.excerpt, a.due"
)


def logged_attempt(row: Sequence[Any]) -> LoggedAttempt:
    """A row of ``ATTEMPT_COLUMNS`` as a record."""
    key, event_id, hook, number, at, duration, status, reason, state, request, excerpt, due = row
    return LoggedAttempt(
        key,
        event_id,
        hook or "",
        number,
        at,
        duration,
        status,
        reason,
        state or ("delivered" if status is not None and 200 <= status < 300 else "waiting"),
        SentRequest.unpack(request),
        excerpt,
        due,
    )


def delivery_page(
    conn: sqlite3.Connection, epoch: str, floor: int, hooks: Iterable[str], query: DeliveryQuery
) -> DeliveryPage:
    """A page of deliveries: each state's newest ones read from where it is kept, then merged
    (``hooks``: the names to list when the query names none)."""
    names = [query.hook] if query.hook is not None else sorted(set(hooks))
    want = query.limit + 1
    found: list[LoggedDelivery] = []
    for hook in names:
        if "delivered" in query.states:
            found += _delivered(conn, hook, query.before, want)
        if "dead" in query.states:
            found += _dead(conn, hook, query.before, want)
    if "retrying" in query.states or "pending" in query.states:
        found += _open(conn, epoch, floor, query)
    return log.page(found, query)


def file_page(conn: sqlite3.Connection, hooks: Iterable[str], query: DeliveryQuery) -> DeliveryPage:
    """``delivery_page`` on a journal file opened by itself (the CLI): its epoch and floor
    from its meta table, and its API hooks' names beside ``hooks``."""
    meta = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('epoch', 'floor')"))
    names = {*hooks, *(name for (name,) in conn.execute("SELECT name FROM api_hooks"))}
    epoch = str(meta.get("epoch", ""))
    return delivery_page(conn, epoch, int(meta.get("floor", 0)), names, query)


def _before(before: tuple[float, str] | None, at: str, key: str) -> tuple[str, list[Any]]:
    if before is None:
        return "", []
    return f" AND ({at}, {key}) < (?, ?)", list(before)


def _delivered(
    conn: sqlite3.Connection, hook: str, before: tuple[float, str] | None, want: int
) -> list[LoggedDelivery]:
    clause, marks = _before(before, "a.at", "a.delivery_id")
    rows = conn.execute(
        "SELECT a.delivery_id, a.event_id, e.name, a.number, a.at, a.reason"
        " FROM attempts a JOIN events e ON e.id = a.event_id"
        f" WHERE a.hook = ? AND a.state = 'delivered'{clause}"
        " ORDER BY a.at DESC, a.delivery_id DESC LIMIT ?",
        [hook, *marks, want],
    )
    return [
        LoggedDelivery(key, hook, event_id, name, "delivered", number, at, reason, None)
        for key, event_id, name, number, at, reason in rows
    ]


def _dead(
    conn: sqlite3.Connection, hook: str, before: tuple[float, str] | None, want: int
) -> list[LoggedDelivery]:
    clause, marks = _before(before, "l.at", "l.delivery_id")
    rows = conn.execute(
        "SELECT l.delivery_id, l.event_id, e.name, l.attempts, l.at, l.reason"
        " FROM dead_letters l JOIN events e ON e.id = l.event_id"
        f" WHERE l.hook = ?{clause} ORDER BY l.at DESC, l.delivery_id DESC LIMIT ?",
        [hook, *marks, want],
    )
    return [
        LoggedDelivery(key, hook, event_id, name, "dead", attempts, at, reason, None)
        for key, event_id, name, attempts, at, reason in rows
    ]


def _open(
    conn: sqlite3.Connection, epoch: str, floor: int, query: DeliveryQuery
) -> list[LoggedDelivery]:
    """Deliveries still owed: waiting for a retry (rows), and pending (rows, and those of the
    events from the floor up without an attempt). Few, unless a target is down."""
    found = []
    for state in ("retrying", "pending"):
        if state not in query.states:
            continue
        rows = [journal for journal, shown in log.JOURNAL_STATES.items() if shown == state]
        for delivery in open_rows(conn, rows):
            if query.hook is not None and delivery.hook != query.hook:
                continue
            last = conn.execute(  # a row's last attempt (a replay's are before it)
                "SELECT at, reason FROM attempts WHERE event_id = ? AND delivery_id = ?"
                " ORDER BY number DESC LIMIT 1",
                (delivery.event.id, delivery.id),
            ).fetchone()
            at, reason = last if last is not None else (delivery.due, "")
            next_try = delivery.due if state == "retrying" else None
            event = delivery.event
            found.append(
                LoggedDelivery(
                    delivery.id,
                    delivery.hook,
                    event.id,
                    event.name,
                    state,
                    delivery.recorded,
                    at,
                    reason,
                    next_try,
                )
            )
    if "pending" in query.states:  # no row and no attempt: nothing more to read
        found += [
            LoggedDelivery(d.id, d.hook, d.event.id, d.event.name, "pending", 0, d.due, "", None)
            for d in owed_since(conn, epoch, floor)
            if query.hook is None or d.hook == query.hook
        ]
    return found


def delivery_attempts(conn: sqlite3.Connection, delivery: str) -> list[LoggedAttempt]:
    """Every attempt of one delivery, first first."""
    event_id = event_id_of_delivery(delivery)
    if event_id is None:
        return []
    rows = conn.execute(
        f"SELECT {ATTEMPT_COLUMNS} FROM attempts a"
        " WHERE a.event_id = ? AND a.delivery_id = ? ORDER BY a.number",
        (event_id, delivery),
    )
    return [logged_attempt(row) for row in rows]


def delivery_detail(conn: sqlite3.Connection, delivery: str) -> log.DeliveryDetail | None:
    """One delivery, its event and every attempt with what it sent and got back."""
    record = show_delivery(conn, delivery)
    if record is None:
        return None
    attempts = tuple(delivery_attempts(conn, delivery))
    return log.DeliveryDetail(record, attempts)


def hook_activity(conn: sqlite3.Connection, hook: str, now: float) -> HookActivity:
    """A hook's last successes and failures, and its attempts per hour for 30 days."""

    def last(state: str) -> list[LoggedAttempt]:
        rows = conn.execute(
            f"SELECT {ATTEMPT_COLUMNS} FROM attempts a WHERE a.hook = ? AND a.state = ?"
            " ORDER BY a.at DESC LIMIT ?",
            (hook, state, log.LAST_KEPT),
        )
        return [logged_attempt(row) for row in rows]

    failures = sorted(last("waiting") + last("dead"), key=lambda a: a.at, reverse=True)
    hours = conn.execute(
        "SELECT hour, delivered, failed FROM hook_hours WHERE hook = ? AND hour >= ? ORDER BY hour",
        (hook, log.oldest_hour(now)),
    ).fetchall()
    return HookActivity(
        hook,
        tuple(last("delivered")),
        tuple(failures[: log.LAST_KEPT]),
        tuple((hour, ok, failed) for hour, ok, failed in hours),
    )


def count_hours(conn: sqlite3.Connection, attempts: Iterable[tuple[str, float, bool]]) -> None:
    """Add a batch's attempts, (hook, time, delivered) each, to the hourly counts (in the
    writer's transaction)."""
    counts = log.hour_counts(attempts)
    if counts:
        conn.executemany(
            "INSERT INTO hook_hours VALUES (?, ?, ?, ?) ON CONFLICT (hook, hour) DO UPDATE SET"
            " delivered = delivered + excluded.delivered, failed = failed + excluded.failed",
            [(hook, hour, ok, failed) for (hook, hour), (ok, failed) in counts.items()],
        )


def prune_hours(conn: sqlite3.Connection, now: float) -> None:
    """Forget the counts older than ``HOURS_KEPT`` hours."""
    conn.execute("DELETE FROM hook_hours WHERE hour < ?", (log.oldest_hour(now),))
