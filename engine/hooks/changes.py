"""What a reload of the config file changes in its hooks, compiling only those that
changed (a file of 10,000 hooks with one new hook compiles one). ``reread_config`` reads
the file; the rest has no I/O."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from engine.config.settings import Config, ConfigError, HookConfig
from engine.config.settings import load_config as read_config
from engine.hooks.hook import Hook, compile_hook
from engine.hooks.templates import HookTemplateErrors, check_partials

SWITCH_INTERVAL = 0.0002
"""Seconds a thread holds the GIL while another waits for it, during a reload's reading."""

_COMPARED = tuple(f.name for f in dataclasses.fields(HookConfig) if f.name != "where")
"""What makes two definitions the same hook: every field but where it sits in the file."""


@dataclass(frozen=True, slots=True)
class HookChanges:
    added: tuple[Hook, ...]
    changed: tuple[Hook, ...]  # the new definitions
    removed: tuple[str, ...]  # names

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


@dataclass(frozen=True, slots=True)
class Reread:
    """The config file as a reload found it."""

    config: Config  # its hooks compiled
    changes: HookChanges
    digest: str  # of its hooks: what delivery workers check they read the same file by


def reread_config(config: Config, current: Sequence[Hook]) -> Reread:
    """The config file as it now is, its hooks compiled where they changed from ``current``
    (the running config file hooks); raises ConfigError with every problem. Blocking: run
    it in a thread, where it gives way to the event loop (``_giving_way``)."""
    with _giving_way():
        new = read_config(config.path)
        hooks, changes = reload_hooks(
            current, new, recompile=config.partials != new.partials, retry=config.delivery.retry
        )
        return Reread(dataclasses.replace(new, hooks=hooks), changes, hooks_digest(hooks))


def hooks_digest(hooks: Sequence[HookConfig]) -> str:
    """A digest of the hooks as configured: a worker that read a different file differs."""
    return hashlib.sha256(repr(tuple(hooks)).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _giving_way() -> Iterator[None]:
    """While a thread reads a big config file: no cyclic garbage collection, and the GIL
    handed over every 0.2 ms instead of 5. Reading 10,000 hooks made full collections over
    the engine's heap, and the event loop, which gives the GIL up at every system call,
    waited 5 ms each time to get it back: deliveries stopped for 350 ms (python -m
    bench.scenarios.hooks --only reload, workers = 0); with both, 26-47 ms. Both settings
    are the process's: they are put back at once."""
    interval = sys.getswitchinterval()
    collecting = gc.isenabled()
    gc.disable()
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        if collecting:
            gc.enable()


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
