"""Dead letters and replay as plain SQL over a journal connection: the CLI and the API share it.

Readers run on any connection. Writers expect the caller's write transaction: the CLI opens
one on its own connection (``transaction``), the daemon runs them in its writer thread
(``SqliteJournal.run_in_writer``). A delivery row put in state ``replay`` is taken by the
running daemon within a second (or at its next start) and sent again. A dead letter always
has its delivery row; a delivery that never waited, died nor was replayed has none, and is
shown from its event's routed hooks and its attempts.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from engine.config._fields import parse_duration, show
from engine.core.model import Event, delivery_id, hook_tag
from engine.hooks.hook import Hook
from engine.hooks.router import HookSet
from engine.journal.schema import stored_event, unpack_hooks

LIST_LIMIT = 100
"""Dead letters listed when no limit is given: a screenful, newest first."""

REPLAY_LIMIT = 1000
"""Deliveries one replay queues unless told otherwise: the daemon holds them all in memory."""

TIME_HINT = 'an ISO 8601 time ("2026-11-29T10:00:00Z") or a duration ago ("30m", "2h", "7d")'

# model.delivery_id: msg_<epoch>_<event id in hex>_<hook tag>[_r<replay>]
_DELIVERY_ID = re.compile(r"msg_[0-9a-f]+_([0-9a-f]+)_[0-9a-f]+(?:_r[0-9]+)?")


def event_id_of_delivery(delivery: str) -> int | None:
    """The event id a delivery id names (``msg_<epoch>_<event id, hex>_<tag>[_r<n>]``)."""
    found = _DELIVERY_ID.fullmatch(delivery)
    return int(found[1], 16) if found is not None else None


class AdminError(Exception):
    """An admin request that cannot be done as asked; the message says why."""


# times


def parse_time(text: str, now: float) -> float:
    """Unix time of an ISO 8601 time (UTC when it names no zone) or of a duration ago ("2h")."""
    value = text.strip()
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"expected {TIME_HINT}, got {show(text)}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def iso_time(at: float) -> str:
    """A unix time as ISO 8601 UTC with milliseconds, as events carry theirs."""
    moment = dt.datetime.fromtimestamp(at, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# rows


def event_json(event: Event) -> dict[str, object]:
    """An event as the admin answers show it."""
    return {
        "id": event.id,
        "name": event.name,
        "device": event.device_id,
        "product": event.product_id,
        "published_at": event.published_at,
        "data": event.data,
    }


@dataclass(frozen=True, slots=True)
class DeadLetterQuery:
    """Which dead letters: every condition given must hold; none given means all of them."""

    ids: tuple[str, ...] = ()
    hook: str | None = None
    since: float | None = None  # gave up at or after this unix time
    until: float | None = None  # gave up before this unix time
    limit: int = LIST_LIMIT

    @property
    def selects(self) -> bool:
        """True when some condition narrows the choice (a replay needs one)."""
        return bool(self.ids) or any(c is not None for c in (self.hook, self.since, self.until))

    def admits(self, delivery: str, hook: str, at: float) -> bool:
        """Whether a dead letter meets the conditions (for journals without SQL)."""
        return (
            (not self.ids or delivery in self.ids)
            and (self.hook is None or hook == self.hook)
            and (self.since is None or at >= self.since)
            and (self.until is None or at < self.until)
        )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A delivery given up on, and the event it carried."""

    id: str
    event_id: int
    event_name: str
    device_id: str
    hook: str
    at: float  # unix time it was given up on
    attempts: int
    reason: str

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "event_id": self.event_id,
            "event": self.event_name,
            "device": self.device_id,
            "hook": self.hook,
            "at": iso_time(self.at),
            "attempts": self.attempts,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Replayed:
    """What a dead-letter replay queued, and what it could not."""

    ids: tuple[str, ...]  # queued again, under the same ids
    missing: tuple[str, ...] = ()  # ids asked for that are not dead letters
    more: int = 0  # dead letters that matched beyond the limit, left as they are

    def to_json(self) -> dict[str, object]:
        return {
            "ok": True,
            "queued": len(self.ids),
            "ids": list(self.ids),
            "missing": list(self.missing),
            "more": self.more,
        }


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One try of a delivery, as the journal kept it."""

    number: int
    at: float
    status: int | None
    duration: float
    reason: str
    excerpt: bytes

    def to_json(self) -> dict[str, object]:
        return {
            "number": self.number,
            "at": iso_time(self.at),
            "status": self.status,
            "duration": round(self.duration, 6),
            "reason": self.reason,
            "excerpt": self.excerpt.decode("utf-8", "replace"),
        }


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """A delivery with its event and every attempt, for ``hookwire dead-letters show``."""

    id: str
    hook: str
    state: str
    attempts: int
    due: float
    reason: str
    event: Event
    dead_at: float | None
    attempt_log: tuple[AttemptRecord, ...]

    def to_json(self) -> dict[str, object]:
        event = self.event
        return {
            "id": self.id,
            "hook": self.hook,
            "state": self.state,
            "attempts": self.attempts,
            "due": iso_time(self.due),
            "reason": self.reason,
            "dead_at": iso_time(self.dead_at) if self.dead_at is not None else None,
            "event": event_json(event),
            "attempt_log": [attempt.to_json() for attempt in self.attempt_log],
        }


@dataclass(frozen=True, slots=True)
class WindowReplay:
    """What a window replay queued: new deliveries, their ids ending in ``_r<replay>``."""

    hook: str
    replay: int
    ids: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "ok": True,
            "hook": self.hook,
            "replay": self.replay,
            "queued": len(self.ids),
            "ids": list(self.ids),
        }


# reading


def dead_letters_sql(query: DeadLetterQuery) -> tuple[str, list[Any]]:
    """The statement listing ``query``'s dead letters, newest first (rows for ``dead_letter``)."""
    where, parameters = _where(query)
    sql = (
        "SELECT l.delivery_id, l.event_id, e.name, e.device, l.hook, l.at, l.attempts, l.reason"
        f" FROM dead_letters l JOIN events e ON e.id = l.event_id WHERE {where}"
        " ORDER BY l.at DESC, l.event_id DESC LIMIT ?"
    )
    return sql, [*parameters, query.limit]


def dead_letter(row: Sequence[Any]) -> DeadLetter:
    """A row of ``dead_letters_sql`` as a record."""
    return DeadLetter(*row)


def list_dead_letters(conn: sqlite3.Connection, query: DeadLetterQuery) -> list[DeadLetter]:
    """Dead letters matching ``query``, newest first, at most ``query.limit``."""
    return [dead_letter(row) for row in conn.execute(*dead_letters_sql(query))]


def show_delivery(conn: sqlite3.Connection, delivery: str) -> DeliveryRecord | None:
    """A delivery, its event and its attempts; None when the journal has no such delivery.

    A delivery without a row of its own (it never waited, died nor was replayed) is found
    through the hooks its event was routed to: pending without an attempt, else delivered.
    """
    found = _DELIVERY_ID.fullmatch(delivery)
    if found is None:
        return None
    key = (int(found[1], 16), delivery)
    attempts = tuple(
        AttemptRecord(*attempt)
        for attempt in conn.execute(
            "SELECT number, at, status, duration, reason, excerpt FROM attempts"
            " WHERE event_id = ? AND delivery_id = ? ORDER BY number",
            key,
        )
    )
    row = conn.execute(
        "SELECT d.hook, d.state, d.attempts, d.due, d.reason,"
        " e.id, e.name, e.device, e.product, e.body, l.at"
        " FROM deliveries d JOIN events e ON e.id = d.event_id"
        " LEFT JOIN dead_letters l ON l.event_id = d.event_id AND l.delivery_id = d.id"
        " WHERE d.event_id = ? AND d.id = ?",
        key,
    ).fetchone()
    if row is None:
        return _derived_delivery(conn, delivery, key[0], attempts)
    hook, state, count, due, reason = row[:5]
    return DeliveryRecord(
        delivery, hook, state, count, due, reason, stored_event(row[5:10]), row[10], attempts
    )


def _derived_delivery(
    conn: sqlite3.Connection, delivery: str, event_id: int, attempts: tuple[AttemptRecord, ...]
) -> DeliveryRecord | None:
    """A delivery with no row: its event's routed hook whose id it is, if any."""
    row = conn.execute(
        "SELECT id, name, device, product, body, at, hooks FROM events WHERE id = ?", (event_id,)
    ).fetchone()
    epoch = _meta(conn, "epoch")
    if row is None or epoch is None:
        return None
    for hook in unpack_hooks(row[6]):
        if delivery_id(epoch, event_id, hook_tag(hook)) != delivery:
            continue
        event = stored_event(row[:5])
        if not attempts:
            return DeliveryRecord(delivery, hook, "pending", 0, row[5], "", event, None, ())
        last = attempts[-1]
        count = len(attempts)
        return DeliveryRecord(
            delivery, hook, "delivered", count, last.at, last.reason, event, None, attempts
        )
    return None


# writing (in the caller's write transaction)


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction on a connection of one's own: committed, or rolled back on error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def replay_dead_letters(conn: sqlite3.Connection, query: DeadLetterQuery, now: float) -> Replayed:
    """Queue ``query``'s dead letters again, oldest first, under their ids; never raises.

    Each goes back to state ``replay`` with no attempts counted (a fresh retry schedule),
    due now; its dead-letter row goes. The id stays: it never succeeded, so a receiver has
    nothing to deduplicate it against.
    """
    where, parameters = _where(query)
    rows = conn.execute(
        f"SELECT l.event_id, l.delivery_id FROM dead_letters l WHERE {where}"
        " ORDER BY l.at, l.event_id LIMIT ?",
        [*parameters, query.limit],
    ).fetchall()
    conn.executemany(
        "UPDATE deliveries SET state = 'replay', attempts = 0, due = ?, reason = ''"
        " WHERE event_id = ? AND id = ?",
        [(now, event_id, key) for event_id, key in rows],
    )
    conn.executemany("DELETE FROM dead_letters WHERE event_id = ? AND delivery_id = ?", rows)
    queued = tuple(key for _, key in rows)
    more = conn.execute(f"SELECT count(*) FROM dead_letters l WHERE {where}", parameters)
    found = set(queued)
    return Replayed(queued, tuple(i for i in query.ids if i not in found), more.fetchone()[0])


def replay_window(
    conn: sqlite3.Connection,
    hooks: HookSet,
    name: str,
    since: float,
    until: float,
    *,
    limit: int = REPLAY_LIMIT,
    now: float,
) -> WindowReplay:
    """Queue every retained event stored in [since, until) that the hook ``name`` takes, again.

    Each gets a new delivery under a new id (``_r<n>``, n counted in the meta table), so a
    receiver sees a fresh message. Raises AdminError, before writing anything, for a
    disabled hook or more than ``limit`` events: nothing is queued then.
    """
    hook = window_hook(hooks, name)
    events = _window(conn, hooks, hook, since, until, limit)
    if not events:
        return WindowReplay(hook.name, 0, ())
    epoch = _meta(conn, "epoch")
    if epoch is None:
        raise AdminError("the journal has no epoch: has the daemon ever run with it?")
    replay = int(_meta(conn, "replays") or 0) + 1
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('replays', ?)", (str(replay),))
    ids = tuple(delivery_id(epoch, event_id, hook.tag, replay) for event_id in events)
    conn.executemany(
        "INSERT INTO deliveries VALUES (?, ?, ?, 'replay', 0, ?, '')",
        [(event_id, key, hook.name, now) for event_id, key in zip(events, ids, strict=True)],
    )
    return WindowReplay(hook.name, replay, ids)


def _window(
    conn: sqlite3.Connection, hooks: HookSet, hook: Hook, since: float, until: float, limit: int
) -> list[int]:
    """Ids of the events stored in [since, until) that the hook set routes to ``hook``."""
    prefix = hook.event
    rows = conn.execute(
        "SELECT id, name, device, product, body FROM events"
        " WHERE at >= ? AND at < ? AND substr(name, 1, ?) = ? ORDER BY id",
        (since, until, len(prefix), prefix),
    )
    return window_events((stored_event(row) for row in rows), hooks, hook, limit)


def window_hook(hooks: HookSet, name: str) -> Hook:
    """The hook a window replay is for; AdminError for an unknown or a disabled one."""
    hook = hooks.get(name)
    if hook is None:
        raise AdminError(f'no hook named "{name}"')
    if hooks.is_disabled(hook.name):
        raise AdminError(f'hook "{hook.name}" is disabled; enable it first')
    return hook


def window_events(events: Iterable[Event], hooks: HookSet, hook: Hook, limit: int) -> list[int]:
    """Ids of the ``events`` (those of the window) that the hook set routes to ``hook``;
    AdminError when more than ``limit`` do."""
    found: list[int] = []
    for event in events:
        if hook not in hooks.route(event):
            continue
        if len(found) == limit:
            raise AdminError(
                f'more than {limit} events in the window go to hook "{hook.name}";'
                " narrow the window or raise the limit"
            )
        found.append(event.id)
    return found


def _where(query: DeadLetterQuery) -> tuple[str, list[Any]]:
    """The conditions of ``query`` on ``dead_letters l``."""
    clauses = ["1"]
    parameters: list[Any] = []
    if query.ids:
        clauses.append(f"l.delivery_id IN ({', '.join('?' * len(query.ids))})")
        parameters.extend(query.ids)
    for clause, value in (
        ("l.hook = ?", query.hook),
        ("l.at >= ?", query.since),
        ("l.at < ?", query.until),
    ):
        if value is not None:
            clauses.append(clause)
            parameters.append(value)
    return " AND ".join(clauses), parameters


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])
