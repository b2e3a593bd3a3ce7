"""Hooks created through the REST API, as the SQLite journal keeps them (``api_hooks``).

The table is the truth; a copy of its committed rows stays in memory, so the daemon can read
them the moment the journal is opened, and at any time after without I/O. The writer thread
makes a transaction's changes on a copy of that copy and publishes it whole when the
transaction commits (drops it when it fails): a reader in another thread sees committed
hooks only, never a dict being changed. A put whose name another id holds changes nothing
and says who holds it; it never fails the transaction it shares with others' work.
"""

from __future__ import annotations

import sqlite3

from engine.core.model import StoredHook

_UPSERT = (
    "INSERT INTO api_hooks (id, name, document, product, created_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET name = excluded.name, document = excluded.document,"
    " product = excluded.product, created_at = excluded.created_at"
)


class HookShelf:
    """The stored hooks: the committed ones for any thread, a transaction's for the writer."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        rows = conn.execute(
            "SELECT id, name, document, product, created_at FROM api_hooks ORDER BY seq"
        )
        self._committed = {row[0]: StoredHook(*row) for row in rows}  # replaced, never changed
        self._staged: dict[str, StoredHook] | None = None  # the open transaction's

    def __repr__(self) -> str:
        return f"<HookShelf hooks={len(self._committed)}>"

    @property
    def hooks(self) -> list[StoredHook]:
        """The committed hooks, in creation order."""
        return list(self._committed.values())

    def put(self, conn: sqlite3.Connection, hook: StoredHook) -> str | None:
        """Insert ``hook`` or replace the one with its id (writer thread); when another id
        holds its name, change nothing and return that id."""
        holder = conn.execute(
            "SELECT id FROM api_hooks WHERE name = ? AND id != ?", (hook.name, hook.id)
        ).fetchone()
        if holder is not None:
            return str(holder[0])
        conn.execute(_UPSERT, (hook.id, hook.name, hook.document, hook.product, hook.created_at))
        self._stage()[hook.id] = hook  # a dict keeps a replaced key's place, as the row its seq
        return None

    def delete(self, conn: sqlite3.Connection, hook_id: str) -> bool:
        """Delete the hook ``hook_id`` (writer thread); False when there was none."""
        if not conn.execute("DELETE FROM api_hooks WHERE id = ?", (hook_id,)).rowcount:
            return False
        del self._stage()[hook_id]
        return True

    def commit(self) -> None:
        """The transaction committed: its changes are what readers see now."""
        if self._staged is not None:
            self._committed, self._staged = self._staged, None

    def rollback(self) -> None:
        """The transaction failed: forget its changes."""
        self._staged = None

    def _stage(self) -> dict[str, StoredHook]:
        if self._staged is None:
            self._staged = dict(self._committed)
        return self._staged
