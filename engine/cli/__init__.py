"""The ``hookwire`` command: ``main`` parses the command line and runs the command.

Owns: ``commands`` (run, check, token, render, import, bench), ``admin`` (dead letters and
replay), ``receiver`` (a webhook receiver that prints what it gets), ``_config`` (loading a
config for a command, with its errors printed). May import every package.
"""

from engine.cli.commands import main

__all__ = ["main"]
