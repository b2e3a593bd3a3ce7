"""The ``hookwire`` command: ``main`` parses the command line and runs the command.

Owns one module per command group: ``commands`` (the parser and dispatch), ``serve`` (run,
check, receiver), ``token``, ``render``, ``particle`` (import), ``admin`` (dead letters and
replay), ``bench`` (hands over to the source checkout's runner), with ``receiver`` (the
webhook receiver's server) and ``_config`` (a config loaded for a command, its errors
printed). May import every package.
"""

from engine.cli.commands import main

__all__ = ["main"]
