"""The live hook set: each hook compiled once (``hook``, ``templates``), which hooks an
event triggers and the one place that enables and disables them (``router.HookSet``).

Hooks are found by name; every change makes a new immutable snapshot, so routing never races
a change. May import core, templates and config. No I/O.
"""

from engine.hooks.hook import Hook, compile_hook, compile_hooks, load_config
from engine.hooks.router import Deliver, HookSet, HookSnapshot, Route

__all__ = [
    "Deliver",
    "Hook",
    "HookSet",
    "HookSnapshot",
    "Route",
    "compile_hook",
    "compile_hooks",
    "load_config",
]
