"""The benchmarks, one file each; the suite's scenarios are found here by listing the folder.

A module registers suite scenarios with ``@scenario(...)`` (bench/harness/scenario.py);
``discover()`` imports every module of this folder (except ``_private`` ones) and collects
them, so bench/run.py names none. A module may also be a script with options of its own
(``main``), run from the repository root as ``python -m bench.scenarios.NAME``; one that is
only a suite scenario runs alone the same way, through the suite's runner (``run_alone``).
Importing a module must do nothing but define things.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

from bench.harness.scenario import Registered


class DuplicateScenario(ValueError):
    """Two modules registered the same scenario name."""


def discover() -> list[Registered]:
    """Every scenario the modules of this folder register, in the suite's order."""
    found: dict[str, Registered] = {}
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda module: module.name):
        if module.name.startswith("_"):
            continue
        loaded = importlib.import_module(f"{__name__}.{module.name}")
        for value in vars(loaded).values():
            if not isinstance(value, Registered) or found.get(value.name) is value:
                continue
            if value.name in found:
                raise DuplicateScenario(f"scenario {value.name!r} is registered twice")
            found[value.name] = value
    return sorted(found.values(), key=lambda entry: (entry.order, entry.name))


def run_alone(*registered: Registered) -> int:
    """``bench/run.py NAME... [options]`` for a module's own scenarios, with sys.argv's options."""
    from bench.run import main

    return main([*(entry.name for entry in registered), *sys.argv[1:]])
