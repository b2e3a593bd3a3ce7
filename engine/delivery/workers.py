"""Delivery worker processes, seen from the main process: ``WorkerPool``.

Each worker owns a share of the destinations: a delivery goes to the worker numbered by a
hash of its URL's ``scheme://host:port``, so a destination's queue, breaker, pool and
ordering live in one process. For a hook whose URL template has no tag before the path (the
usual case) that origin is read once from the template; otherwise the URL is rendered here
for each event.

The pool keeps every delivery it handed to a worker until the worker reports it settled
(delivered or dead). A worker that dies is started again, and everything it held is sent to
the new one under the same ids, so a receiver may see a delivery twice but never loses one.
At shutdown each worker is told to stop and report what it did, before the journal closes.
"""

from __future__ import annotations

import logging
import re
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Collection, Sequence
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import trio

from engine.config.settings import Config
from engine.core.model import Delivery, Event, StoredDelivery, delivery_id
from engine.delivery import wire
from engine.delivery.outcomes import HOOK_REMOVED, JournalOutcomes, count_attempt, give_up_unsent
from engine.delivery.request import DEFAULT_PORTS
from engine.hooks.changes import hooks_digest
from engine.hooks.hook import Hook
from engine.hooks.router import HookSet, Route
from engine.metrics import DeliveryCounts
from engine.templates.context import event_context

log = logging.getLogger("hookwire.delivery")

READ_SIZE = 256 * 1024

RESTART_FIRST = 0.5
"""Seconds before a worker that died is started again; doubled while it keeps dying."""

RESTART_MAX = 30.0

STEADY = 10.0
"""A worker that ran this long before dying is restarted after RESTART_FIRST again."""

DRAIN_TIMEOUT = 5.0
"""Seconds workers get at shutdown to finish reporting; then they are killed."""

_ORIGIN = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/?#]*)(?:[/?#]|$)")


def origin_key(url: str) -> str | None:
    """``scheme://host:port`` of a URL, normalised; None when it has none."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not parts.hostname or scheme not in DEFAULT_PORTS:
        return None
    return f"{scheme}://{parts.hostname}:{port or DEFAULT_PORTS[scheme]}"


def static_origin(url_template: str) -> str | None:
    """The origin of every URL a template renders, when no tag comes before its path."""
    match = _ORIGIN.match(url_template)
    if match is None or "{{" in match[1]:
        return None
    return origin_key(match[1] + "/")


def shard_of(origin: str | None, workers: int) -> int:
    """The worker that owns an origin (a stable hash: the same in every process)."""
    if origin is None or workers == 1:
        return 0
    return zlib.crc32(origin.encode()) % workers


class DestinationGauge(NamedTuple):
    """A destination's gauges as its worker last reported them."""

    name: str
    depth: int
    in_flight: int
    breaker_state: int


class _Open(NamedTuple):
    delivery: Delivery
    since: float  # trio time it was handed over, for the latency histogram


class _Slot:
    """One worker's place in the pool: its process (while one runs) and what it holds."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.open: dict[str, _Open] = {}  # by delivery id, until settled
        self.pending: list[list[Any]] = []  # [event fields, items] not yet sent
        self.control: list[bytes] = []  # disable messages not yet sent
        self.stream: trio.SocketStream | None = None
        self.pid: int | None = None  # the running worker's
        self.failure = ""  # how the last one ended, when it ended badly
        self.ready = False
        self.done = trio.Event()
        self.scope = trio.CancelScope()  # the running worker's connection
        self.lot = trio.lowlevel.ParkingLot()
        self.destinations: list[DestinationGauge] = []
        self.acks: dict[int, trio.Event] = {}  # by seq: set by its answer, or the worker's end

    def __repr__(self) -> str:
        return f"<worker {self.index} open={len(self.open)} ready={self.ready}>"

    def wake(self) -> None:
        self.lot.unpark_all()


class WorkerPool:
    """N delivery worker processes; ``accept``/``restore`` hand them work, ``run`` keeps them."""

    def __init__(
        self,
        config: Config,
        hooks: HookSet,
        outcomes: JournalOutcomes,
        counts: DeliveryCounts,
        *,
        epoch: str,
        workers: int,
        command: Sequence[str] = (sys.executable, "-m", "engine.delivery.worker"),
    ) -> None:
        if workers < 1:
            raise ValueError(f"a worker pool needs 1 worker or more, got {workers}")
        self._config = config
        self._hooks = hooks
        self._outcomes = outcomes
        self._counts = counts
        self._epoch = epoch
        self._command = tuple(command)
        self._slots = [_Slot(i) for i in range(workers)]
        self._origins: dict[str, str | None] = {}  # hook name -> static origin, or None
        self._definitions: dict[str, wire.Definition] = {}  # the API's hooks, by name
        self._seq = 0
        self._stopping = False
        self.restarts = 0

    def __repr__(self) -> str:
        return f"<WorkerPool {self._slots!r}>"

    @property
    def pids(self) -> list[int | None]:
        """Each worker's process id (None while it is not running)."""
        return [slot.pid for slot in self._slots]

    @property
    def destinations(self) -> list[DestinationGauge]:
        return [gauge for slot in self._slots for gauge in slot.destinations]

    def problems(self) -> list[str]:
        """The workers not running now, and how the last one ended (for ``/readyz``)."""
        return [
            f"delivery worker {slot.index} is down: {slot.failure}; restarting"
            if slot.failure
            else f"delivery worker {slot.index} is starting"
            for slot in self._slots
            if slot.pid is None or not slot.ready
        ]

    @property
    def unsettled(self) -> int:
        """Deliveries handed out (or about to be) and not yet reported settled."""
        return sum(len(slot.open) for slot in self._slots)

    # handing work over (synchronous: the journal calls accept for every committed event)

    def accept(self, event: Event, hooks: Route) -> None:
        now = trio.current_time()
        fields: list[Any] = list(event)
        by_slot: dict[int, list[wire.Item]] = {}
        current = self._hooks.current
        for hook in hooks:
            key = delivery_id(self._epoch, event.id, hook.tag)
            if not current(hook):  # removed since the event was routed
                removed = Delivery(key, event, hook.name)
                give_up_unsent(self._outcomes, self._counts, removed, HOOK_REMOVED)
                continue
            slot = self._slots[self._shard(hook, event)]
            slot.open[key] = _Open(Delivery(key, event, hook.name), now)
            by_slot.setdefault(slot.index, []).append((hook.name, key, 0, 0, 0.0))
        for index, items in by_slot.items():
            slot = self._slots[index]
            slot.pending.append([fields, items])
            slot.wake()

    def restore(self, stored: StoredDelivery) -> None:
        hook = self._hooks.get(stored.hook)
        slot = self._slots[self._shard(hook, stored.event) if hook is not None else 0]
        delivery = Delivery(stored.id, stored.event, stored.hook, stored.attempts)
        delivery.earlier_attempts = stored.recorded - stored.attempts
        slot.open[stored.id] = _Open(delivery, trio.current_time())
        item = (stored.hook, stored.id, stored.attempts, stored.recorded, stored.due)
        slot.pending.append([list(stored.event), [item]])
        slot.wake()

    # hooks created, changed and removed through the API

    def define(self, name: str, document: str, product: int | None) -> None:
        """A hook the API created or changed: every worker compiles it from its document
        (a worker that starts later gets it with the rest)."""
        definition = (name, document, product)
        self._definitions[name] = definition
        self._origins.pop(name, None)
        self._tell_running(wire.pack(wire.HOOK, definition))

    async def forget(self, name: str) -> None:
        """End a removed hook's deliveries in every worker; returns once none of its
        attempts is in flight in any (or the worker that had them has ended)."""
        self._definitions.pop(name, None)
        self._origins.pop(name, None)
        await self._ask_running(wire.FORGET, name)

    async def release(self, names: Collection[str]) -> None:
        """Drop the queued deliveries of these hooks in every worker, and those not yet
        handed to one, unsent and unrecorded (another node owns them now)."""
        chosen = set(names)
        for slot in self._slots:
            for batch in slot.pending:
                items = batch[1]
                kept = [item for item in items if item[0] not in chosen]
                for item in items:
                    if item[0] in chosen:
                        slot.open.pop(item[1], None)
                batch[1] = kept
            slot.pending = [batch for batch in slot.pending if batch[1]]
        await self._ask_running(wire.RELEASE, sorted(chosen))

    async def _ask_running(self, kind: str, argument: object) -> None:
        """Send ``[kind, argument, seq]`` to every running worker (one still starting gets
        it after its start); returns once each has answered, or ended."""
        self._seq += 1
        seq = self._seq
        waits = []
        for slot in self._slots:
            if slot.stream is not None:
                waits.append(slot.acks.setdefault(seq, trio.Event()))
                slot.control.append(wire.pack(kind, argument, seq))
                slot.wake()
        for answered in waits:
            await answered.wait()

    async def reconfigure(self, config: Config, digest: str) -> None:
        """A reload applied (``digest``: of its hooks): the workers read the config file's
        hooks again (a worker that starts later reads them at its start); returns once each
        has."""
        self._config = config
        self._origins.clear()
        await self._ask_running(wire.RELOAD, digest)

    def _tell_running(self, message: bytes) -> None:
        """Queue a message to every running worker (one still starting gets it after its
        start message, which may hold the same news: telling twice does no harm)."""
        for slot in self._slots:
            if slot.stream is not None:
                slot.control.append(message)
                slot.wake()

    def _shard(self, hook: Hook, event: Event) -> int:
        workers = len(self._slots)
        if workers == 1:
            return 0
        name = hook.name
        if name not in self._origins:
            self._origins[name] = static_origin(hook.url)
        origin = self._origins[name]
        if origin is None:
            try:
                origin = origin_key(hook.templates.url.render(event_context(event)))
            except Exception:  # the worker renders it again and reports the failure
                origin = None
        return shard_of(origin, workers)

    # the workers' lives

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep every worker running until cancelled; then drain them."""
        workers_scope = trio.CancelScope(shield=True)  # cancelled only after the drain
        async with trio.open_nursery() as nursery:

            async def keep_all() -> None:
                with workers_scope:
                    async with trio.open_nursery() as inner:
                        for slot in self._slots:
                            inner.start_soon(self._keep, slot)

            nursery.start_soon(keep_all)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    with trio.move_on_after(DRAIN_TIMEOUT):
                        await self._drain()
                    workers_scope.cancel()
                    await self._outcomes.flush()

    async def _drain(self) -> None:
        """Tell each worker to stop and report; one still starting holds nothing: close it."""
        log.debug("stopping %d delivery workers", len(self._slots))
        self._stopping = True
        for slot in self._slots:
            if slot.stream is None:
                continue
            if slot.ready:
                slot.control.append(wire.pack(wire.STOP))
                slot.wake()
            else:
                slot.scope.cancel()
        for slot in self._slots:
            if slot.stream is not None:
                await slot.done.wait()

    async def _keep(self, slot: _Slot) -> None:
        """Start a slot's worker, and again whenever it dies, until the pool stops."""
        delay = RESTART_FIRST
        while not self._stopping:
            started = trio.current_time()
            await self._run_worker(slot)
            if self._stopping:
                return
            if trio.current_time() - started >= STEADY:
                delay = RESTART_FIRST
            self.restarts += 1
            log.debug("delivery worker %d starts again in %g s", slot.index, delay)
            await trio.sleep(delay)
            delay = min(delay * 2, RESTART_MAX)

    async def _run_worker(self, slot: _Slot) -> None:
        """One worker process, from start to exit; never raises (but Cancelled)."""
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError as exc:  # out of file descriptors
            self._ended(slot, f"cannot start: {exc}")
            return
        try:
            process = await trio.lowlevel.open_process(
                [
                    *self._command,
                    "--config",
                    str(self._config.path.resolve()),
                    "--fd",
                    str(theirs.fileno()),
                ],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                # stderr is the daemon's: a worker's log lines go where the main process's go.
            )
        except OSError as exc:
            ours.close()
            self._ended(slot, f"cannot start: {exc}")
            return
        finally:
            theirs.close()
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
        slot.stream = stream
        slot.pid = process.pid
        slot.done = trio.Event()
        slot.control = []
        ended = ""
        try:
            with trio.CancelScope() as slot.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._send_to, slot, stream)
                    ended = await self._read_from(slot, stream)
                    nursery.cancel_scope.cancel()
            if slot.scope.cancelled_caught:
                ended = wire.BYE  # closed while it started: it held nothing
        finally:
            slot.stream = None
            slot.pid = None
            slot.ready = False
            slot.destinations = []
            for ended_waiting in slot.acks.values():
                ended_waiting.set()  # what it was asked ended with it
            slot.acks = {}
            slot.done.set()
            with trio.CancelScope(shield=True):
                await stream.aclose()
                with trio.move_on_after(2):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
        log.debug("delivery worker %d ended: %s", slot.index, ended)
        if ended == wire.BYE:
            slot.failure = ""
            return
        self._ended(
            slot, f"(pid {process.pid}) {ended or 'stopped'} (exit status {process.returncode})"
        )

    def _ended(self, slot: _Slot, how: str) -> None:
        """Log how a worker ended badly: once, not once per try, while it ends the same way."""
        pid = re.compile(r"\(pid \d+\) ")
        same = pid.sub("", how) == pid.sub("", slot.failure)
        slot.failure = how
        log.log(
            logging.DEBUG if same else logging.ERROR,
            "delivery worker %d %s; the %d deliveries it held go to the next one under the "
            "same ids",
            slot.index,
            how,
            len(slot.open),
        )

    async def _send_to(self, slot: _Slot, stream: trio.SocketStream) -> None:
        """Send the worker what its slot gathers; a worker gone is the reader's to report."""
        try:
            await self._send_loop(slot, stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await trio.sleep_forever()  # the reader sees the end, and ends the connection

    async def _send_loop(self, slot: _Slot, stream: trio.SocketStream) -> None:
        disabled = {
            name: why
            for hook in self._hooks.hooks
            if (why := self._hooks.why_disabled(name := hook.name)) is not None
        }
        digest = hooks_digest(self._config.hooks)
        definitions = list(self._definitions.values())
        await stream.send_all(wire.pack(wire.START, self._epoch, disabled, digest, definitions))
        while True:
            while not slot.ready or (not slot.pending and not slot.control):
                await slot.lot.park()
            control, slot.control = slot.control, []
            pending, slot.pending = slot.pending, []
            data = b"".join(control)
            if pending:
                data += wire.pack(wire.DELIVER, pending)
            await stream.send_all(data)

    async def _read_from(self, slot: _Slot, stream: trio.SocketStream) -> str:
        """Handle a worker's messages until it ends; says how it ended."""
        decoder = wire.Decoder()
        try:
            while True:
                data = await stream.receive_some(READ_SIZE)
                if not data:
                    return "closed its socket"
                decoder.feed(data)
                for message in decoder:
                    kind = message[0]
                    if kind == wire.OUTCOMES:
                        self._take_outcomes(slot, message)
                    elif kind == wire.DESTINATIONS:
                        slot.destinations = [DestinationGauge(*row) for row in message[1]]
                    elif kind in (wire.FORGOTTEN, wire.RELOADED, wire.RELEASED):
                        for key in message[2] if kind == wire.RELEASED else ():
                            slot.open.pop(key, None)
                        answered = slot.acks.pop(message[1], None)
                        if answered is not None:
                            answered.set()
                    elif kind == wire.READY:
                        self._ready(slot)
                    elif kind == wire.BYE:
                        return wire.BYE
                    elif kind == wire.FAILED:
                        return f"could not start: {message[1]}"
                    else:
                        raise wire.WireError(f"unknown message {kind!r}")
        except wire.WireError as exc:
            return f"sent something unreadable ({exc})"
        except (KeyError, TypeError, ValueError) as exc:  # a message of the wrong shape
            return f"sent a message this daemon cannot use ({exc!r})"
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            return f"lost its socket ({exc})"

    def _ready(self, slot: _Slot) -> None:
        """A worker has started: hand it everything its slot holds (again, after a restart)."""
        slot.ready = True
        log.info("delivery worker %d ready (pid %s)", slot.index, slot.pid)
        if self._stopping:
            slot.control.append(wire.pack(wire.STOP))
            slot.wake()
            return
        by_event: dict[int, list[Any]] = {}
        wall, now = time.time(), trio.current_time()
        for key, (delivery, _) in slot.open.items():
            event = delivery.event
            entry = by_event.get(event.id)
            if entry is None:
                entry = by_event[event.id] = [list(event), []]
            due = wall + (delivery.due - now) if delivery.state == "waiting" else 0.0
            recorded = delivery.earlier_attempts + delivery.attempts
            entry[1].append((delivery.hook, key, delivery.attempts, recorded, due))
        slot.pending = list(by_event.values())
        slot.wake()

    def _take_outcomes(self, slot: _Slot, message: list[Any]) -> None:
        _, attempts, events, disabled = message
        now, wall = trio.current_time(), time.time()
        outcomes = self._outcomes
        for fields in attempts:
            key, count, state, due, attempt = wire.unpack_attempt(fields)
            held = slot.open.get(key)
            if held is None:
                continue  # settled already: a duplicate from a worker that died meanwhile
            delivery = held.delivery
            delivery.attempts = count
            delivery.state = state
            if state == "waiting":
                delivery.due = now + max(0.0, due - wall)
            else:
                del slot.open[key]
            count_attempt(self._counts, delivery.hook, attempt.status, state, now - held.since)
            outcomes.attempt(delivery, attempt)
        for fields in events:
            draft, device = wire.unpack_draft(fields)
            outcomes.emit(draft, device)
        for name in disabled:
            self._hooks.disable(name)
            outcomes.disabled(name)
            why = self._hooks.why_disabled(name) or ""
            for other in self._slots:
                if other is not slot:
                    other.control.append(wire.pack(wire.DISABLE, name, why))
                    other.wake()
