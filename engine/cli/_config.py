"""Loading the config for a CLI command: problems go to stderr, one a line."""

from __future__ import annotations

import sys

from engine.config.settings import Config, ConfigError
from engine.hooks import load_config


def load_or_report(path: str) -> Config | None:
    """The config at ``path``, or None after printing every problem in it."""
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None
