"""Deliveries in the main process: the journal's events in, outcomes back to the journal.

``Deliveries`` owns what runs beside the journal whatever sends the requests: the writer of
outcomes, the hand-over of routed events, recovery at start and the polling for replays.
The sending is done by a ``Sender``: the in-process ``Dispatcher`` (``[delivery] workers =
0``) or the ``WorkerPool`` of delivery worker processes.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any, Protocol
from urllib.parse import urlsplit

import trio

from engine.config.settings import Config
from engine.core.model import Event, StoredDelivery
from engine.delivery.dispatcher import RESOLVE_TIMEOUT
from engine.delivery.outcomes import JournalOutcomes
from engine.delivery.ssrf import Network, Refused, Unresolvable, vetted_address
from engine.delivery.trial import try_hook
from engine.delivery.workers import origin_key, static_origin
from engine.hooks.hook import Hook
from engine.hooks.router import Route
from engine.journal import Journal, JournalUnavailable
from engine.journal.redis import RedisJournal

log = logging.getLogger("hookwire.delivery")


REPLAY_POLL = 1.0
"""Seconds between looks for deliveries replayed from the CLI or the API."""


class Sender(Protocol):
    """Sends deliveries: takes them synchronously once ``run`` has started."""

    def accept(self, event: Event, hooks: Route) -> None:
        """Deliver a committed event to the hooks it was routed to."""
        ...

    def restore(self, stored: StoredDelivery) -> None:
        """Deliver again one the journal kept (recovered or replayed)."""
        ...

    def define(self, name: str, document: str, product: int | None) -> None:
        """A hook the API created or changed (the hook set has it already)."""
        ...

    async def forget(self, name: str) -> None:
        """End a removed hook's deliveries; returns once none of its attempts is in flight."""
        ...

    async def release(self, names: Collection[str]) -> None:
        """Drop the queued deliveries of these hooks unsent (cluster mode: another node owns
        them now); attempts in flight end as they may."""
        ...

    async def reconfigure(self, config: Config, digest: str) -> None:
        """A reload applied (the hook set has its hooks already): tell whoever keeps a copy,
        and return once they have it."""
        ...

    async def run(self, *, task_status: trio.TaskStatus[None] = ...) -> None: ...


class Deliveries:
    """The journal's side of delivery; ``run`` serves until cancelled."""

    def __init__(
        self,
        journal: Journal,
        sender: Sender,
        outcomes: JournalOutcomes,
        allow: tuple[Network, ...] = (),
        timeout: float = 20.0,
    ) -> None:
        self._journal = journal
        self.sender = sender
        self._outcomes = outcomes
        self._allow = allow
        self._default_timeout = timeout  # [delivery] timeout

    # hooks created, changed and removed through the API

    def define(self, name: str, document: str, product: int | None) -> None:
        self.sender.define(name, document, product)

    async def forget(self, name: str) -> None:
        await self.sender.forget(name)

    async def trial(self, hook: Hook, event: Event) -> dict[str, Any]:
        """One request through ``hook`` for ``event``, from this process, with its timeout."""
        return await try_hook(hook, event, allow=self._allow, timeout=self._timeout(hook))

    def _timeout(self, hook: Hook) -> float:
        return hook.timeout or self._default_timeout

    async def refusal(self, hook: Hook) -> str | None:
        """Why the SSRF guard refuses the hook's URL (None: allowed, or known only once an
        event renders it, or a name that does not resolve yet: deliveries retry those)."""
        origin = static_origin(hook.url)
        key = origin_key(origin) if origin is not None else None
        if key is None:
            return None
        parts = urlsplit(key)
        assert parts.hostname is not None and parts.port is not None
        try:
            await vetted_address(parts.hostname, parts.port, self._allow, RESOLVE_TIMEOUT)
        except Refused as exc:
            return str(exc)
        except Unresolvable:
            return None
        return None

    def __repr__(self) -> str:
        return f"<Deliveries {self.sender!r}>"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        journal = self._journal
        try:
            async with trio.open_nursery() as nursery:
                # The writer outlives the sender in the nursery's cancellation: what the
                # sender reports on its way out is still written (JournalOutcomes.run).
                nursery.start_soon(self._outcomes.run)
                await nursery.start(self.sender.run)
                if isinstance(journal, RedisJournal):  # partitions taken over, given up
                    journal.hand_restores_to(self.sender.restore)
                    journal.hand_releases_to(self.sender.release)
                journal.hand_routes_to(self.sender.accept)
                recovered = await journal.recover()
                for stored in recovered:
                    self.sender.restore(stored)
                if recovered:
                    log.info("recovered %d deliveries not yet settled", len(recovered))
                task_status.started()
                while True:
                    await trio.sleep(REPLAY_POLL)
                    await self._take_replays()
        finally:
            journal.hand_routes_to(None)
            if isinstance(journal, RedisJournal):
                journal.hand_restores_to(None)
                journal.hand_releases_to(None)

    async def _take_replays(self) -> None:
        try:
            replays = await self._journal.take_replays()
        except JournalUnavailable as exc:
            log.warning("cannot look for replays: %s", exc)
            return
        for stored in replays:
            self.sender.restore(stored)
        if replays:
            log.info("replaying %d deliveries", len(replays))
