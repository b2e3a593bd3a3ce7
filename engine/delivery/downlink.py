"""The way back to devices: hook responses and errors addressed to one device.

The gateway issue attaches the device channel; until then ``MemoryDownlink`` keeps what
was sent, bounded, so tests and `/healthz` can see it.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from engine.core.model import Event

MEMORY_DOWNLINK_KEEP = 10_000
"""Messages kept by the in-memory downlink; the oldest go first."""


class Downlink(Protocol):
    durable: bool
    """True when the journal's outbox keeps messages until the device channel acks them."""

    def send_nowait(self, device_id: str, event: Event) -> None:
        """Queue ``event`` for ``device_id``; never blocks."""
        ...


class MemoryDownlink:
    """Keeps the newest messages for inspection (no device channel yet)."""

    durable = False

    def __init__(self, keep: int = MEMORY_DOWNLINK_KEEP) -> None:
        self.sent: deque[tuple[str, Event]] = deque(maxlen=keep)

    def __repr__(self) -> str:
        return f"<MemoryDownlink sent={len(self.sent)}>"

    def send_nowait(self, device_id: str, event: Event) -> None:
        self.sent.append((device_id, event))
