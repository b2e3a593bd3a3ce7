"""Hooks as the API shows them: an id each, where each comes from, when it was made.

The config file's hooks get ids derived from their names (the same on every start); hooks
created through the API get random ones, as Particle's do. No I/O.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

CONFIG, API = "config", "api"


def config_hook_id(name: str) -> str:
    """The id of a config file hook: 24 hex digits from its name, stable across restarts."""
    return hashlib.sha256(b"config\0" + name.encode()).hexdigest()[:24]


def new_hook_id() -> str:
    """A fresh id for a hook created through the API: 24 hex digits, as Particle's."""
    return secrets.token_hex(12)


@dataclass(frozen=True, slots=True)
class HookEntry:
    id: str
    name: str
    source: str  # CONFIG or API
    created_at: str  # ISO 8601 UTC
    product: int | None
    document: dict[str, object] | None = None  # an API hook's Particle document


class HookCatalog:
    """Every hook by id and by name, in the order they were made (config file first)."""

    def __init__(self, entries: Iterable[HookEntry] = ()) -> None:
        self._by_id: dict[str, HookEntry] = {}
        self._by_name: dict[str, HookEntry] = {}
        for entry in entries:
            self.put(entry)

    def __repr__(self) -> str:
        return f"<HookCatalog hooks={len(self._by_id)}>"

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, hook_id: str) -> HookEntry | None:
        return self._by_id.get(hook_id)

    def named(self, name: str) -> HookEntry | None:
        return self._by_name.get(name)

    def put(self, entry: HookEntry) -> None:
        """Add an entry, or replace the one with its id (keeping its place)."""
        old = self._by_id.get(entry.id)
        if old is not None:
            del self._by_name[old.name]
        self._by_id[entry.id] = entry
        self._by_name[entry.name] = entry

    def remove(self, hook_id: str) -> HookEntry | None:
        entry = self._by_id.pop(hook_id, None)
        if entry is not None:
            del self._by_name[entry.name]
        return entry

    def count(self, source: str) -> int:
        """How many hooks come from ``source`` (CONFIG or API)."""
        return sum(1 for entry in self._by_id.values() if entry.source == source)

    def from_source(self, source: str) -> list[HookEntry]:
        """Every hook from ``source`` (CONFIG or API), whatever its product, oldest first."""
        return [entry for entry in self._by_id.values() if entry.source == source]

    def entries(self, product: int | None) -> list[HookEntry]:
        """The hooks of a product (None: those of no product), oldest first."""
        return [entry for entry in self._by_id.values() if entry.product == product]
