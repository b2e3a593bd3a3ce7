"""The difference between two versions of the config file's hooks, for a reload. No I/O."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from engine.hooks.hook import Hook


@dataclass(frozen=True, slots=True)
class HookChanges:
    added: tuple[Hook, ...]
    changed: tuple[Hook, ...]  # the new definitions
    removed: tuple[str, ...]  # names

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def hook_changes(old: Sequence[Hook], new: Sequence[Hook], *, recompiled: bool) -> HookChanges:
    """What turns ``old`` into ``new``, hooks matched by name; ``recompiled`` (the partials
    changed) counts every hook kept as changed, since its templates may render otherwise."""
    before = {hook.name: hook for hook in old}
    after = {hook.name: hook for hook in new}
    added = tuple(hook for name, hook in after.items() if name not in before)
    changed = tuple(
        hook
        for name, hook in after.items()
        if name in before and (recompiled or not _same(before[name], hook))
    )
    removed = tuple(name for name in before if name not in after)
    return HookChanges(added, changed, removed)


def _same(a: Hook, b: Hook) -> bool:
    """The same definition, wherever it sits in the file."""
    return dataclasses.replace(a, where="") == dataclasses.replace(b, where="")
