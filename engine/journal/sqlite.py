"""The durable journal: SQLite in WAL mode, one writer thread, group commit.

Callers in trio hand the writer thread small pieces of work. The thread takes every piece
waiting, runs them all in one transaction, commits, and only then releases their callers,
so an event is acknowledged only once it is on disk and one fsync serves everyone who
was waiting. With a ``commit_interval``, the writer waits a little before a commit so that
more work shares it: a commit starts at most the interval after the first piece waiting
for it arrived, commits start at least the interval apart, and work that comes alone
after a quiet spell is committed at once (the rule and its reasons: ``_grouping``). A stop
commits what was queued without waiting. When a commit fails (disk full, I/O error, a lock
held too long) the transaction is rolled back, its callers get ``JournalUnavailable`` with
the reason, and the next batch tries again: the journal recovers by itself when writing
works again.

An event is stored with the names of the hooks it was routed to, and a delivery gets a row
of its own only when it waits for a retry, dies or is replayed; every attempt is a row. A
delivery without a row is pending until it has an attempt, then delivered (``_ledger`` has
the table). So a delivery that succeeds at once costs its attempt row and nothing else, and
after a crash every delivery not yet settled is still found (``recover``) and retried under
the same id: the open rows, and the derived deliveries of the events from the floor up
(kept in ``meta`` within the commits the writer makes anyway), never all retained events.

Hooks created through the API are kept in a table of their own, written by the writer thread
like everything else and never pruned, and read from memory (``_api_hooks``).
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import math
import queue
import secrets
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgpack
import trio

from engine.core.model import (
    Attempt,
    Delivery,
    Event,
    EventDraft,
    OutboxEntry,
    StoredDelivery,
    StoredHook,
)
from engine.hooks.router import Deliver, HookSet, Route
from engine.journal import _sqlite_log as sqlite_log
from engine.journal import admin
from engine.journal._api_hooks import HookShelf
from engine.journal._deliveries import OPEN_STATES, open_rows, owed_since
from engine.journal._grouping import commit_start
from engine.journal._ledger import Ledger, Write
from engine.journal.base import HookNameTaken, JournalUnavailable
from engine.journal.delivery_log import (
    DeliveryDetail,
    DeliveryPage,
    DeliveryQuery,
    HookActivity,
    next_try_at,
)
from engine.journal.schema import open_database, pack_hooks, stored_event

log = logging.getLogger("hookwire.journal")

T = TypeVar("T")

PRUNE_EVERY = 10.0
"""Seconds between retention passes."""

PRUNE_BATCH = 1000
"""Events removed per transaction, so pruning never holds the writer for long."""


CHECKPOINT_IDLE = 100
"""Commits after which the writer checkpoints the WAL as soon as nothing is waiting."""

CHECKPOINT_FORCED = 2000
"""Commits after which it checkpoints even under load, so the WAL stays bounded."""

FLOOR_EVERY = 64
"""Commits between writes of the floor to ``meta``. Each write dirties a page more per commit
(~15 µs of the writer's CPU per published event when done in every commit here); a floor
that lags by some commits only makes recovery read those commits' events."""

STOP_TIMEOUT = 10.0
"""Seconds (real time) the writer gets to commit what was queued before a stop."""


class _Work:
    """A piece of work for the writer thread, and what came of it."""

    __slots__ = ("at", "done", "error", "result", "routes", "run")

    def __init__(
        self, run: Callable[[sqlite3.Connection], Any], routes: list[Route] | None = None
    ) -> None:
        self.run = run
        self.at = time.monotonic()  # when it was queued: the commit interval counts from it
        # With routes, the result is a list of events (None: not stored), each to fan out
        # and to deliver to the hooks it was routed to (same positions).
        self.routes = routes
        self.done = trio.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    async def outcome(self) -> Any:
        """What ``run`` returned, once committed; raises what made the commit fail."""
        await self.done.wait()
        if self.error is not None:
            raise self.error
        return self.result


class _PendingEvent:
    """One event's append in the writer's queue (``PendingAppend``)."""

    __slots__ = ("_work",)

    def __init__(self, work: _Work) -> None:
        self._work = work

    def __repr__(self) -> str:
        work = self._work
        if not work.done.is_set():
            return "<pending append queued>"
        return f"<pending append {'failed' if work.error is not None else 'stored'}>"

    async def wait(self) -> Event:
        events: list[Event] = await self._work.outcome()
        return events[0]


_STOP = None


class SqliteJournal:
    """Events, deliveries and attempts in one SQLite file; ``run`` owns the writer thread."""

    def __init__(
        self,
        path: Path,
        hooks: HookSet,
        *,
        synchronous: str = "full",
        retention: float = 7 * 86400.0,
        downlink_ttl: float = 60.0,
        dedupe_window: float = 600.0,
        commit_interval: float = 0.0,
    ) -> None:
        if commit_interval < 0:
            raise ValueError(f"commit_interval must be 0 or more, got {commit_interval!r}")
        self.path = path
        self._hooks = hooks
        self._commit_interval = commit_interval
        self._retention = retention
        self._downlink_ttl = downlink_ttl
        self._dedupe_window = dedupe_window
        self._conn = open_database(path, synchronous=synchronous)
        # Checkpoints run in the writer thread when it is idle (see _serve), not inside
        # whichever publish's commit crosses SQLite's automatic threshold.
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self._since_checkpoint = 0
        self._epoch = self._load_epoch()
        row = self._conn.execute("SELECT min(id), max(id) FROM events").fetchone()
        self._next_id = (row[1] or 0) + 1  # the writer thread's; only it advances it
        self._last_id = self._next_id - 1
        self._oldest_id = row[0] or self._next_id
        self._ledger = Ledger()  # the writer thread's, once it runs
        self._floor = self._load_ledger()  # as on disk: at most the ledger's
        self._floor_due = 0  # stored again from this many commits on
        self.outbox_depth = self._conn.execute("SELECT count(*) FROM downlink_outbox").fetchone()[0]
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._token: trio.lowlevel.TrioToken | None = None
        self._writer: threading.Thread | None = None
        self._closing = False
        self._reader: sqlite3.Connection | None = None
        self._read_lock = trio.CapacityLimiter(1)
        self._replays_asked = True  # look once at start
        self.commits = 0  # transactions committed (each serves every caller waiting)
        self.writes = 0  # pieces of work in them
        self.events_stored = 0  # events in them (commits / events_stored: fsyncs per event)
        self.failed_commits = 0
        self.write_problem: str | None = None  # why the last commit failed; None once one works
        self._data_version = -1
        self._publish: Callable[[Event], None] | None = None
        self._deliver: Deliver | None = None
        self._finished: deque[list[_Work]] = deque()
        self._finished_lot = trio.lowlevel.ParkingLot()
        self._shelf = HookShelf(self._conn)  # before the disabled hooks: some may be stored
        self.apply_disabled_hooks()

    def __repr__(self) -> str:
        return f"<SqliteJournal {self.path} last_id={self._last_id}>"

    # the writer thread

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve writes until cancelled; prunes old events as it goes."""
        self._token = trio.lowlevel.current_trio_token()
        self._closing = False
        thread = threading.Thread(target=self._serve, name="hookwire-journal", daemon=True)
        self._writer = thread
        thread.start()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._hand_out)
                task_status.started()
                while True:
                    await trio.sleep(PRUNE_EVERY)
                    await self.prune()
        finally:
            # Work queued before the stop is still committed, and its callers released.
            self._closing = True
            self._queue.put(_STOP)
            # Bounded in real time by join() itself, not by trio's clock: under a MockClock
            # a trio timeout expires at once, and the thread would go on behind our back.
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(thread.join, STOP_TIMEOUT)
            if thread.is_alive():
                log.error("the journal writer did not stop within %g s", STOP_TIMEOUT)
            self._token = None
            while self._finished:
                for work in self._finished.popleft():
                    if work.routes is not None and work.error is None:
                        self._committed(work.result)
                    work.done.set()

    def fan_out_to(self, publish: Callable[[Event], None]) -> None:
        """Hand every committed event to ``publish``, in id order, before its writer resumes."""
        self._publish = publish

    def hand_routes_to(self, deliver: Deliver | None) -> None:
        """Hand every committed event that triggers hooks to ``deliver`` with those hooks,
        right after ``publish``: the routing done once, at append."""
        self._deliver = deliver

    def _batch_done(self, batch: list[_Work]) -> None:
        """In the trio thread: a batch is committed (or failed); ``_hand_out`` takes it."""
        self._finished.append(batch)
        self._finished_lot.unpark_all()

    async def _hand_out(self) -> None:
        """Fan out committed events in commit order, then release their writers."""
        while True:
            while not self._finished:
                await self._finished_lot.park()
            for work in self._finished.popleft():
                if work.routes is not None and work.error is None:
                    self._fan_out(work.result, work.routes)
                    self._committed(work.result)
                work.done.set()

    def _fan_out(self, events: list[Event | None], routes: list[Route]) -> None:
        publish, deliver = self._publish, self._deliver
        for event, route in zip(events, routes, strict=True):
            if event is None:
                continue
            if publish is not None:
                publish(event)
            if route and deliver is not None:
                deliver(event, route)

    def _serve(self) -> None:
        """The writer thread: commit everything waiting in one transaction, again and again."""
        stopping = False
        previous_start = previous_end = -math.inf
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch = [first]
            start = commit_start(first.at, previous_start, previous_end, self._commit_interval)
            stopping = self._gather(batch, start)
            previous_start = time.monotonic()
            self._commit(batch)
            previous_end = time.monotonic()
            token = self._token
            if token is not None:
                try:
                    token.run_sync_soon(self._batch_done, batch)
                except trio.RunFinishedError:
                    return
            self._since_checkpoint += 1
            if self._since_checkpoint >= CHECKPOINT_FORCED or (
                self._since_checkpoint >= CHECKPOINT_IDLE and self._queue.empty()
            ):
                self._checkpoint()

    def _gather(self, batch: list[_Work], start: float) -> bool:
        """Add to ``batch`` what arrives until ``start`` and what is queued then (writer
        thread); True when a stop came, which ends the wait at once."""
        while True:
            wait = start - time.monotonic()
            try:
                work = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                return False
            if work is _STOP:
                return True
            batch.append(work)

    def _checkpoint(self) -> None:
        """Copy the WAL into the database, without waiting for readers (writer thread)."""
        self._since_checkpoint = 0
        try:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            log.warning("journal checkpoint failed: %s", exc)

    def _commit(self, batch: list[_Work]) -> None:
        conn = self._conn
        next_id = self._next_id
        ledger = self._ledger
        try:
            conn.execute("BEGIN IMMEDIATE")
            for work in batch:
                work.result = work.run(conn)
            floor = self._floor
            if self.commits >= self._floor_due:
                floor = ledger.floor(self._next_id)
                if floor != self._floor:
                    conn.execute("UPDATE meta SET value = ? WHERE key = 'floor'", (floor,))
            conn.execute("COMMIT")
            ledger.commit()
            self._shelf.commit()
            if floor != self._floor:
                self._floor = floor
                self._floor_due = self.commits + FLOOR_EVERY
            self.commits += 1
            self.write_problem = None
            self.writes += len(batch)
            self.events_stored += sum(
                len(work.result) - work.result.count(None)
                for work in batch
                if work.routes is not None
            )
        except Exception as exc:
            self._next_id = next_id
            ledger.rollback()
            self._shelf.rollback()
            self.failed_commits += 1
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("journal rollback failed")
            if isinstance(exc, sqlite3.Error):
                error: Exception = JournalUnavailable(f"the journal cannot write: {exc}")
            else:
                log.exception("journal batch failed")
                error = JournalUnavailable(f"internal error in the journal: {exc!r}")
            self.write_problem = str(error)
            for work in batch:
                work.error = error

    async def _call(
        self, run: Callable[[sqlite3.Connection], T], routes: list[Route] | None = None
    ) -> T:
        """Run ``run`` in the writer thread, in the next transaction; returns once committed.

        ``routes``: ``run`` returns the events it stored, to be fanned out with these.
        """
        result: T = await self._queue_nowait(run, routes).outcome()
        return result

    def _queue_nowait(
        self, run: Callable[[sqlite3.Connection], Any], routes: list[Route] | None = None
    ) -> _Work:
        """Put ``run`` in the writer's queue now; its ``outcome`` is awaited by the caller.

        When the journal is not running, the work comes back failed, not queued.
        """
        work = _Work(run, routes)
        if self._token is None or self._closing:
            work.error = JournalUnavailable("the journal is not running")
            work.done.set()
        else:
            self._queue.put(work)
        return work

    # events

    @property
    def epoch(self) -> str:
        return self._epoch

    def last_id(self) -> int:
        return self._last_id

    def oldest_id(self) -> int:
        return self._oldest_id

    async def append(self, draft: EventDraft) -> Event:
        return (await self.append_many([draft]))[0]

    def append_nowait(self, draft: EventDraft) -> _PendingEvent:
        """Queue one event for the next commit now; ``wait`` returns it once committed."""
        drafts = [draft]
        routes = self._routes(drafts)
        return _PendingEvent(
            self._queue_nowait(lambda conn: self._insert(conn, drafts, routes), routes)
        )

    async def append_many(
        self, drafts: list[EventDraft], *, to_devices: Sequence[str | None] = ()
    ) -> list[Event]:
        """Store events in order; with ``to_devices``, each one also goes to that device's
        outbox in the same commit (None: to no device)."""
        return await self.settle([], drafts, to_devices=to_devices)

    async def settle(
        self,
        attempts: list[tuple[Delivery, Attempt]],
        drafts: list[EventDraft],
        *,
        to_devices: Sequence[str | None] = (),
    ) -> list[Event]:
        """Attempts and the events they made, in one transaction: one commit, one fsync."""
        record = self._attempts_writer(attempts) if attempts else None
        routes = self._routes(drafts)

        def write(conn: sqlite3.Connection) -> list[Event]:
            if record is not None:
                record(conn)
            return self._insert(conn, drafts, routes, to_devices)

        events: list[Event] = await self._call(write, routes)
        self.outbox_depth += sum(device is not None for device in to_devices)
        return events

    async def append_keyed(self, items: list[tuple[EventDraft, str | None]]) -> list[Event | None]:
        """Store events unless (device, key) was stored within the dedupe window.

        Returns the stored event, or None for a publish seen before (not stored again).
        """
        drafts = [draft for draft, _ in items]
        routes = self._routes(drafts)
        keys = [key for _, key in items]
        return await self._call(lambda conn: self._insert_keyed(conn, drafts, routes, keys), routes)

    def _routes(self, drafts: list[EventDraft]) -> list[Route]:
        snapshot = self._hooks.snapshot  # one per batch: a change applies to the next
        return [snapshot.route(draft) for draft in drafts]

    def _committed(self, stored: list[Event | None]) -> None:
        """Advance ``last_id`` past a committed batch's events (after their fan-out), so
        it moves whether or not anyone awaits the append."""
        for event in reversed(stored):
            if event is not None:
                self._last_id = max(self._last_id, event.id)
                return

    def _insert(
        self,
        conn: sqlite3.Connection,
        drafts: list[EventDraft],
        routes: list[Route],
        to_devices: Sequence[str | None] = (),
    ) -> list[Event]:
        now = time.time()
        events = [self._event_of(draft) for draft in drafts]
        self._write_events(conn, now, events, routes)
        if to_devices:
            expires = now + self._downlink_ttl
            insert_rows(
                conn,
                "INSERT INTO downlink_outbox VALUES",
                [
                    (event.id, device, expires)
                    for event, device in zip(events, to_devices, strict=True)
                    if device is not None
                ],
            )
        return events

    def _insert_keyed(
        self,
        conn: sqlite3.Connection,
        drafts: list[EventDraft],
        routes: list[Route],
        keys: list[str | None],
    ) -> list[Event | None]:
        now = time.time()
        seen = _recent_keys(
            conn,
            [(draft.device_id, key) for draft, key in zip(drafts, keys, strict=True) if key],
            now - self._dedupe_window,
        )
        stored: list[Event | None] = []
        fresh: list[Event] = []
        fresh_routes: list[Route] = []
        claims: list[tuple[str, str, int, float]] = []
        for draft, hooks, key in zip(drafts, routes, keys, strict=True):
            if key is not None:
                # A key seen within the window (or earlier in this batch) means "seen";
                # an older one is taken over.
                pair = (draft.device_id, key)
                if pair in seen:
                    stored.append(None)
                    continue
                seen.add(pair)
                claims.append((draft.device_id, key, self._next_id, now))
            event = self._event_of(draft)
            stored.append(event)
            fresh.append(event)
            fresh_routes.append(hooks)
        insert_rows(conn, "INSERT OR REPLACE INTO ingest_keys VALUES", claims)
        self._write_events(conn, now, fresh, fresh_routes)
        return stored

    def _event_of(self, draft: EventDraft) -> Event:
        """The draft numbered (in the writer thread: ids follow commit order)."""
        event = Event.from_draft(draft, self._next_id)
        self._next_id += 1
        return event

    def _write_events(
        self, conn: sqlite3.Connection, now: float, events: list[Event], routes: list[Route]
    ) -> None:
        """Events with the hooks they were routed to: their deliveries need no rows."""
        pack = msgpack.packb
        routed = self._ledger.routed
        rows = []
        for event, hooks in zip(events, routes, strict=True):
            body = pack((event.data, event.ttl, event.private, event.published_at))
            names = pack_hooks([hook.name for hook in hooks]) if hooks else None
            rows.append((event.id, now, event.name, event.device_id, event.product_id, body, names))
            if hooks:
                routed(event.id, len(hooks))
        insert_rows(conn, "INSERT INTO events VALUES", rows)

    # the downlink outbox

    async def pending_downlinks(self, after: int, limit: int) -> list[OutboxEntry]:
        """Unexpired outbox entries with ids above ``after``, oldest first."""
        rows = await self._read(
            "SELECT o.device, e.id, e.name, e.device, e.product, e.body"
            " FROM downlink_outbox o JOIN events e ON e.id = o.event_id"
            " WHERE o.event_id > ? AND o.expires > ? ORDER BY o.event_id LIMIT ?",
            (after, time.time(), limit),
        )
        return [OutboxEntry(stored_event(row[1:]), row[0]) for row in rows]

    async def downlinks_acked(self, ids: list[int]) -> None:
        def delete(conn: sqlite3.Connection) -> int:
            marks = ", ".join("?" * len(ids))
            sql = f"DELETE FROM downlink_outbox WHERE event_id IN ({marks})"
            return int(conn.execute(sql, ids).rowcount)

        self.outbox_depth -= await self._call(delete)

    async def expire_downlinks(self) -> int:
        """Drop outbox entries past their TTL; returns how many."""
        now = time.time()
        expired = await self._call(
            lambda conn: int(
                conn.execute("DELETE FROM downlink_outbox WHERE expires <= ?", (now,)).rowcount
            )
        )
        self.outbox_depth -= expired
        return expired

    async def events_after(self, after_id: int, limit: int) -> list[Event]:
        rows = await self._read(
            "SELECT id, name, device, product, body FROM events WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [stored_event(row) for row in rows]

    async def _read(self, sql: str, parameters: Sequence[Any]) -> list[Any]:
        """A query on the reader connection, in a thread (reads never wait for the writer)."""
        return await self._read_with(lambda conn: conn.execute(sql, parameters).fetchall())

    async def _read_with(self, read: Callable[[sqlite3.Connection], T]) -> T:
        """``read(connection)`` on the reader connection, in a thread, in one transaction."""

        def query() -> T:
            if self._reader is None:
                self._reader = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False
                )
            self._reader.execute("BEGIN")
            try:
                return read(self._reader)
            finally:
                self._reader.execute("COMMIT")

        try:
            return await trio.to_thread.run_sync(query, limiter=self._read_lock)
        except sqlite3.Error as exc:
            raise JournalUnavailable(f"the journal cannot read: {exc}") from None

    # the delivery log

    def problems(self) -> list[str]:
        """Why the journal cannot write now (for ``/readyz``); empty when the last commit
        worked."""
        return [self.write_problem] if self.write_problem is not None else []

    async def delivery_page(self, query: DeliveryQuery) -> DeliveryPage:
        """A page of deliveries, newest first (``delivery_log``)."""
        names = [hook.name for hook in self._hooks.hooks] if self._hooks is not None else []
        floor = self._floor
        return await self._read_with(
            lambda conn: sqlite_log.delivery_page(conn, self._epoch, floor, names, query)
        )

    async def delivery_detail(self, delivery: str) -> DeliveryDetail | None:
        """One delivery, its event and every attempt with its request and answer."""
        return await self._read_with(lambda conn: sqlite_log.delivery_detail(conn, delivery))

    async def hook_activity(self, hook: str) -> HookActivity:
        """A hook's last successes and failures, and its attempts per hour for 30 days."""
        now = time.time()
        return await self._read_with(lambda conn: sqlite_log.hook_activity(conn, hook, now))

    # deliveries

    async def record_attempts(self, attempts: list[tuple[Delivery, Attempt]]) -> None:
        await self._call(self._attempts_writer(attempts))

    def _attempts_writer(
        self, attempts: list[tuple[Delivery, Attempt]]
    ) -> Callable[[sqlite3.Connection], None]:
        """The writes that keep ``attempts`` (rows built here, in the trio thread; which
        delivery rows they need is decided in the writer thread, by the ledger)."""
        now, clock = time.time(), trio.current_time()
        outcomes = []
        rows = []
        for delivery, attempt in attempts:
            event_id = delivery.event.id
            due = next_try_at(attempt.state, delivery.due, now, clock)
            outcomes.append((event_id, delivery, attempt, due))
            rows.append(
                (
                    event_id,
                    delivery.id,
                    delivery.earlier_attempts + attempt.number,  # after a replay's earlier ones
                    now,
                    attempt.status,
                    attempt.duration,
                    attempt.reason,
                    attempt.excerpt,
                    delivery.hook,
                    attempt.state,
                    attempt.request or None,
                    due if attempt.state == "waiting" else None,
                )
            )
        counted = [(d.hook, now, attempt.state == "delivered") for d, attempt in attempts]

        def write(conn: sqlite3.Connection) -> None:
            outcome = self._ledger.outcome
            upserts = []
            updates = []
            dead = []
            for event_id, delivery, attempt, due in outcomes:
                key, hook, count = delivery.id, delivery.hook, delivery.attempts
                state, reason = attempt.state, attempt.reason
                write = outcome(event_id, key, state)
                if write is Write.UPSERT:
                    upserts.append((event_id, key, hook, state, count, due, reason))
                elif write is Write.UPDATE:
                    updates.append((count, due, reason, event_id, key))
                if state == "dead":
                    dead.append((event_id, key, hook, now, count, reason))
            if upserts:
                conn.executemany(
                    "INSERT INTO deliveries VALUES (?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (event_id, id) DO UPDATE SET state = excluded.state,"
                    " attempts = excluded.attempts, due = excluded.due, reason = excluded.reason",
                    upserts,
                )
            if updates:
                conn.executemany(
                    "UPDATE deliveries SET state = 'delivered', attempts = ?, due = ?, reason = ?"
                    " WHERE event_id = ? AND id = ?",
                    updates,
                )
            insert_rows(conn, "INSERT INTO attempts VALUES", rows)
            sqlite_log.count_hours(conn, counted)
            if dead:
                insert_rows(conn, "INSERT OR REPLACE INTO dead_letters VALUES", dead)

        return write

    async def recover(self) -> list[StoredDelivery]:
        """Every delivery not yet settled, oldest event first (replays asked for included)."""
        return await self._call(self._recover)

    def _recover(self, conn: sqlite3.Connection) -> list[StoredDelivery]:
        rows = self._taken(conn, OPEN_STATES)
        owed = owed_since(conn, self._epoch, self._ledger.floor(self._next_id))
        return sorted(rows + owed, key=lambda stored: (stored.event.id, stored.id))

    def _taken(self, conn: sqlite3.Connection, states: tuple[str, ...]) -> list[StoredDelivery]:
        """Deliveries with a row in ``states``; replays asked for become pending (taken)."""
        found = open_rows(conn, states)
        if "replay" in states:
            conn.execute("UPDATE deliveries SET state = 'pending' WHERE state = 'replay'")
        self._ledger.opened(stored.id for stored in found)
        return found

    async def take_replays(self) -> list[StoredDelivery]:
        """Deliveries asked for again (dead-letter or window replays) since the last look."""
        return await self._call(self._take_replays)

    def ask_replays(self) -> None:
        """Look for replays at the next ``take_replays`` (after this process asked for some)."""
        self._replays_asked = True

    def _take_replays(self, conn: sqlite3.Connection) -> list[StoredDelivery]:
        # data_version changes when another connection (the CLI) has committed.
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version and not self._replays_asked:
            return []
        self._data_version = version
        self._replays_asked = False
        return self._taken(conn, ("replay",))

    async def disable_hook(self, name: str, reason: str) -> None:
        """Keep the hook ``name`` disabled across restarts, while its url stays the same."""
        hook = self._hooks.get(name)
        assert hook is not None, f"no hook {name!r}"
        await self._call(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO disabled_hooks VALUES (?, ?, ?, ?)",
                (hook.name, hook.url, time.time(), reason),
            )
        )

    # hooks created through the API

    async def put_hook(self, hook: StoredHook) -> None:
        """Keep ``hook`` (or replace the one with its id) in the next commit; raises
        HookNameTaken, changing nothing, when another id has its name."""
        holder = await self._call(functools.partial(self._shelf.put, hook=hook))
        if holder is not None:
            raise HookNameTaken(hook.name, holder)

    async def delete_hook(self, hook_id: str) -> bool:
        """Delete a stored hook in the next commit; False when there was none."""
        return await self._call(functools.partial(self._shelf.delete, hook_id=hook_id))

    def stored_hooks(self) -> list[StoredHook]:
        """The hooks created through the API, in creation order: read when the journal was
        opened and kept as commits change them, so this never waits nor needs ``run``."""
        return self._shelf.hooks

    async def run_in_writer(self, run: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``run(connection)`` in the next committed transaction (admin work, tests)."""
        return await self._call(run)

    # retention

    async def prune(self) -> int:
        """Remove events older than the retention, a batch per transaction; returns how many."""
        removed = 0
        after: int | None = 0
        while after is not None:
            try:
                count, after = await self._call(functools.partial(self._prune_batch, after=after))
            except JournalUnavailable as exc:
                log.warning("pruning stopped: %s", exc)
                return removed
            removed += count
        if removed:
            log.info("pruned %d events older than the retention", removed)
        try:
            await self._call(functools.partial(sqlite_log.prune_hours, now=time.time()))
        except JournalUnavailable as exc:
            log.warning("pruning the hourly counts stopped: %s", exc)
        return removed

    def _prune_batch(self, conn: sqlite3.Connection, *, after: int) -> tuple[int, int | None]:
        """Prune among the next events after ``after``: (removed, where to go on or None)."""
        cutoff = time.time() - self._retention
        # Events are numbered in commit order, so the old ones are a prefix: read a page
        # from the oldest and stop at the first young one (no index on the time needed).
        page = conn.execute(
            "SELECT id, at FROM events WHERE id > ? ORDER BY id LIMIT ?", (after, PRUNE_BATCH)
        ).fetchall()
        rows = list(itertools.takewhile(lambda row: row[1] < cutoff, page))
        if not rows:
            return 0, None
        high = rows[-1][0]
        # Kept whole, with their attempts and rows: events with an open delivery row, and
        # those whose derived deliveries are owed (an attempt is what settles those).
        keep = (
            "SELECT event_id FROM deliveries WHERE event_id <= :high"
            " AND state IN ('pending', 'waiting', 'replay')"
            " UNION SELECT value FROM json_each(:owed)"
        )
        owed = json.dumps(self._ledger.owed_events(high + 1))
        marks = {"high": high, "owed": owed}
        for table in ("attempts", "dead_letters", "deliveries"):
            conn.execute(
                f"DELETE FROM {table} WHERE event_id <= :high AND event_id NOT IN ({keep})", marks
            )
        cursor = conn.execute(f"DELETE FROM events WHERE id <= :high AND id NOT IN ({keep})", marks)
        conn.execute(
            "DELETE FROM ingest_keys WHERE (device, key) IN"
            " (SELECT device, key FROM ingest_keys WHERE at < ? ORDER BY at LIMIT ?)",
            (time.time() - self._dedupe_window, PRUNE_BATCH * 10),
        )
        oldest = conn.execute("SELECT min(id) FROM events").fetchone()[0]
        self._oldest_id = oldest if oldest is not None else self._next_id
        return int(cursor.rowcount), high if len(rows) == PRUNE_BATCH else None

    # start and stop

    def _load_epoch(self) -> str:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
        if row is not None:
            return str(row[0])
        epoch = secrets.token_hex(4)
        self._conn.execute("INSERT INTO meta VALUES ('epoch', ?)", (epoch,))
        return epoch

    def _load_ledger(self) -> int:
        """What the ledger needs from the file: open delivery rows, and the derived
        deliveries owed from the stored floor up. Returns the stored floor."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'floor'").fetchone()
        floor = int(row[0]) if row is not None else 1
        if row is None:
            self._conn.execute("INSERT INTO meta VALUES ('floor', ?)", (floor,))
        owed: dict[int, int] = {}
        for stored in owed_since(self._conn, self._epoch, floor):
            owed[stored.event.id] = owed.get(stored.event.id, 0) + 1
        ledger = self._ledger
        for event_id, count in owed.items():  # in id order
            ledger.routed(event_id, count)
        marks = ", ".join("?" * len(OPEN_STATES))
        ledger.opened(
            key
            for (key,) in self._conn.execute(
                f"SELECT id FROM deliveries WHERE state IN ({marks})", OPEN_STATES
            )
        )
        ledger.commit()
        return floor

    def apply_disabled_hooks(self) -> None:
        """Disable the hooks whose target answered 410 Gone, while their url is the same.

        Done at open, before any stored hook is in the hook set: a stored hook's mark is kept
        until it is. Call it again (before ``run``) once they are, to apply theirs.
        """
        assert self._token is None, "the writer thread owns the connection while it runs"
        stored = {hook.name for hook in self._shelf.hooks}
        rows = self._conn.execute("SELECT hook, url FROM disabled_hooks").fetchall()
        for name, url in rows:
            found = self._hooks.get(name)
            if found is not None and found.url == url:
                if not self._hooks.is_disabled(name):
                    self._hooks.disable(name)
                    log.warning("hook %r stays disabled: its target answered 410 Gone", name)
            elif found is not None or name not in stored:  # points elsewhere now, or is gone
                self._conn.execute("DELETE FROM disabled_hooks WHERE hook = ?", (name,))

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
        if self._reader is not None:
            self._reader.close()
        if self._writer is not None and self._writer.is_alive():
            # Still inside a commit: closing its connection under it would crash the
            # process; the connection goes when the process does.
            return
        self._conn.close()

    # administration: dead letters and their replay (the SQL is in engine.journal.admin)

    async def list_dead_letters(self, query: admin.DeadLetterQuery) -> list[admin.DeadLetter]:
        """Dead letters matching ``query``, newest first (rows name their hooks themselves)."""
        rows = await self._read(*admin.dead_letters_sql(query))
        return [admin.dead_letter(row) for row in rows]

    async def replay_dead_letters(self, query: admin.DeadLetterQuery) -> admin.Replayed:
        """Queue ``query``'s dead letters again under their ids; the dispatcher looks at once."""
        now = time.time()
        replayed = await self.run_in_writer(
            lambda conn: admin.replay_dead_letters(conn, query, now)
        )
        self.ask_replays()
        return replayed


ROWS_PER_STATEMENT = 64
"""Rows one INSERT carries. Each statement step releases and retakes the GIL; with the
event loop busy, retaking it is what a commit waits for, so fewer steps mean faster
commits."""


def _recent_keys(
    conn: sqlite3.Connection, pairs: list[tuple[str, str]], cutoff: float
) -> set[tuple[str, str]]:
    """The (device, key) pairs of ``pairs`` stored at or after ``cutoff``: one query per
    ``ROWS_PER_STATEMENT`` pairs, not one per key."""
    found: set[tuple[str, str]] = set()
    for start in range(0, len(pairs), ROWS_PER_STATEMENT):
        chunk = pairs[start : start + ROWS_PER_STATEMENT]
        values = ", ".join(["(?, ?)"] * len(chunk))
        # A join on the primary key: with "(device, key) IN (VALUES ...)" the planner
        # scans the whole window through the index on ``at`` instead.
        found.update(
            conn.execute(
                f"SELECT k.device, k.key FROM (VALUES {values}) AS v JOIN ingest_keys AS k"
                " ON k.device = v.column1 AND k.key = v.column2 WHERE k.at >= ?",
                [*itertools.chain.from_iterable(chunk), cutoff],
            )
        )
    return found


def insert_rows(conn: sqlite3.Connection, insert: str, rows: Sequence[Sequence[Any]]) -> None:
    """``insert`` ("INSERT INTO t VALUES") with every row, many rows per statement."""
    if not rows:
        return
    one = "(" + ", ".join("?" * len(rows[0])) + ")"
    full = len(rows) - len(rows) % ROWS_PER_STATEMENT
    if full:
        many = f"{insert} " + ", ".join([one] * ROWS_PER_STATEMENT)
        for start in range(0, full, ROWS_PER_STATEMENT):
            chunk = rows[start : start + ROWS_PER_STATEMENT]
            conn.execute(many, list(itertools.chain.from_iterable(chunk)))
    if full < len(rows):
        conn.executemany(f"{insert} {one}", rows[full:])
