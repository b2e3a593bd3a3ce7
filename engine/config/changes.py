"""What a reload of the config file can apply live, and what needs a restart. No I/O."""

from __future__ import annotations

import dataclasses

from engine.config.settings import Config

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
