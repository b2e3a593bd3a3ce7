"""Server-Sent Events streams: which events a stream wants, and the task that owns one."""

from __future__ import annotations

from collections.abc import Callable

import trio

from engine.api.auth import Principal
from engine.api.broadcast import Broadcaster, accept_all
from engine.bus import EventFilter, SubscriptionDropped
from engine.http.server import StreamResponse, nowait_sender
from engine.http.sse import HEADERS, PREAMBLE
from engine.model import Event


def event_filter(
    principal: Principal,
    prefix: str = "",
    device_id: str | None = None,
    product_id: int | None = None,
) -> EventFilter:
    """The test a stream applies to each event: route narrowing, prefix and token reach."""
    checks: list[Callable[[Event], bool]] = []
    if prefix:
        checks.append(lambda e: e.name.startswith(prefix))
    if device_id is not None:
        checks.append(lambda e: e.device_id == device_id)
    if product_id is not None:
        checks.append(lambda e: e.product_id == product_id)
    if principal.products:
        products = principal.products
        checks.append(lambda e: e.product_id in products)
    if principal.devices:
        devices = principal.devices
        checks.append(lambda e: e.device_id in devices)
    if not checks:
        return accept_all
    if len(checks) == 1:
        return checks[0]
    return lambda e: all(check(e) for check in checks)


class EventStream(StreamResponse):
    """One subscriber's stream: ``:ok``, then whatever the broadcaster could not send itself."""

    def __init__(self, broadcaster: Broadcaster, accepts: EventFilter) -> None:
        super().__init__(200, HEADERS)
        self._broadcaster = broadcaster
        self._accepts = accepts

    async def run(self, stream: trio.abc.SendStream) -> None:
        with trio.CancelScope() as scope:
            sink = self._broadcaster.attach(self._accepts, nowait_sender(stream), scope.cancel)
            try:
                await stream.send_all(PREAMBLE)
                while True:
                    data = sink.take()
                    if data is None:
                        await sink.wait()
                    else:
                        await stream.send_all(data)
            except SubscriptionDropped:
                pass
            finally:
                self._broadcaster.detach(sink)
