"""One destination (scheme, host, port): its queue, pool, rate limits and circuit breaker.

A scheduler task per destination starts attempts while the breaker allows, the hook's
token bucket has a token, fewer than ``capacity`` are in flight, and the process's shared
``Turns`` has a slot (destinations take turns for them when all are taken). Retries wait in a
heap until they are due. An ``ordered`` hook's deliveries for one device go one at a
time: the next is held until the one before it has succeeded or given up.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from engine.core.model import Delivery
from engine.core.ratelimit import TokenBucket
from engine.delivery.breaker import CircuitBreaker
from engine.delivery.request import PreparedRequest
from engine.delivery.turns import Turns
from engine.hooks.hook import Hook
from engine.http.client import Origin

BREAKER_STATES = {"CLOSED": 0, "HALF_OPEN": 1, "OPEN": 2}

MAX_IDLE_WAIT = 60.0
"""The scheduler looks around at least this often even when nothing wakes it."""


@dataclass(slots=True)
class Job:
    delivery: Delivery
    hook: Hook
    request: PreparedRequest
    context: Mapping[str, Any]  # the event's variables, shared by its hooks' jobs
    lane: tuple[str, str] | None = None  # (hook, device) for ordered hooks
    accepted_at: float = 0.0


@dataclass(order=True, slots=True)
class _Due:
    due: float
    seq: int
    job: Job = field(compare=False)


AttemptRunner = Callable[["Destination", Job], Awaitable[None]]


class Destination:
    """The queue and the limits of one target; ``run`` is its scheduler task."""

    def __init__(
        self,
        target: Origin,
        verify_tls: bool,
        capacity: int,
        attempt: AttemptRunner,
        buckets: Mapping[str, TokenBucket],  # by hook name
        turns: Turns[Destination] | None = None,  # attempts in flight across the process
    ) -> None:
        self.target = target
        self.verify_tls = verify_tls
        self.capacity = capacity
        self.breaker = CircuitBreaker()
        self._attempt = attempt
        self._buckets = buckets
        self._turns = turns
        self.ready: deque[Job] = deque()
        self._retries: list[_Due] = []
        self._seq = itertools.count()
        self._lanes: dict[tuple[str, str], deque[Job]] = {}
        self.in_flight = 0
        self.stopping = False  # set by quiesce: no attempt starts any more
        self._lot = trio.lowlevel.ParkingLot()

    def __repr__(self) -> str:
        return (
            f"<Destination {self.target} ready={len(self.ready)} waiting={len(self._retries)} "
            f"in_flight={self.in_flight}/{self.capacity} breaker={self.breaker.state.name}>"
        )

    @property
    def name(self) -> str:
        return str(self.target)

    @property
    def breaker_state(self) -> int:
        return BREAKER_STATES[self.breaker.state.name]

    @property
    def depth(self) -> int:
        """Deliveries queued here, ready or waiting for a retry (not in flight)."""
        held = sum(len(lane) - 1 for lane in self._lanes.values())  # behind each lane's head
        return len(self.ready) + len(self._retries) + held

    # state changes (synchronous)

    def submit(self, job: Job) -> None:
        """A new delivery for this destination."""
        if job.lane is not None:
            lane = self._lanes.setdefault(job.lane, deque())
            lane.append(job)
            if len(lane) > 1:
                return  # held behind the one in progress
        self.ready.append(job)
        self._wake()

    def requeue(self, job: Job) -> None:
        """A job that was started but not sent goes back to the front."""
        self.ready.appendleft(job)
        self._wake()

    def retry_later(self, job: Job, due: float) -> None:
        heapq.heappush(self._retries, _Due(due, next(self._seq), job))
        self._wake()

    def take_hook(self, name: str) -> list[Job]:
        """Take out every queued job of a hook (ready, waiting to retry, or held in a lane)."""
        taken = [job for job in self.ready if job.hook.name == name]
        if taken:
            self.ready = deque(job for job in self.ready if job.hook.name != name)
        due = [entry for entry in self._retries if entry.job.hook.name == name]
        if due:
            taken += [entry.job for entry in due]
            self._retries = [entry for entry in self._retries if entry.job.hook.name != name]
            heapq.heapify(self._retries)
        for lane in [lane for lane in self._lanes if lane[0] == name]:
            # The head is taken above when it waits, or is in flight: only those behind it.
            taken += list(self._lanes.pop(lane))[1:]
        return taken

    def finished(self, job: Job) -> None:
        """The delivery succeeded or gave up: let the next one of its lane go."""
        if job.lane is None:
            return
        lane = self._lanes.get(job.lane)
        if not lane:
            return
        lane.popleft()
        if lane:
            self.ready.append(lane[0])
            self._wake()
        else:
            del self._lanes[job.lane]

    def attempt_done(self) -> None:
        self.in_flight -= 1
        if self._turns is not None:
            self._turns.release()
        self._wake()

    def wake(self) -> None:
        """Look again: a slot of the shared ``Turns`` came free for this destination."""
        self._wake()

    def _wake(self) -> None:
        if self._lot:
            self._lot.unpark_all()

    def _due_retries(self, now: float) -> None:
        while self._retries and self._retries[0].due <= now:
            self.ready.append(heapq.heappop(self._retries).job)

    def _next_start(self, now: float) -> tuple[Job | None, float]:
        """The job to start now, or None and the time worth waking up at."""
        wake = now + MAX_IDLE_WAIT
        turns = self._turns
        if self.stopping:
            if turns is not None:
                turns.decline(self)
            return None, wake
        if self._retries:
            wake = min(wake, self._retries[0].due)
        if not self.ready or self.in_flight >= self.capacity:
            return None, wake
        job = self.ready[0]
        bucket = self._buckets.get(job.hook.name)
        if bucket is not None and (pause := bucket.wait_time(now)) > 0:
            if turns is not None:
                turns.decline(self)
            return None, min(wake, now + pause)
        if turns is not None and not turns.take(self):
            return None, wake  # in line: woken when a slot comes free for us
        if not self.breaker.allow(now):
            if turns is not None:
                turns.release()  # the slot passes on
            retry_at = self.breaker.retry_at(now)
            return None, min(wake, retry_at) if retry_at is not None else wake
        if bucket is not None:
            bucket.try_take(now)
        self.ready.popleft()
        return job, now

    # the scheduler (I/O)

    async def quiesce(self) -> None:
        """Start no more attempts, and return once those in flight have ended."""
        self.stopping = True
        while self.in_flight:
            await self._lot.park()

    async def run(self) -> None:
        """Start attempts as limits allow, until cancelled."""
        async with trio.open_nursery() as attempts:
            while True:
                now = trio.current_time()
                self._due_retries(now)
                # Start everything the limits allow before waiting again.
                job, wake = self._next_start(now)
                while job is not None:
                    self.in_flight += 1
                    attempts.start_soon(self._attempt, self, job)
                    job, wake = self._next_start(now)
                with trio.move_on_at(wake):
                    await self._lot.park()
