"""A delivery worker process: renders and sends the deliveries of its share of destinations.

Started by the main process's ``WorkerPool`` as ``python -m engine.delivery.worker --config
PATH --fd N``, with one end of a Unix socket pair as file descriptor N. It reads the same
config file (and checks that its hooks are the ones the main process has), runs a
``Dispatcher`` whose outcomes go back over the socket (``UplinkOutcomes``), and exits when told
to stop or when the main process goes away. SIGINT and SIGTERM are the main process's to act
on: it drains its workers before the journal closes.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

import trio

from engine.config.changes import applied
from engine.config.settings import Config, ConfigError
from engine.core import logs
from engine.core.model import Attempt, Delivery, Event, EventDraft
from engine.delivery import wire
from engine.delivery.dispatcher import Dispatcher
from engine.hooks import load_config
from engine.hooks.changes import hooks_digest
from engine.hooks.documents import hook_from_document, parse_document
from engine.hooks.router import HookSet, reread_and_prepare

log = logging.getLogger("hookwire.worker")

READ_SIZE = 256 * 1024

FINISH_ATTEMPTS = 3.0
"""Seconds a stopping worker lets attempts in flight finish; the rest are sent again (same
ids) by the next daemon, from the journal."""

GC_THRESHOLDS = (50_000, 20, 20)
"""The cyclic collector's thresholds in a worker (CPython's default: 2,000, 10, 10). A
worker with a backlog holds hundreds of thousands of deliveries; at the default, collections
that walk them took a large share of its time."""

GAUGES_EVERY = 1.0
"""Seconds between reports of the destinations' queue depths and breakers."""


class UplinkOutcomes:
    """Outcomes sent to the main process in batches; ``run`` sends, ``close`` sends the last."""

    def __init__(self, stream: trio.abc.SendStream) -> None:
        self._stream = stream
        self._attempts: list[list[object]] = []
        self._events: list[list[object]] = []
        self._disabled: list[str] = []
        self._lot = trio.lowlevel.ParkingLot()
        self._send_lock = trio.Lock()

    def __repr__(self) -> str:
        return f"<UplinkOutcomes attempts={len(self._attempts)} events={len(self._events)}>"

    def attempt(self, delivery: Delivery, attempt: Attempt) -> None:
        due = 0.0
        if attempt.state == "waiting":
            due = time.time() + max(0.0, delivery.due - trio.current_time())
        self._attempts.append(wire.pack_attempt(delivery, attempt, due))
        self._lot.unpark_all()

    def emit(self, draft: EventDraft, device: str | None) -> None:
        self._events.append([*draft, device])
        self._lot.unpark_all()

    def disabled(self, hook: str) -> None:
        self._disabled.append(hook)
        self._lot.unpark_all()

    async def run(self) -> None:
        while True:
            while not self._attempts and not self._events and not self._disabled:
                await self._lot.park()
            await self.flush()

    async def flush(self) -> None:
        """Send everything gathered, as one message."""
        async with self._send_lock:
            if not self._attempts and not self._events and not self._disabled:
                return
            message = wire.pack(wire.OUTCOMES, self._attempts, self._events, self._disabled)
            self._attempts, self._events, self._disabled = [], [], []
            with trio.CancelScope(shield=True):  # taken out of the lists: it must go whole
                await self._stream.send_all(message)

    async def send(self, data: bytes) -> None:
        """Send one message whole: a cancelled send would cut it in two."""
        async with self._send_lock:
            with trio.CancelScope(shield=True):
                await self._stream.send_all(data)


class Worker:
    """One worker's life: start, serve the main process's messages, drain on ``stop``."""

    def __init__(self, config: Config, stream: trio.SocketStream) -> None:
        self._config = config
        self._stream = stream
        self._decoder = wire.Decoder()
        self._uplink = UplinkOutcomes(stream)
        self._dispatcher: Dispatcher | None = None
        self._reloading = False
        self._held: list[tuple[Event, list[wire.Item]]] = []  # for hooks a reload adds

    def __repr__(self) -> str:
        return f"<Worker {self._dispatcher!r}>"

    async def run(self) -> None:
        start = await self._next()
        if start[0] != wire.START or len(start) != 5:
            raise wire.WireError(f"expected a start message first, got {start!r:.200}")
        _, epoch, disabled, digest, definitions = start
        config = self._config
        if digest != hooks_digest(config.hooks):
            await self._uplink.send(
                wire.pack(
                    wire.FAILED,
                    f"{config.path} has changed since the daemon started: its hooks differ "
                    "from the daemon's; restart the daemon to use the new file",
                )
            )
            return
        hooks = HookSet(config.hooks)
        for definition in definitions:
            self._define(hooks, definition)
        for name, why in disabled.items():
            hooks.disable(name, why)
        dispatcher = Dispatcher(config, self._uplink, None, epoch=epoch, hooks=hooks)
        self._dispatcher = dispatcher
        async with trio.open_nursery() as nursery:
            await nursery.start(dispatcher.run)
            nursery.start_soon(self._uplink.run)
            nursery.start_soon(self._report_destinations)
            await self._uplink.send(wire.pack(wire.READY))
            await self._serve(hooks, nursery)
            # Stopping: attempts in flight may finish and report, for a while.
            in_flight = sum(d.in_flight for d in dispatcher.destinations)
            log.debug("stopping; %d attempts in flight", in_flight)
            with trio.move_on_after(FINISH_ATTEMPTS):
                await dispatcher.quiesce()
            nursery.cancel_scope.cancel()
        with trio.CancelScope(shield=True):
            await self._uplink.flush()
            await self._uplink.send(wire.pack(wire.BYE))

    def _define(self, hooks: HookSet, definition: list[Any]) -> None:
        """A hook created or changed through the API, compiled from its document here."""
        try:
            name, document, product = definition
            hook = hook_from_document(
                parse_document(document), name=name, product=product, config=self._config
            )
        except (TypeError, ValueError) as exc:
            raise wire.WireError(f"a hook definition is 3 fields, got {definition!r:.200}") from exc
        except ConfigError as exc:  # the main process checked it: this one differs
            log.error("hook %r cannot be compiled here, left out: %s", name, exc)
            return
        if hooks.get(name) is None:
            hooks.add(hook)
        else:
            hooks.replace(hook)

    def _resume(self, hooks: HookSet, event: Event, items: list[wire.Item]) -> None:
        """Queue an event's deliveries; while a reload runs, those of a hook not known yet
        (added by it) wait for it."""
        dispatcher = self._dispatcher
        assert dispatcher is not None
        if self._reloading:
            later = [item for item in items if hooks.get(item[0]) is None]
            if later:
                self._held.append((event, later))
                items = [item for item in items if hooks.get(item[0]) is not None]
        if items:
            dispatcher.resume(event, items)

    async def _reload(self, hooks: HookSet, digest: str, seq: int) -> None:
        """Read the config file's hooks again, as the main process did, while deliveries go
        on; then say so. Removals come as ``forget`` messages."""
        config = self._config
        try:
            reread, prepared = await trio.to_thread.run_sync(reread_and_prepare, config, hooks)
        except ConfigError as exc:
            raise wire.WireError(f"the config file cannot be reloaded here: {exc}") from None
        if reread.digest != digest:
            raise wire.WireError("the config file changed again during the reload")
        new = reread.config
        self._config = applied(config, new)
        hooks.commit(prepared)
        self._reloading = False
        held, self._held = self._held, []
        for event, items in held:
            self._resume(hooks, event, items)
        await self._uplink.send(wire.pack(wire.RELOADED, seq))

    async def _forget(self, name: str, seq: int) -> None:
        """End a removed hook's deliveries here, then say so (after their outcomes)."""
        dispatcher = self._dispatcher
        assert dispatcher is not None
        await dispatcher.forget(name)
        await self._uplink.flush()
        await self._uplink.send(wire.pack(wire.FORGOTTEN, seq))

    async def _serve(self, hooks: HookSet, nursery: trio.Nursery) -> None:
        """Take messages until ``stop`` or the end of the stream."""
        dispatcher = self._dispatcher
        assert dispatcher is not None
        while True:
            message = await self._next()
            kind = message[0]
            if kind == wire.DELIVER:
                for fields, items in message[1]:
                    self._resume(hooks, wire.unpack_event(fields), items)
            elif kind == wire.DISABLE:
                hooks.disable(message[1], message[2])
            elif kind == wire.HOOK:
                self._define(hooks, message[1])
            elif kind == wire.FORGET:
                hooks.remove(message[1])  # now: what follows it in this read is not sent
                nursery.start_soon(self._forget, message[1], message[2])
            elif kind == wire.RELEASE:
                dropped = dispatcher.drop(message[1])
                await self._uplink.send(wire.pack(wire.RELEASED, message[2], dropped))
            elif kind == wire.RELOAD:
                self._reloading = True
                nursery.start_soon(self._reload, hooks, message[1], message[2])
            elif kind == wire.STOP:
                return
            else:
                raise wire.WireError(f"unknown message {kind!r}")

    async def _next(self) -> list[Any]:
        """The next message; raises EOFError when the main process has gone."""
        decoder = self._decoder
        while True:
            for message in decoder:
                return message
            data = await self._stream.receive_some(READ_SIZE)
            if not data:
                raise EOFError
            decoder.feed(data)

    async def _report_destinations(self) -> None:
        while True:
            await trio.sleep(GAUGES_EVERY)
            dispatcher = self._dispatcher
            assert dispatcher is not None
            rows = [
                [d.name, d.depth, d.in_flight, d.breaker_state] for d in dispatcher.destinations
            ]
            await self._uplink.send(wire.pack(wire.DESTINATIONS, rows))


async def serve(config: Config, fd: int) -> None:
    sock = trio.socket.from_stdlib_socket(socket.socket(fileno=fd))
    stream = trio.SocketStream(sock)
    try:
        await Worker(config, stream).run()
    except* (EOFError, trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the main process has gone: nothing is left to report to
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hookwire-worker", description=__doc__)
    parser.add_argument("--config", required=True, help="the daemon's config file")
    parser.add_argument("--fd", type=int, required=True, help="the socket to the main process")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        problems = "; ".join(exc.problems)
        with socket.socket(fileno=args.fd) as sock:
            sock.sendall(wire.pack(wire.FAILED, f"cannot load the config: {problems}"))
        return 1
    # The main process's format and level: a worker writes to the stderr it inherits, so
    # the daemon's output reads as one log.
    logs.configure(config.log.level, config.log.format)
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    failure: wire.WireError | None = None
    try:
        trio.run(serve, config, args.fd)
    except* wire.WireError as group:
        failure = group.exceptions[0]  # type: ignore[assignment]
    if failure is not None:
        log.error("worker (pid %d) stopped: the main process sent %s", os.getpid(), failure)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
