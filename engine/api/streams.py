"""Server-Sent Events streams: which events a stream wants, and the task that writes them."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import orjson
import trio

from engine.api.auth import Principal
from engine.bus import Bus, EventFilter, Subscription, SubscriptionDropped
from engine.http.server import Send, StreamResponse
from engine.http.sse import HEADERS, PREAMBLE, format_comment, format_event
from engine.model import Event

KEEPALIVE = format_comment("keepalive")

FRAME_CACHE_SIZE = 4096
"""Recent frames kept encoded: every subscriber of an event shares one encoding."""


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
        return lambda e: True
    if len(checks) == 1:
        return checks[0]
    return lambda e: all(check(e) for check in checks)


class FrameCache:
    """Encodes each event's SSE frame once, however many streams send it."""

    def __init__(self, size: int = FRAME_CACHE_SIZE) -> None:
        self._size = size
        self._frames: OrderedDict[int, bytes] = OrderedDict()

    def frame(self, event: Event) -> bytes:
        frame = self._frames.get(event.id)
        if frame is None:
            frame = format_event(event.name, event.id, event_json(event))
            self._frames[event.id] = frame
            if len(self._frames) > self._size:
                self._frames.popitem(last=False)
        return frame


def event_json(event: Event) -> bytes:
    """The ``data:`` line of an event, as Particle's streams send it."""
    body: dict[str, object] = {
        "data": event.data,
        "ttl": event.ttl,
        "published_at": event.published_at,
        "coreid": event.device_id,
    }
    if event.product_id is not None:
        body["productID"] = event.product_id
    return orjson.dumps(body)


class StreamStats:
    """What the streams report to metrics; a small interface so tests need no registry."""

    def opened(self) -> None: ...
    def closed(self) -> None: ...
    def sent(self, n: int) -> None: ...
    def dropped(self) -> None: ...


class EventStream(StreamResponse):
    """One subscriber's stream: subscribe, send ``:ok``, then events and keepalives."""

    def __init__(
        self,
        bus: Bus,
        accepts: EventFilter,
        *,
        buffer: int,
        keepalive: float,
        frames: FrameCache,
        stats: StreamStats,
    ) -> None:
        super().__init__(200, HEADERS)
        self._bus = bus
        self._accepts = accepts
        self._buffer = buffer
        self._keepalive = keepalive
        self._frames = frames
        self._stats = stats

    async def run(self, send: Send) -> None:
        with trio.CancelScope() as scope:
            subscription = self._bus.subscribe(self._accepts, self._buffer, on_drop=scope.cancel)
            self._stats.opened()
            try:
                await send(PREAMBLE)
                await self._pump(subscription, send)
            except SubscriptionDropped:
                pass
            finally:
                subscription.close()
                self._stats.closed()
                if subscription.dropped:
                    self._stats.dropped()

    async def _pump(self, subscription: Subscription, send: Send) -> None:
        frame = self._frames.frame
        while True:
            with trio.move_on_after(self._keepalive) as idle:
                batch = await subscription.receive_batch()
            if idle.cancelled_caught:
                await send(KEEPALIVE)
                continue
            await send(b"".join([frame(event) for event in batch]))
            self._stats.sent(len(batch))
