"""What a reload of the config file changes in its hooks, compiling only those that
changed (a file of 10,000 hooks with one new hook compiles one). ``reread_config`` reads
the file; the rest has no I/O."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from engine.config.settings import Config, ConfigError, HookConfig
from engine.config.settings import load_config as read_config
from engine.hooks.hook import Hook, compile_hook
from engine.hooks.templates import HookTemplateErrors, check_partials

_COMPARED = tuple(f.name for f in dataclasses.fields(HookConfig) if f.name != "where")
"""What makes two definitions the same hook: every field but where it sits in the file."""


@dataclass(frozen=True, slots=True)
class HookChanges:
    added: tuple[Hook, ...]
    changed: tuple[Hook, ...]  # the new definitions
    removed: tuple[str, ...]  # names

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def reread_config(config: Config, current: Sequence[Hook]) -> tuple[Config, HookChanges]:
    """The config file as it now is, its hooks compiled where they changed from ``current``
    (the running config file hooks); raises ConfigError with every problem. Blocking: run
    it in a thread."""
    new = read_config(config.path)
    hooks, changes = reload_hooks(
        current, new, recompile=config.partials != new.partials, retry=config.delivery.retry
    )
    return dataclasses.replace(new, hooks=hooks), changes


def reload_hooks(
    current: Sequence[Hook], new: Config, *, recompile: bool, retry: tuple[float, ...]
) -> tuple[tuple[Hook, ...], HookChanges]:
    """The config file's hooks after a reload, and what changed, hooks matched by name.

    A hook whose definition is the same is kept as compiled (``recompile``: the partials
    changed, so every hook is compiled again); the others are compiled with ``retry`` as
    the default schedule. Raises ConfigError with every template problem, as ``hookwire
    check`` words them.
    """
    before = {hook.name: hook for hook in current}
    problems = check_partials(new.partials) if recompile else []
    hooks: list[Hook] = []
    added: list[Hook] = []
    changed: list[Hook] = []
    for config in new.hooks:
        old = before.get(config.name)
        if old is not None and not recompile and _definition(old) == _definition(config):
            hooks.append(old if old.where == config.where else _moved(old, config.where))
            continue
        try:
            hook = compile_hook(config, new.partials, retry)
        except HookTemplateErrors as exc:
            problems.extend(exc.problems)
            continue
        hooks.append(hook)
        (added if old is None else changed).append(hook)
    if problems:
        raise ConfigError([f"{new.path}: {problem}" for problem in problems])
    kept = {hook.name for hook in new.hooks}
    removed = tuple(name for name in before if name not in kept)
    return tuple(hooks), HookChanges(tuple(added), tuple(changed), removed)


def _definition(hook: HookConfig) -> tuple[object, ...]:
    return tuple(getattr(hook, name) for name in _COMPARED)


def _moved(hook: Hook, where: str) -> Hook:
    return dataclasses.replace(hook, where=where)
