"""What `hookwire run` would refuse beyond the config's own values, checked without starting
anything: the SQLite journal's place, the TLS pair. `hookwire check` reports these too."""

from __future__ import annotations

import os

from engine.config.settings import Config
from engine.http.tls import TlsError, server_context
from engine.journal.schema import JournalError, check_location


def problems(config: Config) -> list[str]:
    """One line per thing ``run`` would refuse, each naming the file and the key."""
    found: list[str] = []
    journal = config.journal
    if journal.backend == "sqlite":
        try:
            check_location(journal.path, create=True)
        except JournalError as exc:
            found.append(f"{config.path}: journal.path: {exc}")
    server = config.server
    pair = (server.tls_cert, server.tls_key)
    # (a file that cannot be read is the config's own problem, told already)
    if (
        server.tls_cert is not None
        and server.tls_key is not None
        and all(os.access(file, os.R_OK) for file in pair if file is not None)
    ):
        try:
            server_context(server.tls_cert, server.tls_key)
        except TlsError as exc:
            found.append(f"{config.path}: server.{exc.setting}: {exc}")
    return found
