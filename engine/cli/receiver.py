"""`hookwire receiver`: a local webhook receiver for trying hooks (prints what arrives)."""

from __future__ import annotations

import signal
import sys
from typing import TextIO

import orjson
import trio

from engine.config.settings import LimitsConfig
from engine.http.h1 import Request
from engine.http.server import HttpServer, Response


class Receiver:
    """Answers every request 200 with a small JSON body and prints one line about it."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.received = 0
        self._out = out

    async def handle(self, request: Request) -> Response:
        await trio.lowlevel.checkpoint()
        self.received += 1
        hook_id = (request.header(b"webhook-id") or b"-").decode("latin-1")
        body = request.body.decode("utf-8", "replace")
        print(f"{request.method} {request.target} {hook_id} {body}", file=self._out, flush=True)
        return Response(200, orjson.dumps({"ok": True, "received": self.received}))


async def serve_receiver(host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM."""
    receiver = Receiver()
    server = HttpServer(receiver.handle, LimitsConfig(max_body_bytes=1 << 20))
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            [(bound_host, bound_port), *_] = await nursery.start(server.serve, host, port)
            print(f"receiving webhooks on http://{bound_host}:{bound_port}", file=sys.stderr)
            async for _ in signals:
                server.shutdown()
                break
