"""Where a dispatcher's results go: attempts, the hook events they made, hooks it disabled.

The dispatcher reports synchronously (it never waits on storage); an ``Outcomes`` queues
what it is told and writes it in batches from its own task. ``JournalOutcomes`` writes to the
journal and the downlink (the main process); a worker process has its own kind that sends
them to the main process, which writes them here too.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Protocol

import trio

from engine.core.model import Attempt, Delivery, EventDraft
from engine.delivery.downlink import Downlink
from engine.journal import Journal, JournalUnavailable
from engine.metrics import DeliveryCounts

log = logging.getLogger("hookwire.delivery")

JOURNAL_RETRY = 1.0
"""Seconds before hook events the journal could not store are offered to it again."""

FINAL_FLUSH = 3.0
"""Seconds allowed at shutdown to record what attempts gave."""


HOOK_REMOVED = "hook removed"
"""The reason a delivery of a hook removed meanwhile ends with (replayable if it returns)."""


def count_attempt(
    counts: DeliveryCounts, hook: str, status: int | None, state: str, latency: float | None
) -> None:
    """Count one attempt in the delivery metrics; ``latency`` when it delivered."""
    status_class = f"{status // 100}xx" if status is not None else "error"
    counts.attempts[status_class] += 1
    if state in ("delivered", "dead"):
        counts.outcomes[hook, state] += 1
    if state == "delivered":
        counts.last_delivered[hook] = time.time()
        if latency is not None:
            counts.observe_latency(latency)
    else:
        counts.last_failed[hook] = (time.time(), status_class)


class Outcomes(Protocol):
    """What the dispatcher reports to; every method returns at once."""

    def attempt(self, delivery: Delivery, attempt: Attempt) -> None:
        """Record one attempt's outcome (and the delivery's state after it)."""
        ...

    def emit(self, draft: EventDraft, device: str | None) -> None:
        """Store an event of the engine's own, then fan it out (and send it to ``device``)."""
        ...

    def disabled(self, hook: str) -> None:
        """A hook's target answered 410 Gone: keep it disabled across restarts."""
        ...


def give_up_unsent(
    outcomes: Outcomes, counts: DeliveryCounts | None, delivery: Delivery, reason: str
) -> None:
    """End a delivery that was never sent as a dead letter saying ``reason``; counted
    when ``counts`` is given (a worker's are counted by the main process)."""
    delivery.attempts += 1
    delivery.state = "dead"
    delivery.last_reason = reason
    if counts is not None:
        count_attempt(counts, delivery.hook, None, "dead", None)
    outcomes.attempt(
        delivery, Attempt(delivery.id, delivery.attempts, None, 0.0, reason, b"", "dead")
    )


class JournalOutcomes:
    """Outcomes written to the journal, as many per commit as have gathered; ``run`` writes."""

    def __init__(self, journal: Journal, downlink: Downlink) -> None:
        self._journal = journal
        self._downlink = downlink
        self._attempts: deque[tuple[Delivery, Attempt]] = deque()
        self._events: deque[tuple[EventDraft, str | None]] = deque()
        self._disabled: list[str] = []
        self._lot = trio.lowlevel.ParkingLot()

    def __repr__(self) -> str:
        return f"<JournalOutcomes attempts={len(self._attempts)} events={len(self._events)}>"

    def attempt(self, delivery: Delivery, attempt: Attempt) -> None:
        self._attempts.append((delivery, attempt))
        self._lot.unpark_all()

    def emit(self, draft: EventDraft, device: str | None) -> None:
        self._events.append((draft, device))
        self._lot.unpark_all()

    def disabled(self, hook: str) -> None:
        self._disabled.append(hook)
        self._lot.unpark_all()

    async def run(self) -> None:
        """Write what gathers until cancelled; then a last write, bounded in time."""
        try:
            while True:
                while not self._events and not self._attempts and not self._disabled:
                    await self._lot.park()
                if not await self.flush():
                    await trio.sleep(JOURNAL_RETRY)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(FINAL_FLUSH):
                await self.flush()

    async def flush(self) -> bool:
        """One write of everything gathered; False when the journal refused part of it.

        Attempts the journal could not take are not kept: their deliveries stay open on
        disk, so a restart sends them again under the same id. Hook events are kept and
        offered again, so a response is not lost while the disk is full.
        """
        while self._disabled:
            name = self._disabled.pop()
            try:
                await self._journal.disable_hook(name, "410 Gone")
            except JournalUnavailable as exc:
                log.error("hook %r disabled for now only: %s", name, exc)
        if not self._attempts and not self._events:
            return True
        attempts = list(self._attempts)
        self._attempts.clear()
        batch = list(self._events)
        self._events.clear()
        devices = [device for _, device in batch] if self._downlink.durable else ()
        try:
            # One commit for both: each fsync costs the writer ~85 µs of CPU.
            events = await self._journal.settle(
                attempts, [draft for draft, _ in batch], to_devices=devices
            )
        except JournalUnavailable as exc:
            if attempts:
                log.error("%d attempts not recorded: %s", len(attempts), exc)
            if batch:
                log.error("%d hook events not stored yet: %s", len(batch), exc)
                self._events.extendleft(reversed(batch))
            return False
        for event, (_, device) in zip(events, batch, strict=True):
            if device is not None:
                self._downlink.send_nowait(device, event)
        return True
