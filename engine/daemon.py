"""Builds every part of the engine from the config and runs them in one nursery."""

from __future__ import annotations

import functools
import logging
import signal
import ssl
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

import trio

from engine import __version__
from engine.api.app import Api, HooksParts
from engine.api.hooks import catalog_of, now_iso
from engine.config.changes import applied, lease_problems, needs_restart
from engine.config.settings import Config, ConfigError
from engine.core.bus import Bus
from engine.core.model import StoredHook
from engine.core.notify import READY, STOPPING, notify
from engine.delivery.dispatcher import Dispatcher
from engine.delivery.downlink import Downlink, MemoryDownlink
from engine.delivery.outcomes import JournalOutcomes
from engine.delivery.service import Deliveries, Sender
from engine.delivery.workers import WorkerPool
from engine.gateway.hub import GatewayHub
from engine.hooks.catalog import API, CONFIG
from engine.hooks.changes import HookChanges
from engine.hooks.documents import hook_from_document, parse_document
from engine.hooks.hook import compile_hooks
from engine.hooks.router import HookSet, reread_and_prepare
from engine.http.server import HttpServer
from engine.http.tls import HTTP_ALPN, TlsError, server_context
from engine.journal import Journal, MemoryJournal
from engine.journal.base import JournalUnavailable
from engine.journal.redis import RedisJournal
from engine.journal.schema import JournalError
from engine.journal.sqlite import SqliteJournal
from engine.metrics import Metrics

log = logging.getLogger("hookwire")

NO_CHANGES = HookChanges((), (), ())


@dataclass(frozen=True, slots=True)
class Reloaded:
    """What a reload did: its problems (nothing changed), or the changes applied."""

    problems: tuple[str, ...] = ()
    changes: HookChanges = NO_CHANGES
    tokens: int = 0
    restart: tuple[str, ...] = ()  # settings that changed and apply only at start

    def answer(self) -> dict[str, object]:
        """The API's answer (``problems`` make it an error)."""
        return {
            "ok": True,
            "hooks": {
                "added": [hook.name for hook in self.changes.added],
                "changed": [hook.name for hook in self.changes.changed],
                "removed": list(self.changes.removed),
            },
            "tokens": self.tokens,
            "needs_restart": list(self.restart),
        }


def open_journal(config: Config, hooks: HookSet) -> Journal:
    """The configured journal, opened (and migrated); raises JournalError when it cannot be."""
    settings = config.journal
    gateway = config.gateway
    if settings.backend == "memory":
        return MemoryJournal(
            hooks=hooks,
            downlink_ttl=gateway.downlink_ttl,
            dedupe_window=gateway.dedupe_window,
        )
    if settings.backend == "sqlite":
        return SqliteJournal(
            settings.path,
            hooks,
            synchronous=settings.synchronous,
            retention=settings.retention,
            commit_interval=settings.commit_interval,
            downlink_ttl=gateway.downlink_ttl,
            dedupe_window=gateway.dedupe_window,
        )
    assert settings.backend == "redis" and settings.url is not None
    journal = RedisJournal(
        settings.url,
        hooks,
        node=config.cluster.node_name(),
        password=settings.password,
        retention=settings.retention,
        downlink_ttl=gateway.downlink_ttl,
        dedupe_window=gateway.dedupe_window,
        lease=config.cluster.lease,
    )
    _open_in_a_thread(journal)
    return journal


def _open_in_a_thread(journal: RedisJournal) -> None:
    """``journal.open()`` before the daemon is built (it needs the stored hooks first), in
    a trio run of its own, on a thread, so that it works whether or not one runs here."""
    failure: list[BaseException] = []

    def opening() -> None:
        try:
            trio.run(journal.open)
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=opening, name="hookwire-journal-open")
    thread.start()
    thread.join()
    if failure:
        if isinstance(failure[0], JournalUnavailable):
            raise JournalError(str(failure[0])) from None
        raise failure[0]


def journal_description(config: Config) -> str:
    """The journal as the startup line names it: its file, its Redis URL (no password), or
    ``memory``."""
    settings = config.journal
    if settings.backend == "sqlite":
        return str(settings.path)
    if settings.backend == "redis" and settings.url is not None:
        return _without_password(settings.url)
    return settings.backend


def _without_password(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = _host(parts.hostname or "")
    netloc = f"{user}:***@{host}" if user else f":***@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class Engine:
    """The running daemon: journal, bus, API server, metrics."""

    def __init__(self, config: Config, *, ssl_context: ssl.SSLContext | None = None) -> None:
        config = compile_hooks(config)  # compiled already when loaded by engine.hooks
        tls_cert, tls_key = config.server.tls_cert, config.server.tls_key
        try:  # before the journal opens: a pair that can serve nothing touches no file
            tls = (
                server_context(tls_cert, tls_key, alpn=HTTP_ALPN)
                if tls_cert is not None and tls_key is not None  # both or neither, at load
                else None
            )
        except TlsError as exc:  # refused as the config is
            raise ConfigError([f"{config.path}: server.{exc.setting}: {exc}"]) from None
        self.config = config
        self._reloading = trio.Lock()
        self.metrics = Metrics()
        self.hooks = HookSet(config.hooks)
        self.journal = open_journal(config, self.hooks)
        stored = _stored_hooks(config, self.journal, self.hooks)
        if isinstance(self.journal, SqliteJournal | RedisJournal):
            self.journal.apply_disabled_hooks()  # the 410 marks of the API's hooks too
        self.bus = Bus()
        self.journal.fan_out_to(self.bus.publish)
        self.gateway: GatewayHub | None = None
        self.downlink: Downlink = MemoryDownlink()
        if config.gateway.tcp is not None or config.gateway.unix is not None:
            shared = isinstance(self.journal, RedisJournal)  # other nodes' answers too
            self.gateway = GatewayHub(config, self.journal, self.metrics, shared=shared)
            self.downlink = self.gateway
            journal = self.journal
            self.metrics.gateway_outbox_depth.set_function(lambda: journal.outbox_depth)
        outcomes = JournalOutcomes(self.journal, self.downlink)
        counts = self.metrics.delivery_counts
        epoch = self.journal.epoch
        workers = config.delivery.worker_count()
        self.dispatcher: Dispatcher | None = None  # deliveries in this process (workers = 0)
        self.workers: WorkerPool | None = None
        sender: Sender
        if workers == 0:
            dispatcher = self.dispatcher = Dispatcher(
                config, outcomes, counts, epoch=epoch, ssl_context=ssl_context, hooks=self.hooks
            )
            self.metrics.watch_destinations(lambda: dispatcher.destinations)
            sender = dispatcher
        else:
            if ssl_context is not None:
                raise ValueError("an ssl_context applies to deliveries in this process only")
            pool = self.workers = WorkerPool(
                config, self.hooks, outcomes, counts, epoch=epoch, workers=workers
            )
            self.metrics.watch_destinations(lambda: pool.destinations)
            sender = pool
        for hook in stored:
            sender.define(hook.name, hook.document, hook.product)
        self.deliveries = Deliveries(
            self.journal,
            sender,
            outcomes,
            config.delivery.allow_networks,
            config.delivery.timeout,
        )
        if isinstance(self.journal, SqliteJournal):
            self.metrics.watch_journal(self.journal)
        catalog = catalog_of(self.hooks, stored, now_iso())
        self.api = Api(
            config,
            self.journal,
            self.bus,
            self.metrics,
            HooksParts(self.hooks, catalog, self.deliveries, self.reload),
            problems=self.problems,
        )
        for source in (CONFIG, API):
            self.metrics.hooks_by_source.labels(source).set_function(
                functools.partial(catalog.count, source)
            )
        self.server = HttpServer(
            self.api.handle,
            config.limits,
            on_protocol_error=lambda status: self.metrics.http_protocol_errors.labels(
                str(status)
            ).inc(),
            tls=tls,
        )
        failures: dict[str, Callable[[], int]] = {}
        if tls is not None:
            server = self.server
            failures["api"] = lambda: server.tls_failures
        gateway = self.gateway
        if gateway is not None and config.gateway.tls:
            failures["gateway"] = lambda: gateway.tls_failures
        if failures:
            self.metrics.watch_tls(failures)

    def __repr__(self) -> str:
        return f"<Engine {self.server!r} {self.bus!r} {self.journal!r}>"

    def problems(self) -> list[str]:
        """What keeps this node from doing its work now (``/readyz``): the journal cannot
        be written (or Redis reached), a delivery worker is down."""
        pool = self.workers.problems() if self.workers is not None else []
        return self.journal.problems() + pool

    async def run(
        self, *, task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled or ``shutdown()``; reports the API's bound addresses."""
        server = self.config.server
        try:
            # The journal outlives the rest, so what they write on the way out is kept.
            async with trio.open_nursery() as storage:
                await storage.start(self.journal.run)
                async with trio.open_nursery() as background:
                    await background.start(self.api.broadcaster.run)
                    await background.start(self.deliveries.run)
                    if isinstance(self.journal, RedisJournal) and self.api.hooks is not None:
                        # Hooks another node's API changed apply here too.
                        background.start_soon(self.journal.watch_hooks, self.api.hooks.follow)
                    gateway: list[str] = []
                    if self.gateway is not None:
                        gateway = await background.start(self.gateway.serve)
                        for where in gateway:
                            log.info("gateway channel listening on %s", where)
                    async with trio.open_nursery() as front:
                        addresses = await front.start(self.server.serve, server.host, server.port)
                        served = ", ".join(
                            f"{self.server.scheme}://{_host(host)}:{port}"
                            for host, port in addresses
                        )
                        log.info(
                            "hookwire %s serving %s; gateway %s; config %s; journal %s",
                            __version__,
                            served,
                            ", ".join(gateway) or "off",
                            self.config.path,
                            journal_description(self.config),
                        )
                        task_status.started(addresses)
                    # The server has stopped: nothing is left for the background to serve.
                    background.cancel_scope.cancel()
                storage.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await self.journal.aclose()

    async def reload(self) -> Reloaded:
        """Read the config file again and apply what can change live: the hooks, the
        tokens and the partials. A file with any problem changes nothing. A hook removed
        from the file ends as an API delete does (its waiting deliveries are dead letters,
        "hook removed"); one changed takes the next event, its queued deliveries keep the
        definition they started with. Reloads run one at a time."""
        async with self._reloading:
            path = self.config.path
            old = self.config
            try:
                reread, prepared = await trio.to_thread.run_sync(
                    reread_and_prepare, old, self.hooks
                )
            except ConfigError as exc:
                self.metrics.reloads.labels("refused").inc()
                log.error("config not reloaded, nothing changed: %s", "; ".join(exc.problems))
                return Reloaded(problems=tuple(exc.problems))
            new, changes = reread.config, reread.changes
            taken = lease_problems(old, new) + [
                f"{path}: {hook.where}.name: {hook.name!r} is taken by a webhook created "
                f"through the API (id {entry.id})"
                for hook in changes.added
                if (entry := self.api.hooks_catalog.named(hook.name)) is not None
            ]
            if taken:
                self.metrics.reloads.labels("refused").inc()
                log.error("config not reloaded, nothing changed: %s", "; ".join(taken))
                return Reloaded(problems=tuple(taken))
            config = self.config = applied(old, new)
            self.hooks.commit(prepared)
            self.api.reconfigure(config, changes)
            if self.gateway is not None:
                self.gateway.reload_tokens(config.auth.tokens)
            await self.deliveries.sender.reconfigure(config, reread.digest)
            async with trio.open_nursery() as nursery:
                for name in changes.removed:
                    nursery.start_soon(self.deliveries.sender.forget, name)
            restart = needs_restart(old, new)
            self.metrics.reloads.labels("applied").inc()
            log.info(
                "config reloaded: hooks %d added, %d changed, %d removed; %d tokens%s",
                len(changes.added),
                len(changes.changed),
                len(changes.removed),
                len(config.auth.tokens),
                f"; needs a restart: {', '.join(restart)}" if restart else "",
            )
            return Reloaded(changes=changes, tokens=len(config.auth.tokens), restart=tuple(restart))

    def shutdown(self) -> None:
        """Stop accepting, close streams; ``run`` returns once requests in progress end."""
        log.info("shutting down")
        self.server.shutdown()


async def run_until_signalled(engine: Engine) -> None:
    """`hookwire run`: serve until SIGTERM or SIGINT, then stop cleanly; SIGHUP reloads the
    config file (one reload at a time: a SIGHUP during one runs after it)."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(engine.run)
            notify(READY)  # systemd (Type=notify): serving now

            async def on_signals() -> None:
                async for signum in signals:
                    log.info("received %s", signal.Signals(signum).name)
                    if signum == signal.SIGHUP:
                        nursery.start_soon(engine.reload)
                        continue
                    notify(STOPPING)
                    engine.shutdown()
                    return

            nursery.start_soon(on_signals)
    log.info("stopped")


def _stored_hooks(config: Config, journal: Journal, hooks: HookSet) -> list[StoredHook]:
    """Add the hooks created through the API, as the journal kept them, to ``hooks``;
    returns those added. One that no longer compiles (the config changed under it: a
    product gone, a partial removed) is left out, with a log line saying why."""
    added = []
    for stored in journal.stored_hooks():
        try:
            hook = hook_from_document(
                parse_document(stored.document),
                name=stored.name,
                product=stored.product,
                config=config,
            )
        except ConfigError as exc:
            log.error("webhook %r (%s) left out: %s", stored.name, stored.id, exc)
            continue
        if hooks.get(stored.name) is not None:
            log.error(
                "webhook %r (%s) left out: the config file has a hook of that name",
                stored.name,
                stored.id,
            )
            continue
        hooks.add(hook)
        added.append(stored)
    return added
