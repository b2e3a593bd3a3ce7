"""The ``hookwire`` command: ``main`` parses the command line and runs the command.

Owns one module per command group: ``commands`` (the parser and dispatch), ``serve`` (run,
check, receiver), ``init`` (a starter config), ``token``, ``render``, ``particle`` (import),
``admin`` (dead letters and replay), ``deliveries`` (the delivery log), ``hooks`` and
``cluster`` (a running daemon's hooks, a cluster's state), ``bench`` (hands over to the
source checkout's runner), with ``receiver`` (the webhook receiver's server), ``preflight``
(what ``run`` would refuse, for ``check``) and ``_config`` (a config loaded for a command,
its errors printed). May import every package.
"""

from engine.cli.commands import main

__all__ = ["main"]
