"""In-process fan-out of committed events to subscribers.

The bus assigns nothing: events arrive from the journal already numbered, in id order,
and ``last_id`` is the newest it has carried: every event acknowledged to its publisher
is at or below it (the journal hands events here before their append returns). Each
subscriber has a bounded buffer; publishing never waits. A subscriber whose buffer
is full is dropped on the spot (it can resume from the journal with Last-Event-ID),
so one slow reader never slows publishing or the other subscribers.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import trio

from engine.core.model import Event

log = logging.getLogger("hookwire.bus")

EventFilter = Callable[[Event], bool]


class SubscriptionDropped(Exception):
    """The subscriber fell behind by a full buffer and was removed from the bus."""


class Subscription:
    """One subscriber's view of the bus: a bounded queue of matching events."""

    __slots__ = ("_bus", "_lot", "_on_drop", "_queue", "accepts", "capacity", "dropped")

    def __init__(
        self,
        bus: Bus,
        accepts: EventFilter,
        capacity: int,
        on_drop: Callable[[], object] | None,
    ) -> None:
        self._bus = bus
        self.accepts = accepts
        self.capacity = capacity
        self._queue: deque[Event] = deque()
        self._lot = trio.lowlevel.ParkingLot()
        self._on_drop = on_drop
        self.dropped = False

    def __repr__(self) -> str:
        state = "dropped" if self.dropped else f"queued={len(self._queue)}/{self.capacity}"
        return f"<Subscription {state}>"

    def offer(self, event: Event) -> None:
        """Queue ``event`` if it matches; drop this subscriber if its buffer is full."""
        if not self.accepts(event):
            return
        if len(self._queue) >= self.capacity:
            self._drop()
            return
        self._queue.append(event)
        if self._lot:
            self._lot.unpark_all()

    def _drop(self) -> None:
        self.dropped = True
        self._queue.clear()
        self._bus.unsubscribe(self)
        self._lot.unpark_all()
        if self._on_drop is not None:
            self._on_drop()

    def receive_batch_nowait(self) -> list[Event]:
        """Everything queued so far (maybe nothing); raises if the subscriber was dropped."""
        if self.dropped:
            raise SubscriptionDropped
        batch = list(self._queue)
        self._queue.clear()
        return batch

    async def receive_batch(self) -> list[Event]:
        """Wait for at least one event, then take everything queued."""
        while not self._queue and not self.dropped:
            await self._lot.park()
        return self.receive_batch_nowait()

    def close(self) -> None:
        """Leave the bus; safe to call more than once."""
        self._bus.unsubscribe(self)


class Bus:
    """Fans each published event out to every current subscriber, without waiting."""

    def __init__(self) -> None:
        self._subscribers: dict[Subscription, None] = {}
        self._consumers: list[Callable[[Event], object]] = []
        self.last_id = 0
        """The newest event id published: what a new subscriber has already missed."""

    def __repr__(self) -> str:
        return f"<Bus subscribers={len(self._subscribers)} last_id={self.last_id}>"

    def __len__(self) -> int:
        return len(self._subscribers)

    def subscribe(
        self,
        accepts: EventFilter,
        capacity: int,
        on_drop: Callable[[], object] | None = None,
    ) -> Subscription:
        """Start receiving events that ``accepts``; ``on_drop`` runs if it falls behind."""
        if capacity < 1:
            raise ValueError("a subscription needs room for at least one event")
        subscription = Subscription(self, accepts, capacity, on_drop)
        self._subscribers[subscription] = None
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.pop(subscription, None)

    def add_listener(self, consume: Callable[[Event], object]) -> None:
        """Call ``consume(event)`` for every event, synchronously, as it is published.

        For the engine's own consumers (delivery), which must see every event and take
        only a moment each: they are never dropped.
        """
        self._consumers.append(consume)

    def remove_listener(self, consume: Callable[[Event], object]) -> None:
        if consume in self._consumers:
            self._consumers.remove(consume)

    def publish(self, event: Event) -> None:
        """Hand a committed event to every consumer and subscriber; never blocks."""
        self.last_id = max(self.last_id, event.id)
        for consume in self._consumers:
            try:
                consume(event)
            except Exception:
                log.exception("event %d: a consumer failed", event.id)
        # offer() may drop (and so remove) a subscriber: iterate over a snapshot.
        for subscription in list(self._subscribers):
            subscription.offer(event)
