"""Small tools for tests that talk to a real engine over loopback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import trio

from engine.daemon import Engine
from engine.model import Event, EventDraft

HOOKWIRE = [sys.executable, "-m", "engine.cli"]
ROOT = Path(__file__).resolve().parents[1]


async def run_cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """Run `hookwire ARGS` from the repository root and capture what it prints."""
    return await trio.run_process(
        [*HOOKWIRE, *args],
        stdin=stdin,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        cwd=ROOT,
    )


async def wait_until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Poll ``condition`` until it holds; for effects that cross a real socket."""
    with trio.fail_after(within):
        # The condition changes on the far side of a socket: there is no event to wait on.
        while not condition():  # noqa: ASYNC110
            await trio.sleep(0.005)


async def publish_direct(
    engine: Engine, name: str, data: str = "", *, device: str = "api", product: int | None = None
) -> Event:
    """Store and fan out an event the way ingest does, without an HTTP round trip."""
    draft = EventDraft(name, data, 60, False, "2026-11-28T10:00:00.000Z", device, product)
    event = await engine.journal.append(draft)
    return event


class RawClient:
    """A socket that sends bytes we choose and reads exactly what comes back."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def read_until(self, marker: bytes, within: float = 5.0) -> bytes:
        """Everything up to and including ``marker``."""
        with trio.fail_after(within):
            while marker not in self.buffer:
                chunk = await self.stream.receive_some(65536)
                if not chunk:
                    raise EOFError(f"closed before {marker!r}; got {bytes(self.buffer)!r}")
                self.buffer += chunk
        end = self.buffer.index(marker) + len(marker)
        out = bytes(self.buffer[:end])
        del self.buffer[:end]
        return out

    async def read_to_eof(self, within: float = 5.0) -> bytes:
        with trio.fail_after(within):
            while chunk := await self.stream.receive_some(65536):
                self.buffer += chunk
        out = bytes(self.buffer)
        self.buffer.clear()
        return out

    async def aclose(self) -> None:
        await self.stream.aclose()
