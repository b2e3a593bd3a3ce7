"""The SQLite journal's file: opening it safely, its schema, and forward migrations.

A database is ours when its ``application_id`` says so; its ``user_version`` is the schema
version. Opening never overwrites or "repairs" a file: a file that is not a SQLite database,
a database of another application, or one from a newer Hookwire is refused with a message
that says which and what to do.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgpack

from engine.core.model import Event

log = logging.getLogger("hookwire.journal")

APPLICATION_ID = 0x486B5752
"""``PRAGMA application_id`` of a Hookwire journal ("HkWR")."""

MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1: the first schema.
    """
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;

    -- body: msgpack [data, ttl, private, published_at]; at: unix time of the commit
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        name TEXT NOT NULL,
        device TEXT NOT NULL,
        product INTEGER,
        body BLOB NOT NULL
    );

    -- state: pending | waiting | replay (asked for, not yet taken) | delivered | dead
    -- due: unix time of the next attempt
    CREATE TABLE deliveries (
        event_id INTEGER NOT NULL,
        id TEXT NOT NULL,
        hook TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        due REAL NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (event_id, id)
    ) WITHOUT ROWID;
    CREATE INDEX deliveries_open ON deliveries (event_id)
        WHERE state IN ('pending', 'waiting', 'replay');

    CREATE TABLE attempts (
        event_id INTEGER NOT NULL,
        delivery_id TEXT NOT NULL,
        number INTEGER NOT NULL,
        at REAL NOT NULL,
        status INTEGER,
        duration REAL NOT NULL,
        reason TEXT NOT NULL,
        excerpt BLOB NOT NULL,
        PRIMARY KEY (event_id, delivery_id, number)
    ) WITHOUT ROWID;

    CREATE TABLE dead_letters (
        event_id INTEGER NOT NULL,
        delivery_id TEXT NOT NULL,
        hook TEXT NOT NULL,
        at REAL NOT NULL,
        attempts INTEGER NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (event_id, delivery_id)
    ) WITHOUT ROWID;
    CREATE INDEX dead_letters_at ON dead_letters (at);

    -- a hook whose target answered 410 Gone, while its url stays what it was
    CREATE TABLE disabled_hooks (
        hook TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        at REAL NOT NULL,
        reason TEXT NOT NULL
    ) WITHOUT ROWID;

    -- messages to devices not yet acknowledged by a gateway; the event is the message
    CREATE TABLE downlink_outbox (
        event_id INTEGER PRIMARY KEY,
        device TEXT NOT NULL,
        expires REAL NOT NULL
    );

    -- publisher keys seen lately, so a retransmitted publish is stored once (the gateway)
    CREATE TABLE ingest_keys (
        device TEXT NOT NULL,
        key TEXT NOT NULL,
        event_id INTEGER NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (device, key)
    ) WITHOUT ROWID;
    CREATE INDEX ingest_keys_at ON ingest_keys (at);
    """,
    # 1 -> 2: an event keeps the hooks it was routed to (msgpack list of names, NULL for
    # none), and a delivery gets a row only when it waits for a retry, dies or is replayed:
    # one without a row is pending until it has an attempt, then delivered. Below the floor
    # (meta) every event's deliveries are settled or have a row. Every delivery of a
    # version 1 journal has its row, so the floor starts above its newest event.
    """
    ALTER TABLE events ADD COLUMN hooks BLOB;
    INSERT INTO meta SELECT 'floor', coalesce(max(id), 0) + 1 FROM events;
    """,
    # 2 -> 3: hooks created through the REST API, kept until deleted there (never pruned).
    # seq is their creation order: a replace keeps its row, so its place. It is the rowid
    # itself, which VACUUM keeps (an implicit rowid it may renumber), hence no WITHOUT ROWID.
    """
    CREATE TABLE api_hooks (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL UNIQUE,
        document TEXT NOT NULL,
        product INTEGER,
        created_at TEXT NOT NULL
    );
    """,
    # 3 -> 4: the delivery log. An attempt keeps its hook, the delivery's state after it,
    # the request it sent (masked) and, when it left the delivery waiting, its next try (unix
    # time); attempts kept before have NULL there and are shown by delivery id only.
    # hook_hours counts each hook's attempts per hour (30 days kept).
    """
    ALTER TABLE attempts ADD COLUMN hook TEXT;
    ALTER TABLE attempts ADD COLUMN state TEXT;
    ALTER TABLE attempts ADD COLUMN request BLOB;
    ALTER TABLE attempts ADD COLUMN due REAL;
    CREATE INDEX attempts_by_hook ON attempts (hook, state, at);
    CREATE TABLE hook_hours (
        hook TEXT NOT NULL,
        hour INTEGER NOT NULL,
        delivered INTEGER NOT NULL,
        failed INTEGER NOT NULL,
        PRIMARY KEY (hook, hour)
    ) WITHOUT ROWID;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def stored_event(row: Sequence[Any]) -> Event:
    """An event from its row's (id, name, device, product, body) columns."""
    event_id, name, device, product, body = row
    data, ttl, private, published_at = msgpack.unpackb(body)
    return Event(event_id, name, data, ttl, private, published_at, device, product)


def pack_hooks(names: Sequence[str]) -> bytes | None:
    """The ``events.hooks`` column: the names of the hooks an event was routed to."""
    return msgpack.packb(list(names)) if names else None


def unpack_hooks(column: bytes | None) -> list[str]:
    """The hook names an ``events.hooks`` column holds (none when NULL)."""
    return list(msgpack.unpackb(column)) if column is not None else []


class JournalError(Exception):
    """The journal file cannot be used; the message names the file and what to do."""


def open_database(
    path: Path,
    *,
    synchronous: str = "full",
    create: bool = True,
    migrations: tuple[str, ...] = MIGRATIONS,
) -> sqlite3.Connection:
    """Open (or create) the journal at ``path``, check it is ours, and migrate it forward."""
    check_location(path, create)
    try:
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, cached_statements=64
        )
    except sqlite3.Error as exc:
        raise JournalError(f"{path}: cannot open the journal: {exc}") from None
    try:
        _configure(conn, path, synchronous)
        _migrate(conn, path, migrations)
    except BaseException:
        conn.close()
        raise
    return conn


def check_location(path: Path, create: bool) -> None:
    """Raise JournalError saying why the journal cannot be at ``path`` (``create``: the
    file may be missing, its folder may not)."""
    if path.exists():
        if path.is_dir():
            raise JournalError(f"{path}: journal.path is a directory; name a file in it")
        if not os.access(path, os.R_OK | os.W_OK):
            raise JournalError(f"{path}: the journal is not readable and writable by this user")
        return
    if not create:
        raise JournalError(f"{path}: no journal here (has the daemon ever run with this config?)")
    folder = path.parent
    if not folder.is_dir():
        raise JournalError(
            f"{path}: the folder {folder} does not exist; create it or change journal.path"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise JournalError(f"{path}: the folder {folder} is not writable by this user")


def _configure(conn: sqlite3.Connection, path: Path, synchronous: str) -> None:
    try:
        application_id = conn.execute("PRAGMA application_id").fetchone()[0]
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc):
            raise JournalError(
                f"{path}: not a SQLite database ({exc}); refusing to touch it. "
                "Move it away or change journal.path"
            ) from None
        raise JournalError(f"{path}: cannot open the journal: {exc}") from None
    if application_id not in (0, APPLICATION_ID):
        raise JournalError(
            f"{path}: a SQLite database of another application "
            f"(application_id {application_id:#x}); refusing to touch it"
        )
    if mode.lower() != "wal":
        raise JournalError(f"{path}: cannot switch the journal to WAL mode (got {mode!r})")
    conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA journal_size_limit=67108864")


def _migrate(conn: sqlite3.Connection, path: Path, migrations: tuple[str, ...]) -> None:
    """Bring the schema to the latest version, every step in one transaction: a failure
    leaves the file as it was."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    latest = len(migrations)
    if version > latest:
        raise JournalError(
            f"{path}: written by a newer Hookwire (schema version {version}; this one knows "
            f"up to {latest}). Upgrade Hookwire, or point journal.path at another file"
        )
    if version == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_schema WHERE type = 'table'")
        if tables.fetchone()[0]:
            raise JournalError(
                f"{path}: a SQLite database that is not a Hookwire journal; refusing to touch it"
            )
    if version == latest:
        return
    number = version
    try:
        conn.execute("BEGIN IMMEDIATE")
        for number in range(version, latest):
            for statement in _statements(migrations[number]):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version={latest}")
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise JournalError(
            f"{path}: migrating the schema from version {number} to {number + 1} failed: {exc}"
        ) from None
    if version:  # a new file is created at the latest version: nothing to tell
        log.info("%s: journal schema migrated from version %d to %d", path, version, latest)


def _statements(script: str) -> list[str]:
    """Split a migration into statements (they hold no semicolons inside)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
