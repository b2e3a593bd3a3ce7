"""What a reload of the config file can apply live, and what needs a restart. No I/O."""

from __future__ import annotations

import dataclasses

from engine.config._fields import seconds_text
from engine.config.settings import LEASE_MARGIN, Config

LIVE = frozenset({"path", "auth", "partials", "templates", "hooks"})
"""The settings a reload applies at once: tokens, partials, the templates language and hooks."""


def needs_restart(old: Config, new: Config) -> list[str]:
    """The settings that differ and apply only at start: ``server.port``, ``products``..."""
    changed: list[str] = []
    for section in dataclasses.fields(Config):
        if section.name in LIVE:
            continue
        before, after = getattr(old, section.name), getattr(new, section.name)
        if before == after:
            continue
        if dataclasses.is_dataclass(before) and not isinstance(before, type):
            changed += [
                f"{section.name}.{key.name}"
                for key in dataclasses.fields(before)
                if getattr(before, key.name) != getattr(after, key.name)
            ]
        else:
            changed.append(section.name)
    return changed


def applied(old: Config, new: Config) -> Config:
    """``old`` with what a reload applies taken from ``new``: what the engine runs with."""
    return dataclasses.replace(
        old, auth=new.auth, partials=new.partials, templates=new.templates, hooks=new.hooks
    )


def lease_problems(running: Config, new: Config) -> list[str]:
    """What a reload must refuse on the Redis journal: hooks whose ``timeout`` the running
    lease does not cover. Hooks apply live but ``[cluster] lease`` only at start, so a
    file that raised both still waits for a restart; an attempt outliving its partition's
    lease would be sent twice. (``[delivery] timeout`` too applies only at start.)"""
    if running.journal.backend != "redis":
        return []
    lease = running.cluster.lease
    return [
        f"{new.path}: {hook.where}.timeout: {seconds_text(hook.timeout)} needs a lease above "
        f"{seconds_text(hook.timeout + LEASE_MARGIN)} and the running one is "
        f"{seconds_text(lease)} ([cluster] lease applies at start): restart to apply it"
        for hook in new.hooks
        if hook.timeout is not None and hook.timeout + LEASE_MARGIN >= lease
    ]
