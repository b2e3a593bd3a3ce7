"""Runs webhook deliveries: committed events to the hooks they were routed to, attempts,
retries, responses.

Every committed event that triggers hooks comes to ``accept`` synchronously, with the hooks
the hook set routed it to at append, so no event is skipped however busy the engine is and
none is routed twice; each of those hooks gets a Delivery with a stable id (sent as
``webhook-id`` on every attempt) queued at its destination. Deliveries kept by the journal
(recovered, replayed, or handed over by the main process) come to ``restore``. Attempts run
in the destination's nursery; what they give goes to an ``Outcomes`` (the journal, or the
main process for a worker), and responses and errors go back as ``hook-response`` /
``hook-error`` events to the bus and the downlink.
"""

from __future__ import annotations

import logging
import random
import ssl
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, Protocol

import trio

from engine.config.settings import Config
from engine.core import retry
from engine.core.events import utc_now_iso
from engine.core.fdlimit import open_file_limit
from engine.core.model import (
    INTERNAL_DEVICE_ID,
    REST_DEVICE_ID,
    Attempt,
    Delivery,
    Event,
    EventDraft,
    StoredDelivery,
    delivery_id,
)
from engine.core.ratelimit import TokenBucket
from engine.delivery.breaker import BreakerState
from engine.delivery.destination import Destination, Job
from engine.delivery.failure_log import DEAD_LETTER, DISABLED, WINDOW, FailedAttempt, FailureLog
from engine.delivery.outcomes import HOOK_REMOVED, Outcomes, count_attempt, give_up_unsent
from engine.delivery.request import (
    EventParts,
    PreparedRequest,
    RequestBuilder,
    RequestError,
    sent_request,
)
from engine.delivery.responses import (
    SLEEPING,
    response_events,
    response_text,
    status_line,
    topic_is_valid,
)
from engine.delivery.ssrf import Refused, Unresolvable, vetted_address
from engine.delivery.turns import Turns
from engine.delivery.wire import Item
from engine.hooks.hook import Hook
from engine.hooks.router import HookSet, Route
from engine.http.client import (
    ConnectError,
    ConnectionBudget,
    ConnectionPool,
    ConnectTimeout,
    HttpClientError,
    Origin,
    ReadTimeout,
    Response,
    TLSError,
)
from engine.metrics import DeliveryCounts
from engine.templates.context import event_context

log = logging.getLogger("hookwire.delivery")

EXCERPT_BYTES = 2048
"""The start of a response body kept with each attempt."""

ADDRESS_TTL = 60.0
"""Seconds a vetted address is trusted before the name is resolved (and vetted) again."""

RESOLVE_TIMEOUT = 5.0


def _failure_of(error: HttpClientError) -> retry.Failure:
    """The kind of a transport error, for the retry policy (decided on types, not text)."""
    if isinstance(error, ReadTimeout | ConnectTimeout):
        return retry.Failure.TIMEOUT
    if isinstance(error, ConnectError):
        return retry.Failure.CONNECT
    if isinstance(error, TLSError):
        return retry.Failure.TLS
    return retry.Failure.PROTOCOL


class _Slot:
    """An in-flight slot of a destination, released exactly once."""

    __slots__ = ("_destination",)

    def __init__(self, destination: Destination) -> None:
        self._destination: Destination | None = destination

    def release(self) -> None:
        if self._destination is not None:
            self._destination.attempt_done()
            self._destination = None


class Transport(Protocol):
    """Sends requests to one destination: a ConnectionPool, or a fake in tests."""

    @property
    def address(self) -> str: ...

    async def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes = b"",
        *,
        timeout: float,  # noqa: ASYNC109 (the pool's own deadline names the phase)
        on_sent: Callable[[], object] | None = None,
    ) -> Response: ...

    async def aclose(self) -> None: ...


OpenTransport = Callable[[Origin, str, int, bool], Transport]
"""(origin, vetted address, max connections, verify TLS) -> a transport."""


class Dispatcher:
    """Owns every destination and delivery; ``run`` serves until cancelled."""

    def __init__(
        self,
        config: Config,
        outcomes: Outcomes,
        counts: DeliveryCounts | None,
        *,
        epoch: str,
        rng: random.Random | None = None,
        ssl_context: ssl.SSLContext | None = None,
        open_transport: OpenTransport | None = None,
        hooks: HookSet | None = None,
    ) -> None:
        self._config = config
        self._outcomes = outcomes
        self._epoch = epoch  # the journal's, for delivery ids
        self._rng = rng or random.Random()
        self._ssl_context = ssl_context
        self.hooks = (
            hooks
            if hooks is not None
            else HookSet(config.hooks, config.partials, config.delivery.retry)
        )
        self._requests = RequestBuilder()
        self._counts = counts
        self._buckets: dict[str, TokenBucket] = {}  # by hook name, shared by its destinations
        self._destinations: dict[tuple[Origin, bool], Destination] = {}
        self._pools: dict[Destination, tuple[Transport, float]] = {}
        self._open_transport: OpenTransport = open_transport or self._connection_pool
        self._attempting: dict[str, int] = {}  # attempts in flight, by hook name
        self._forgetting: dict[str, trio.Event] = {}  # set when a removed hook's last ends
        limit = config.delivery.connection_limit(open_file_limit())
        self._budget = ConnectionBudget(limit)
        # Half as many attempts as connections: the other half stay open between a
        # destination's attempts, instead of closing for the next destination in line.
        self._turns: Turns[Destination] = Turns(max(1, limit // 2), Destination.wake)
        self._nursery: trio.Nursery | None = None
        self._failures = FailureLog()  # which failed attempts are logged, and when

    def __repr__(self) -> str:
        return f"<Dispatcher destinations={len(self._destinations)} {self.hooks!r}>"

    async def quiesce(self) -> None:
        """Start no more attempts, and return once every attempt in flight has ended (and
        reported); what is queued stays unsent."""
        async with trio.open_nursery() as nursery:
            for destination in self._destinations.values():
                nursery.start_soon(destination.quiesce)

    @property
    def destinations(self) -> list[Destination]:
        return list(self._destinations.values())

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the destinations' schedulers and attempts until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._serve_failure_log)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for line in self._failures.drain(trio.current_time()):
                log.log(line.level, "%s", line.text)
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                for pool, _ in self._pools.values():
                    await pool.aclose()

    async def _serve_failure_log(self) -> None:
        """Log the failures the failure log held back, when they are due."""
        failures = self._failures
        while True:
            now = trio.current_time()
            for line in failures.due(now):
                log.log(line.level, "%s", line.text)
            due = failures.next_due()
            # What is held back from now on is due WINDOW after it at the earliest: waking
            # at least this often, none is logged late.
            await trio.sleep_until(now + WINDOW if due is None else min(due, now + WINDOW))

    # deliveries (synchronous: the journal hands over every committed event with its hooks)

    def accept(self, event: Event, hooks: Route) -> None:
        """Queue ``event`` to each of ``hooks``, the hooks the journal routed it to."""
        if not hooks or self._nursery is None:
            return
        parts = EventParts(event, event_context(event))
        current = self.hooks.current
        for hook in hooks:
            key = delivery_id(self._epoch, event.id, hook.tag)
            if not current(hook):  # removed since the event was routed
                self._settle_unsent(Delivery(key, event, hook.name), hook, HOOK_REMOVED)
                continue
            job = self._job(Delivery(key, event, hook.name), hook, parts)
            if job is not None:
                self._destination(job.request, hook).submit(job)

    def _job(self, delivery: Delivery, hook: Hook, parts: EventParts) -> Job | None:
        """A delivery's request, built; None when it cannot be (a permanent failure)."""
        try:
            request = self._requests.build(hook, hook.templates, parts, delivery.id)
        except RequestError as exc:
            self._fail_unsent(delivery, hook, str(exc), parts.context)
            return None
        lane = (hook.name, delivery.event.device_id) if hook.ordered else None
        return Job(delivery, hook, request, parts.context, lane, trio.current_time())

    def restore(self, stored: StoredDelivery) -> None:
        """Queue a delivery the journal kept: recovered after a restart, or replayed."""
        self.resume(
            stored.event, [(stored.hook, stored.id, stored.attempts, stored.recorded, stored.due)]
        )

    def resume(self, event: Event, items: Iterable[Item]) -> None:
        """Queue deliveries of one event that were kept (by the journal, or by the main
        process for a worker): (hook, id, attempts, attempts on record, unix time due)."""
        assert self._nursery is not None, "resume runs while the dispatcher runs"
        parts: EventParts | None = None  # the event's variables, made once for its hooks
        now = time.time()
        hooks = self.hooks
        for name, key, attempts, recorded, due in items:
            hook = hooks.get(name)
            delivery = Delivery(key, event, name, attempts)
            delivery.earlier_attempts = recorded - attempts
            why = "is no longer configured" if hook is None else hooks.why_disabled(name)
            if hook is None or why is not None:
                self._settle_unsent(delivery, None, f"hook {name!r} {why}")
                continue
            if parts is None:
                parts = EventParts(event, event_context(event))
            job = self._job(delivery, hook, parts)
            if job is None:
                continue
            destination = self._destination(job.request, hook)
            wait = due - now
            if wait > 0 and job.lane is None:
                delivery.state = "waiting"
                delivery.due = job.accepted_at + wait
                destination.retry_later(job, delivery.due)
            else:
                destination.submit(job)

    def _destination(self, request: PreparedRequest, hook: Hook) -> Destination:
        if hook.rate and hook.name not in self._buckets:
            # One bucket per hook, whichever of its destinations a job goes to.
            self._buckets[hook.name] = TokenBucket(
                hook.rate, hook.burst or max(1.0, hook.rate), 0.0
            )
        key = (request.target, hook.reject_unauthorized)
        destination = self._destinations.get(key)
        capacity = hook.max_in_flight or self._config.delivery.max_in_flight
        if destination is None:
            destination = Destination(
                request.target,
                hook.reject_unauthorized,
                capacity,
                self._attempt,
                self._buckets,
                self._turns,
            )
            self._destinations[key] = destination
            assert self._nursery is not None
            self._nursery.start_soon(destination.run)
        elif capacity > destination.capacity:
            destination.capacity = capacity
        return destination

    # attempts

    async def _attempt(self, destination: Destination, job: Job) -> None:
        """One try of a delivery; holds one of the destination's in-flight slots."""
        name = job.hook.name
        attempting = self._attempting
        attempting[name] = attempting.get(name, 0) + 1
        slot = _Slot(destination)
        try:
            if not self.hooks.current(job.hook):
                # Removed after the destination started this attempt, before it ran: the
                # removal may already have been answered, so nothing may be sent.
                self._settle_unsent(job.delivery, job.hook, HOOK_REMOVED)
                destination.finished(job)
                return
            sent = await self._send(destination, job)
            if sent is None:
                return  # requeued unsent: the breaker opened meanwhile
            response, reason, failure, duration = sent
            hook = job.hook
            self._settle(destination, job, hook, response, reason, failure, duration, slot.release)
        finally:
            slot.release()
            if attempting[name] > 1:
                attempting[name] -= 1
            else:
                del attempting[name]
                ended = self._forgetting.get(name)
                if ended is not None:
                    ended.set()

    def define(self, name: str, document: str, product: int | None) -> None:
        """A hook the API created or changed: nothing to do, the hook set is shared."""

    async def reconfigure(self, config: Config, digest: str) -> None:
        """A reload applied: nothing to do, the hook set is shared (the delivery settings
        apply at start)."""

    async def release(self, names: Collection[str]) -> None:
        """Drop the queued deliveries of these hooks (``drop``)."""
        await trio.lowlevel.checkpoint()
        self.drop(names)

    def drop(self, names: Collection[str]) -> list[str]:
        """Drop the queued deliveries of these hooks, unsent and unrecorded: another node
        owns them now (cluster mode) and the journal still has them for it. Attempts in
        flight end as they may (the lease outlasts them). Returns the ids dropped."""
        dropped = []
        for destination in self._destinations.values():
            for name in names:
                for job in destination.take_hook(name):
                    destination.finished(job)
                    dropped.append(job.delivery.id)
        return dropped

    async def forget(self, name: str) -> None:
        """End a removed hook's deliveries: those queued become dead letters ("hook
        removed"); returns once none of its attempts is in flight (those end as they may,
        without a retry)."""
        self._failures.forget(name)
        for destination in self._destinations.values():
            for job in destination.take_hook(name):
                self._settle_unsent(job.delivery, job.hook, HOOK_REMOVED)
                destination.finished(job)
        while name in self._attempting:
            ended = self._forgetting[name] = trio.Event()
            try:
                await ended.wait()
            finally:
                self._forgetting.pop(name, None)

    async def _send(
        self, destination: Destination, job: Job
    ) -> tuple[Response | None, str, retry.Failure | None, float] | None:
        """(response, reason, failure, seconds), or None if the job went back unsent."""
        delivery, request = job.delivery, job.request
        hook = job.hook
        started = trio.current_time()
        try:
            pool = await self._pool(destination)
        except Refused as exc:
            delivery.attempts += 1
            return None, str(exc), retry.Failure.REFUSED, trio.current_time() - started
        except Unresolvable as exc:
            delivery.attempts += 1
            reason = f"{exc} from {request.target.host}"
            return None, reason, retry.Failure.CONNECT, trio.current_time() - started
        if destination.breaker.state is BreakerState.OPEN:
            # An attempt in flight opened it while this one got ready: wait, unsent.
            destination.requeue(job)
            return None
        delivery.attempts += 1
        delivery.state = "in_flight"
        headers = request.headers
        signer = hook.signer
        if signer is not None:
            headers = headers + signer.attempt_headers(delivery.id, int(time.time()), request.body)
        try:
            response = await pool.request(
                request.method,
                request.path,
                headers,
                request.body,
                timeout=hook.timeout or self._config.delivery.timeout,
                on_sent=lambda: self._emit(f"hook-sent/{delivery.event.name}", "", delivery, False),
            )
        except HttpClientError as exc:
            reason = f"{exc} from {request.target.host}"
            return None, reason, _failure_of(exc), trio.current_time() - started
        return response, str(response.status), None, trio.current_time() - started

    async def _pool(self, destination: Destination) -> Transport:
        now = trio.current_time()
        cached = self._pools.get(destination)
        if cached is not None and cached[1] > now:
            return cached[0]
        target = destination.target
        address = await vetted_address(
            target.host, target.port, self._config.delivery.allow_networks, RESOLVE_TIMEOUT
        )
        if cached is not None:
            old = cached[0]
            if old.address == address:
                self._pools[destination] = (old, now + ADDRESS_TTL)
                return old
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await old.aclose()
        pool = self._open_transport(target, address, destination.capacity, destination.verify_tls)
        self._pools[destination] = (pool, now + ADDRESS_TTL)
        return pool

    def _connection_pool(
        self, origin: Origin, address: str, capacity: int, verify_tls: bool
    ) -> ConnectionPool:
        return ConnectionPool(
            origin,
            address=address,
            max_connections=capacity,
            verify_tls=verify_tls,
            ssl_context=self._ssl_context,
            budget=self._budget,
        )

    def _settle(
        self,
        destination: Destination,
        job: Job,
        hook: Hook,
        response: Response | None,
        reason: str,
        failure: retry.Failure | None,
        duration: float,
        release: Callable[[], None],
    ) -> None:
        """Decide what an attempt's outcome means; all state changes, no waiting."""
        delivery = job.delivery
        now = trio.current_time()
        status = response.status if response is not None else None
        error = reason
        if response is not None:
            verdict = retry.classify_status(response.status)
            if verdict is not retry.Verdict.SUCCESS:
                reason = status_line(response.status, destination.target.host)
                error = f"status {response.status} from {destination.target.authority}"
        else:
            assert failure is not None
            verdict = retry.classify_failure(failure)
        opened = destination.breaker.record(verdict is not retry.Verdict.RETRY, now)
        # Free the slot only now: the next send must see the breaker this outcome left.
        release()
        if opened:
            self._emit_error(delivery, hook, SLEEPING, job.context)
        delivery.last_reason = reason
        delay = None
        current = self.hooks.current(hook)
        ending = DISABLED if verdict is retry.Verdict.DISABLE and current else DEAD_LETTER
        if verdict is retry.Verdict.RETRY and not current:
            reason = delivery.last_reason = f"{reason}; {HOOK_REMOVED}"
            ending = HOOK_REMOVED
        elif verdict is retry.Verdict.RETRY:
            retry_after = retry.parse_retry_after(
                response.header(b"retry-after") if response is not None else None, time.time()
            )
            delay = hook.schedule.next_delay(delivery.attempts, self._rng, retry_after)
        if verdict is retry.Verdict.SUCCESS:
            delivery.state = "delivered"
        elif delay is not None:
            delivery.state = "waiting"
            delivery.due = now + delay
        else:
            delivery.state = "dead"
        excerpt = response.body[:EXCERPT_BYTES] if response is not None else b""
        self._count(hook, status, delivery, job)
        self._outcomes.attempt(
            delivery,
            Attempt(
                delivery.id,
                delivery.attempts,
                status,
                duration,
                reason,
                excerpt,
                delivery.state,
                sent_request(job.request),
            ),
        )
        self._log_attempt(delivery, hook, error, delay, ending, now)
        if delivery.state == "waiting":
            destination.retry_later(job, delivery.due)
            return
        destination.finished(job)
        if delivery.state == "delivered":
            assert response is not None
            self._emit_response(delivery, hook, response, job.context)
            return
        if verdict is retry.Verdict.DISABLE and current:
            self.hooks.disable(hook.name)
            self._outcomes.disabled(hook.name)
            log.warning("hook %r disabled: %s answered 410 Gone", hook.name, destination.target)
        self._emit_error(delivery, hook, reason, job.context)

    def _log_attempt(
        self,
        delivery: Delivery,
        hook: Hook,
        error: str,
        delay: float | None,
        ending: str,
        now: float,
    ) -> None:
        """Tell the failure log an attempt's outcome, and log the line it gives, if any."""
        number = delivery.earlier_attempts + delivery.attempts  # as the journal numbers it
        if delivery.state == "delivered":
            line = self._failures.delivered(hook.name, delivery.id, number, now)
        else:
            retry_at = time.time() + delay if delay is not None else None
            failed = FailedAttempt(
                hook.name, delivery.id, number, error, retry_at, delay or 0.0, ending
            )
            line = self._failures.failed(failed, now)
        if line is not None:
            log.log(line.level, "%s", line.text)

    def _fail_unsent(
        self, delivery: Delivery, hook: Hook, reason: str, context: Mapping[str, Any]
    ) -> None:
        """A delivery whose request could not even be built: a permanent failure."""
        give_up_unsent(self._outcomes, self._counts, delivery, reason)
        self._log_attempt(delivery, hook, reason, None, DEAD_LETTER, trio.current_time())
        self._emit_error(delivery, hook, reason, context)

    def _settle_unsent(self, delivery: Delivery, hook: Hook | None, reason: str) -> None:
        counts = self._counts if hook is not None else None  # an unknown hook is not counted
        give_up_unsent(self._outcomes, counts, delivery, reason)
        log.info("delivery %s gave up: %s", delivery.id, reason)

    def _count(self, hook: Hook, status: int | None, delivery: Delivery, job: Job | None) -> None:
        if self._counts is None:
            return  # a worker's: the main process counts what it reports
        latency = trio.current_time() - job.accepted_at if job is not None else None
        count_attempt(self._counts, hook.name, status, delivery.state, latency)

    # events of the engine's own

    def _emit(self, name: str, data: str, delivery: Delivery, to_device: bool) -> None:
        """Queue an event of the engine's own, to be stored, then fanned out."""
        source = delivery.event
        draft = EventDraft(
            name, data, source.ttl, True, utc_now_iso(), INTERNAL_DEVICE_ID, source.product_id
        )
        device = source.device_id if to_device and source.device_id != REST_DEVICE_ID else None
        self._outcomes.emit(draft, device)

    # events back to the bus and the device

    def _emit_response(
        self,
        delivery: Delivery,
        hook: Hook,
        response: Response,
        context: Mapping[str, Any],
    ) -> None:
        if not response.body:
            return
        templates = hook.templates
        topic = templates.response_topic.render(context)
        if not topic_is_valid(topic):
            self._emit_error(delivery, hook, f"invalid response topic {topic!r}", context)
            return
        text = response_text(response.body, templates.response_template, context)
        for name, data in response_events(topic, text):
            self._emit(name, data, delivery, True)

    def _emit_error(
        self, delivery: Delivery, hook: Hook, line: str, context: Mapping[str, Any]
    ) -> None:
        topic = hook.templates.error_response_topic.render(context)
        if not topic_is_valid(topic):
            topic = f"hook-error/{delivery.event.name}"
        self._emit(f"{topic}/0", line.splitlines()[0][:512], delivery, True)
