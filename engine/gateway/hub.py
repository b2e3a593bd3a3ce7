"""The device cloud's channel: msgpack uplink of device events, downlink of hook answers.

Each gateway connection has three tasks in its own nursery: a reader (frames in, never
more than ``max_unacked`` publishes waiting for the journal), a committer (stores waiting
publishes in one journal write, then acknowledges them as ranges) and a writer (the only
one that writes to the socket). Downlinks are written to the journal's outbox with the
hook answer they carry; the hub offers each to the connection that last published for its
device (else any), at most ``max_unacked`` in flight per connection. A gateway that stops
reading gets nothing more: what it has not acknowledged stays in the outbox, is sent
again after a reconnect, and expires after ``downlink_ttl``. With ``[gateway] tls`` the TCP
listener serves TLS with ``[server]``'s certificate pair (the Unix socket never does); the
handshake counts against ``HELLO_TIMEOUT``.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import trio

from engine import __version__
from engine.config.settings import Config, ConfigError
from engine.core.auth import Authenticator, Principal, TokenEntry
from engine.core.events import utc_now_iso
from engine.core.model import Event, OutboxEntry
from engine.gateway import protocol as wire
from engine.http.server import CannotListen
from engine.http.tls import TlsError, failure_reason, server_context
from engine.journal import Journal, JournalUnavailable
from engine.metrics import Metrics

log = logging.getLogger("hookwire.gateway")

HELLO_TIMEOUT = 10.0
FLUSH_TIMEOUT = 1.0
"""Seconds a closing connection has to send what is queued (an error frame, acks)."""
SEND_TIMEOUT = 30.0
"""A gateway that takes no bytes for this long is disconnected (its downlinks wait)."""

PUMP_EVERY = 1.0
"""Seconds between looks at the outbox for downlinks to (re)send and to expire."""

PUMP_PAGE = 1000
PUMP_SCAN = 20_000
"""Outbox entries looked at per pass, at most (a pass runs at least every PUMP_EVERY)."""


_Handler = Callable[[trio.SocketStream], Awaitable[None]]


class _Connection:
    """One gateway's connection: its reader, committer and writer."""

    def __init__(
        self, hub: GatewayHub, stream: trio.abc.Stream, principal: Principal, name: str
    ) -> None:
        self.hub = hub
        self.stream = stream
        self.principal = principal
        self.name = name
        self.in_flight: dict[int, OutboxEntry] = {}
        self._out: deque[bytes] = deque()
        self._out_lot = trio.lowlevel.ParkingLot()
        self._pubs: list[wire.Pub] = []
        self._pubs_lot = trio.lowlevel.ParkingLot()
        self._room_lot = trio.lowlevel.ParkingLot()
        self._committing = 0
        self._writing = False
        self._flushed_lot = trio.lowlevel.ParkingLot()
        self._valid = wire.Valid()

    def __repr__(self) -> str:
        return f"<gateway {self.name!r} in_flight={len(self.in_flight)} pubs={len(self._pubs)}>"

    @property
    def room(self) -> int:
        return self.hub.config.max_unacked - len(self.in_flight)

    def send(self, frame: bytes) -> None:
        self._out.append(frame)
        self._out_lot.unpark_all()

    def offer(self, downlink: OutboxEntry) -> None:
        event = downlink.event
        self.in_flight[event.id] = downlink
        self.send(wire.down(event.id, downlink.device, event.name, event.data, event.published_at))
        self.hub.frames_out["down"].inc()

    async def run(self, decoder: wire.FrameDecoder, early: list[dict[object, object]]) -> None:
        """Serve the connection until the gateway leaves or breaks the stream."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write, nursery.cancel_scope)
            nursery.start_soon(self._commit)
            if await self._take_all(early):
                await self._read(decoder)
            with trio.move_on_after(FLUSH_TIMEOUT):  # what is queued (an error frame, acks)
                while self._out or self._writing:
                    await self._flushed_lot.park()
            nursery.cancel_scope.cancel()

    async def _read(self, decoder: wire.FrameDecoder) -> None:
        while True:
            data = await self.stream.receive_some(decoder.max_frame)
            if not data:
                return
            try:
                frames = decoder.feed(data)
            except wire.FrameError as exc:
                self.refuse(exc)
                return
            if not await self._take_all(frames):
                return

    async def _take_all(self, frames: list[dict[object, object]]) -> bool:
        """Handle frames that arrived together; False when the connection must close."""
        limit = self.hub.config.max_unacked
        received_at = utc_now_iso()  # one clock reading for what arrived together
        pubs = 0
        try:
            for frame in frames:
                # Stop taking (and reading) while the journal is behind: the gateway's
                # acks slow down instead of memory growing.
                while len(self._pubs) + self._committing >= limit or len(self._out) >= limit:
                    await self._room_lot.park()  # (also while the gateway reads nothing)
                op = wire.op_label(frame)
                if op == "pub":
                    pubs += 1
                    self._take_pub(frame, received_at)
                elif not await self._take(frame, op, received_at):
                    return False
            return True
        finally:
            self.hub.frames_in["pub"].inc(pubs)  # once per read: inc() takes a lock

    def _take_pub(self, raw: dict[object, object], received_at: str) -> None:
        """The common frame, without a coroutine of its own."""
        hub = self.hub
        try:
            pub = wire.parse_frame(
                raw, max_data_bytes=hub.max_data_bytes, received_at=received_at, valid=self._valid
            )
        except wire.FrameError as exc:
            self._reject(exc)
            return
        assert isinstance(pub, wire.Pub)
        problem = hub.forbidden(self.principal, pub)
        if problem is not None:
            self._reject(wire.FrameError("forbidden", problem, seq=pub.seq))
            return
        self._pubs.append(pub)
        if len(self._pubs) == 1:
            self._pubs_lot.unpark_all()

    async def _take(self, raw: dict[object, object], op: str, received_at: str) -> bool:
        """Handle one frame (``op``: its wire.op_label); False when the connection must close."""
        hub = self.hub
        try:
            frame = wire.parse_frame(
                raw, max_data_bytes=hub.max_data_bytes, received_at=received_at
            )
        except wire.FrameError as exc:
            hub.frames_in[op].inc()
            if exc.fatal:
                self.refuse(exc)
                return False
            self._reject(exc)
            return True
        if isinstance(frame, wire.DownAck):
            hub.frames_in["down-ack"].inc()
            await hub.acked(self, frame.ids)
        elif isinstance(frame, wire.Ping):
            hub.frames_in["ping"].inc()
            self.send(wire.pong())
            hub.frames_out["pong"].inc()
        else:  # a second hello (pubs take _take_pub)
            self.refuse(wire.FrameError("bad-hello", "hello may be sent only once"))
            return False
        return True

    def _key(self, pub: wire.Pub) -> str:
        """What makes a publish the same one again: the device's key, else our name and seq."""
        return pub.key if pub.key is not None else f"{self.name}#{pub.seq}"

    def refuse(self, exc: wire.FrameError) -> None:
        """A frame that breaks the stream: say why; the connection closes once it is sent."""
        log.warning("gateway %r: %s: %s", self.name, exc.code, exc.message)
        self.hub.frames_out["error"].inc()
        self.send(wire.error(exc.code, exc.message))

    def _reject(self, exc: wire.FrameError) -> None:
        """A frame refused alone: a nack for a publish, else an error; the stream goes on."""
        if exc.seq is None:
            self.send(wire.error(exc.code, exc.message))
            self.hub.frames_out["error"].inc()
        else:
            self._nack(exc.seq, exc.code, exc.message)

    def _nack(self, seq: int, code: str, message: str) -> None:
        self.send(wire.nack(seq, code, message))
        self.hub.frames_out["nack"].inc()
        self.hub.metrics.gateway_nacks.inc()

    async def _commit(self) -> None:
        """Store waiting publishes, one journal write per batch, and acknowledge them."""
        hub = self.hub
        while True:
            while not self._pubs:
                await self._pubs_lot.park()
            batch, self._pubs = self._pubs, []
            self._committing = len(batch)
            try:
                stored = await hub.store.append_keyed([(p.draft, self._key(p)) for p in batch])
            except JournalUnavailable as exc:  # nothing is claimed stored
                for pub in batch:
                    self._nack(pub.seq, "not-stored", f"event not stored: {exc}")
            else:
                hub.published(self, batch, stored)
                self.send(wire.ack(p.seq for p in batch))
                hub.frames_out["ack"].inc()
            finally:
                self._committing = 0
                self._room_lot.unpark_all()

    async def _write(self, cancel: trio.CancelScope) -> None:
        """The only writer of the socket: everything queued goes out in one write."""
        while True:
            while not self._out:
                self._flushed_lot.unpark_all()
                await self._out_lot.park()
            data = b"".join(self._out)
            self._out.clear()
            self._writing = True
            with trio.move_on_after(SEND_TIMEOUT) as waited:
                await self.stream.send_all(data)
            self._writing = False
            self._room_lot.unpark_all()
            if waited.cancelled_caught:
                log.warning("%r took no bytes for %.0f s: disconnected", self, SEND_TIMEOUT)
                cancel.cancel()
                return


class GatewayHub:
    """Listens for gateways, routes downlinks to them; the dispatcher's Downlink."""

    durable = True  # what it is given is already in the journal's outbox

    def __init__(
        self, config: Config, store: Journal, metrics: Metrics, *, shared: bool = False
    ) -> None:
        """``shared``: other nodes write to the outbox too (a journal shared in cluster
        mode): it is looked at every PUMP_EVERY, not only after this node wrote to it."""
        self.config = config.gateway
        self._shared = shared
        self.max_data_bytes = config.limits.max_data_bytes
        self._product_ids = frozenset(product.id for product in config.products)
        self.store = store
        self.metrics = metrics
        # The counters' children, looked up once: labels() costs more than inc().
        self._published = metrics.events_published.labels("gateway")
        self.frames_in = {
            op: metrics.gateway_frames_in.labels(op) for op in [*wire.KNOWN_OPS, "bad"]
        }
        self.frames_out = {
            op: metrics.gateway_frames_out.labels(op)
            for op in ("welcome", "ack", "nack", "down", "pong", "error")
        }
        self._auth = Authenticator(config.auth.tokens)
        self._connections: list[_Connection] = []
        self._by_device: dict[str, _Connection] = {}
        self._pump_lot = trio.lowlevel.ParkingLot()
        self._backlog = True  # the outbox may hold downlinks no connection has
        self.tcp_addresses: list[tuple[str, int]] = []  # bound, once serving
        self._tls = _tls_of(config) if config.gateway.tls else None
        self.tls_failures = 0  # handshakes that failed or did not end within HELLO_TIMEOUT
        self._acking: set[int] = set()  # acknowledged; their delete is not committed yet
        # Acknowledged while the pump reads a page of the outbox (None: no read under way).
        # The page is the outbox as it was when the read began, so it may still hold them.
        self._acked_during_read: set[int] | None = None

    def reload_tokens(self, tokens: Iterable[TokenEntry]) -> None:
        """A reload's tokens, for the gateways that connect from now on."""
        self._auth = Authenticator(tokens)

    def __repr__(self) -> str:
        tls = f" tls_failures={self.tls_failures}" if self._tls is not None else ""
        return f"<GatewayHub connections={len(self._connections)}{tls}>"

    # the dispatcher's Downlink

    def send_nowait(self, device_id: str, event: Event) -> None:
        """A committed downlink (already in the outbox): offer it now if a gateway has room."""
        if self._held(event.id):  # the pump found it in the outbox before we were told
            return
        connection = None if self._backlog else self._route(device_id)
        if connection is not None and connection.room > 0:
            connection.offer(OutboxEntry(event, device_id))
        else:  # older ones wait in the outbox: the pump sends them in order
            self._backlog = True
            self._pump_lot.unpark_all()

    def _held(self, downlink_id: int) -> bool:
        """Whether a connection holds the downlink, or its acknowledgement is being stored."""
        return downlink_id in self._acking or any(
            downlink_id in c.in_flight for c in self._connections
        )

    def _route(self, device: str) -> _Connection | None:
        connection = self._by_device.get(device)
        if connection is not None:
            return connection
        return max(self._connections, key=lambda c: c.room, default=None)

    # serving

    async def serve(
        self, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on the configured TCP address and/or Unix socket until cancelled."""
        listeners: list[tuple[trio.SocketListener, _Handler]] = []
        where: list[str] = []
        if self.config.tcp is not None:
            host, port = self.config.tcp
            scheme, handler = (
                ("tcp", self._handle) if self._tls is None else ("tls", self._handle_tls)
            )
            try:
                opened = await trio.open_tcp_listeners(port, host=host)
            except OSError as exc:
                raise CannotListen(f"{host}:{port}", "the gateway's TCP channel", exc) from None
            for listener in opened:
                listeners.append((listener, handler))
                bound = listener.socket.getsockname()
                self.tcp_addresses.append((bound[0], bound[1]))
                where.append(f"{scheme}://{bound[0]}:{bound[1]}")
        if self.config.unix is not None:
            try:
                unix = await _unix_listener(self.config.unix)
            except OSError as exc:
                raise CannotListen(
                    str(self.config.unix), "the gateway's Unix socket", exc
                ) from None
            listeners.append((unix, self._handle))
            where.append(f"unix://{self.config.unix}")
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pump)
                for listener, handle in listeners:
                    nursery.start_soon(trio.serve_listeners, handle, [listener])
                task_status.started(where)
        finally:
            if self.config.unix is not None:
                with trio.CancelScope(shield=True):
                    await trio.Path(self.config.unix).unlink(missing_ok=True)

    async def _handle_tls(self, transport: trio.SocketStream) -> None:
        """A TCP connection under ``[gateway] tls``: the handshake, then ``_handle``."""
        assert self._tls is not None
        stream = trio.SSLStream(transport, self._tls, server_side=True)
        why = f"not done within {HELLO_TIMEOUT:g} s"
        with trio.move_on_after(HELLO_TIMEOUT):
            try:
                await stream.do_handshake()
                why = ""
            except trio.BrokenResourceError as exc:
                why = failure_reason(exc)
        if not why:
            await self._handle(stream)
            return
        self.tls_failures += 1
        log.debug("gateway TLS handshake failed: %s", why)
        await trio.aclose_forcefully(transport)

    async def _handle(self, stream: trio.abc.Stream) -> None:
        try:
            await self._converse(stream)
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as group:
            log.info("gateway connection lost: %s", group.exceptions[0])
        except* Exception:  # a bug: this connection ends, the others go on
            log.exception("gateway connection failed")
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await stream.aclose()

    async def _converse(self, stream: trio.abc.Stream) -> None:
        decoder = wire.FrameDecoder(self.config.max_frame_bytes)
        welcomed = None  # still None when no hello came within HELLO_TIMEOUT
        with trio.move_on_after(HELLO_TIMEOUT):
            welcomed = await self._hello(stream, decoder)
        if welcomed is None:
            return
        hello, principal, early = welcomed
        connection = _Connection(self, stream, principal, hello.name)
        await stream.send_all(
            wire.welcome(__version__, self.config.max_frame_bytes, self.config.max_unacked)
        )
        self.frames_out["welcome"].inc()
        self._connections.append(connection)
        self.metrics.gateway_connections.inc()
        self._backlog = True
        self._pump_lot.unpark_all()
        log.info("gateway %r connected", connection.name)
        try:
            await connection.run(decoder, early)
        finally:
            self._connections.remove(connection)
            self.metrics.gateway_connections.dec()
            for device, owner in list(self._by_device.items()):
                if owner is connection:
                    del self._by_device[device]
            if connection.in_flight:
                self._backlog = True  # unacknowledged: still in the outbox, sent again
                self._pump_lot.unpark_all()
            log.info("gateway %r disconnected", connection.name)

    async def _hello(
        self, stream: trio.abc.Stream, decoder: wire.FrameDecoder
    ) -> tuple[wire.Hello, Principal, list[dict[object, object]]] | None:
        """The first frame must be a valid hello from a token with the gateway scope.

        Returns it with the frames that came right behind it.
        """
        frames: list[dict[object, object]] = []
        try:
            while not frames:
                data = await stream.receive_some(decoder.max_frame)
                if not data:
                    return None
                frames = decoder.feed(data)
            hello = wire.parse_hello(frames[0])
        except wire.FrameError as exc:
            await self._send_error(stream, exc.code, exc.message)
            return None
        if hello.version != wire.PROTOCOL_VERSION:
            await self._send_error(
                stream,
                "unsupported-version",
                f"protocol version {hello.version} is not supported; "
                f"this engine speaks {wire.PROTOCOL_VERSION}",
            )
            return None
        principal = self._auth.authenticate(hello.token)
        if principal is None:
            await self._send_error(stream, "unauthorized", "invalid token")
            return None
        if "gateway" not in principal.scopes:
            await self._send_error(
                stream, "forbidden", f'token "{principal.name}" does not have the "gateway" scope'
            )
            return None
        return hello, principal, frames[1:]

    async def _send_error(self, stream: trio.abc.Stream, code: str, message: str) -> None:
        log.info("gateway refused: %s: %s", code, message)
        self.frames_out["error"].inc()
        with trio.move_on_after(1):
            await stream.send_all(wire.error(code, message))

    # uplink

    def forbidden(self, principal: Principal, pub: wire.Pub) -> str | None:
        """Why this token may not publish this event, or None."""
        draft = pub.draft
        if draft.product_id is not None and draft.product_id not in self._product_ids:
            return f"product {draft.product_id} not found"
        if not principal.sees_product(draft.product_id):
            return f'token "{principal.name}" may not publish for product {draft.product_id}'
        if not principal.sees_device(draft.device_id):
            return f'token "{principal.name}" may not publish for device "{draft.device_id}"'
        return None

    def published(
        self, connection: _Connection, batch: list[wire.Pub], stored: list[Event | None]
    ) -> None:
        """Committed publishes: fan out the new ones; duplicates were acknowledged only."""
        duplicates = 0
        for pub, event in zip(batch, stored, strict=True):
            self._by_device[pub.draft.device_id] = connection
            if event is None:
                duplicates += 1
        self._published.inc(len(batch) - duplicates)
        if duplicates:
            self.metrics.gateway_duplicates.inc(duplicates)
        self.metrics.gateway_acks.inc(len(batch))

    # downlink

    async def acked(self, connection: _Connection, ids: tuple[int, ...]) -> None:
        known = [i for i in ids if connection.in_flight.pop(i, None) is not None]
        if known:
            self._acking.update(known)  # still in the outbox until the delete commits
            try:
                await self.store.downlinks_acked(known)
            except JournalUnavailable as exc:  # they stay in the outbox: sent again later
                log.warning("downlink acks not recorded: %s", exc)
                self._backlog = True
            else:
                self.metrics.gateway_downlinks_acked.inc(len(known))
            finally:
                self._acking.difference_update(known)
                if self._acked_during_read is not None:
                    self._acked_during_read.update(known)
        if self._backlog:
            self._pump_lot.unpark_all()

    async def _pump(self) -> None:
        """Send outbox entries no connection holds, as room allows; expire old ones."""
        while True:
            with trio.move_on_after(PUMP_EVERY):
                await self._pump_lot.park()
            try:
                await self._pump_once()
            except JournalUnavailable as exc:
                log.warning("downlink outbox not read: %s", exc)

    async def _pump_once(self) -> None:
        expired = await self.store.expire_downlinks()
        if expired:
            self.metrics.gateway_downlinks_expired.inc(expired)
        if not self._backlog and not self._shared:
            return
        # Page through the outbox, oldest first, skipping what is in flight and what waits
        # for a gateway without room (a slow gateway's devices do not hold up the others).
        self._backlog = False
        after, scanned = 0, 0
        while scanned < PUMP_SCAN and any(c.room > 0 for c in self._connections):
            self._acked_during_read = set()
            try:
                page = await self.store.pending_downlinks(after, PUMP_PAGE)
                held = self._acking.union(
                    self._acked_during_read, *(c.in_flight for c in self._connections)
                )
            finally:
                self._acked_during_read = None
            for downlink in page:
                if downlink.event.id in held:
                    continue
                connection = self._route(downlink.device)
                if connection is None or connection.room <= 0:
                    self._backlog = True
                    continue
                connection.offer(downlink)
            scanned += len(page)
            if len(page) < PUMP_PAGE:
                return
            after = page[-1].event.id
        self._backlog = True  # not looked at to the end


async def _unix_listener(path: Path) -> trio.SocketListener:
    stale = trio.Path(path)
    if await stale.is_socket():
        await stale.unlink()  # left by a daemon that did not stop cleanly
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(os.fspath(path))
    sock.listen(128)
    return trio.SocketListener(sock)


def _tls_of(config: Config) -> ssl.SSLContext:
    """The server context of ``[server]``'s pair, or the config problem it is."""
    server = config.server
    assert server.tls_cert is not None and server.tls_key is not None  # checked at load
    try:
        return server_context(server.tls_cert, server.tls_key)
    except TlsError as exc:
        raise ConfigError([f"{config.path}: server.{exc.setting}: {exc}"]) from None
