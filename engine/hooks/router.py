"""Which hooks an event triggers (no I/O).

A hook's ``event`` is a prefix of the names it takes; its device and product filters
narrow that. ``hook-*`` events (the engine's own) trigger nothing. Lookup costs one dict
probe per prefix length of the event name, however many hooks there are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from engine.config.settings import HookConfig
from engine.core.model import Event, EventDraft

INTERNAL_PREFIX = "hook-"


class Router:
    """Matches events to the enabled hooks of the config; hooks can be disabled at run time."""

    def __init__(self, hooks: Sequence[HookConfig]) -> None:
        self.hooks = tuple(hooks)
        self._by_prefix: dict[str, list[int]] = defaultdict(list)
        for index, hook in enumerate(self.hooks):
            self._by_prefix[hook.event].append(index)
        self._lengths = sorted({len(prefix) for prefix in self._by_prefix})
        self._disabled = {index for index, hook in enumerate(self.hooks) if hook.disabled}

    def __repr__(self) -> str:
        return f"<Router hooks={len(self.hooks)} disabled={len(self._disabled)}>"

    def match(self, event: Event | EventDraft) -> list[int]:
        """Indices of the hooks ``event`` triggers, in config order."""
        name = event.name
        if name.startswith(INTERNAL_PREFIX) or not self._lengths:
            return []
        found: list[int] = []
        for length in self._lengths:
            if length > len(name):
                break
            for index in self._by_prefix.get(name[:length], ()):
                if index not in self._disabled and self._admits(self.hooks[index], event):
                    found.append(index)
        found.sort()
        return found

    @staticmethod
    def _admits(hook: HookConfig, event: Event | EventDraft) -> bool:
        if hook.devices and event.device_id not in hook.devices:
            return False
        return hook.product is None or hook.product == event.product_id

    def disable(self, index: int) -> None:
        """Stop routing to a hook (its target answered 410 Gone)."""
        self._disabled.add(index)

    def enable(self, index: int) -> None:
        if not self.hooks[index].disabled:
            self._disabled.discard(index)

    def is_disabled(self, index: int) -> bool:
        return index in self._disabled
