"""systemd's readiness protocol (``Type=notify``): a datagram to ``$NOTIFY_SOCKET``.

The daemon says ``READY=1`` once it serves and ``STOPPING=1`` when it begins to stop. With
no ``NOTIFY_SOCKET`` (not started by systemd) nothing is sent. The address is a filesystem
path, or starts with ``@`` for Linux's abstract namespace (a leading NUL byte). A failed
send is logged and otherwise ignored: readiness is advice to the service manager, and the
daemon serves the same without it.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("hookwire")

READY = b"READY=1"
STOPPING = b"STOPPING=1"


def socket_address(value: str) -> str | bytes | None:
    """``$NOTIFY_SOCKET`` as an AF_UNIX address (bytes for an abstract one), or None when it
    names none."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # systemd sends absolute paths or "@name"; anything else is not for us


def notify(message: bytes, environ: dict[str, str] | None = None) -> bool:
    """Send ``message`` to the service manager if one listens; True when it was sent."""
    address = socket_address((os.environ if environ is None else environ).get("NOTIFY_SOCKET", ""))
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message)
    except OSError as exc:
        log.warning("cannot tell the service manager %s: %s", message.decode(), exc)
        return False
    return True
