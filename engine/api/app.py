"""The API's request handler: route, authenticate, publish or stream, and count it all."""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import trio

from engine import __version__
from engine.api.broadcast import Broadcaster, StreamStats
from engine.api.console import Console
from engine.api.cors import UNCHANGED, CorsPolicy, Decision, Kind
from engine.api.dead_letters import list_query, replay_query
from engine.api.delivery_log import DeliveryLogApi
from engine.api.hooks import HookControl, HooksApi
from engine.api.publish import publish_fields
from engine.api.routes import ROUTES, Matched, MethodNotAllowed, match_route
from engine.api.streams import EventStream, event_filter, plan_resume, requested_resume
from engine.config.settings import Config
from engine.core.auth import Authenticator, Principal
from engine.core.bus import Bus
from engine.core.events import EventRejected, build_draft, check_device_id
from engine.core.model import REST_DEVICE_ID
from engine.core.ratelimit import TokenBucket
from engine.hooks.catalog import HookCatalog
from engine.hooks.changes import HookChanges
from engine.hooks.router import HookSet
from engine.http.h1 import Request
from engine.http.server import JSON, Deferred, Response, StreamResponse, error_response
from engine.journal import Journal, JournalUnavailable, PendingAppend
from engine.metrics import CONTENT_TYPE, Metrics

Result = Response | StreamResponse | Deferred
RouteHandler = Callable[[Request, dict[str, str]], Awaitable[Result]]

UNAUTHORIZED_HEADERS = [*JSON, ("www-authenticate", 'Bearer realm="hookwire"')]
KNOWN_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
SERVED_METHODS = tuple(sorted({route.method for route in ROUTES}))
"""What a preflight allows (``Access-Control-Allow-Methods``): the methods of the routes."""


class Reloadable(Protocol):
    """What a reload answers (engine.daemon.Reloaded)."""

    @property
    def problems(self) -> tuple[str, ...]: ...

    def answer(self) -> dict[str, object]: ...


@dataclass(frozen=True, slots=True)
class HooksParts:
    """What the hook routes work on, built by the daemon."""

    hooks: HookSet
    catalog: HookCatalog
    control: HookControl
    reload: Callable[[], Awaitable[Reloadable]]


class Denied(Exception):
    """A request stopped before its handler ran; carries the answer to send."""

    def __init__(self, response: Response) -> None:
        self.response = response


class _Stats(StreamStats):
    def __init__(self, metrics: Metrics) -> None:
        self._subscribers = metrics.sse_subscribers
        self._sent = metrics.sse_events_sent
        self._dropped = metrics.sse_dropped

    def opened(self) -> None:
        self._subscribers.inc()

    def closed(self) -> None:
        self._subscribers.dec()

    def sent(self, n: int) -> None:
        self._sent.inc(n)

    def dropped(self) -> None:
        self._dropped.inc()


class Api:
    """Answers every HTTP request of the engine's API port."""

    def __init__(
        self,
        config: Config,
        journal: Journal,
        bus: Bus,
        metrics: Metrics,
        hooks: HooksParts | None = None,
        *,
        problems: Callable[[], list[str]] | None = None,
    ) -> None:
        self._config = config
        self._journal = journal
        self._problems = problems or journal.problems  # what /readyz reports
        self._metrics = metrics
        self._auth = Authenticator(config.auth.tokens)
        self._cors = CorsPolicy(config.api.cors_origins, SERVED_METHODS)
        self.broadcaster = Broadcaster(
            bus,
            buffer=config.sse.buffer,
            keepalive=config.sse.keepalive,
            batch_window=config.sse.batch_window,
            send_timeout=config.limits.idle_timeout,
            stats=_Stats(metrics),
        )
        self._buckets: dict[str, TokenBucket] = {}
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._timers: dict[str, Any] = {}
        self._published = metrics.events_published.labels("rest")
        console = Console()  # its files read now, at start
        self._handlers: dict[str, RouteHandler] = {
            "publish": self._publish,
            "publish_product": self._publish,
            "stream": self._stream,
            "stream_devices": self._stream,
            "stream_device": self._stream,
            "stream_product": self._stream,
            "stream_product_device": self._stream,
            "dead_letters": self._dead_letters,
            "replay_dead_letters": self._replay_dead_letters,
            "metrics": self._metrics_page,
            "healthz": self._health,
            "readyz": self._ready,
            "console": console.page,
            "console_file": console.file,
        }
        self.hooks: HooksApi | None = None
        if hooks is not None:
            self.hooks = HooksApi(
                config,
                hooks.hooks,
                hooks.catalog,
                journal,
                hooks.control,
                metrics.delivery_counts,
                self._hooks_principal,
            )
            self._reload = hooks.reload
            self._handlers |= {
                "reload": self._reload_config,
                "hooks_create": self.hooks.create,
                "hooks_list": self.hooks.list,
                "hooks_show": self.hooks.show,
                "hooks_delete": self.hooks.delete,
                "hooks_edit": self.hooks.edit,
                "hooks_test": self.hooks.test,
            }
            log_api = DeliveryLogApi(journal, hooks.catalog, self._hooks_principal)
            self._handlers |= {
                "hook_deliveries": log_api.hook_deliveries,
                "hook_activity": log_api.activity,
                "deliveries": log_api.deliveries,
                "delivery": log_api.delivery,
            }

    def __repr__(self) -> str:
        return f"<Api routes={len(self._handlers)} {self.broadcaster!r}>"

    async def handle(self, request: Request) -> Result:
        started = time.perf_counter()
        cors = self._cross_origin(request)
        if cors.kind is Kind.ROUTE:
            route, result = await self._answer(request)
            if cors.headers:
                result = with_headers(result, cors.headers)
        elif cors.kind is Kind.PREFLIGHT:
            route, result = "preflight", Response(204, b"", list(cors.headers))
        else:
            route, result = "preflight", error_response(403, cors.reason, [*JSON, *cors.headers])
        if isinstance(result, Deferred):
            # Counted when the server resolves it: its status and time are known then.
            return Deferred(
                functools.partial(self._recorded, result, route, request.method, started)
            )
        self._record(route, request.method, result.status, time.perf_counter() - started)
        return result

    def _cross_origin(self, request: Request) -> Decision:
        """What CORS adds to this request's answer (nothing, for most: no Origin)."""
        origin = request.header(b"origin")
        if origin is None:
            return UNCHANGED
        return self._cors.decide(
            request.method,
            origin.decode("latin-1"),
            _text(request.header(b"access-control-request-method")),
            _text(request.header(b"access-control-request-headers")),
        )

    async def _answer(self, request: Request) -> tuple[str, Result]:
        """The route's name (for metrics) and its answer."""
        route = "unmatched"
        try:
            matched = match_route(request.method, request.path)
        except ValueError:
            result: Result = error_response(400, "request path is not valid UTF-8")
        else:
            handler = None
            if isinstance(matched, Matched):
                route = matched.route.name
                handler = self._handlers.get(route)
            if isinstance(matched, Matched) and handler is None:
                result = error_response(404, f"no route for {request.path}")
            elif isinstance(matched, Matched):
                assert handler is not None
                try:
                    result = await handler(request, matched.params)
                except Denied as denied:
                    result = denied.response
                except EventRejected as exc:
                    result = error_response(exc.status, str(exc))
            elif isinstance(matched, MethodNotAllowed):
                allowed = ", ".join(matched.allowed)
                result = error_response(
                    405,
                    f"method {request.method} not allowed here; use {allowed}",
                    [*JSON, ("allow", allowed)],
                )
            else:
                result = error_response(404, matched.message)
        return route, result

    async def _recorded(
        self, deferred: Deferred, route: str, method: str, started: float
    ) -> Response:
        response = await deferred.resolve()
        self._record(route, method, response.status, time.perf_counter() - started)
        return response

    def _record(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in KNOWN_METHODS else "other"
        key = (route, method, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self._metrics.http_requests.labels(
                route, method, str(status)
            )
        counter.inc()
        timer = self._timers.get(route)
        if timer is None:
            timer = self._timers[route] = self._metrics.http_request_duration.labels(route)
        timer.observe(seconds)

    # authentication and scope

    def _principal(self, request: Request, scope: str) -> Principal:
        token = token_from(request)
        if token is None:
            raise Denied(error_response(401, "access token required", UNAUTHORIZED_HEADERS))
        principal = self._auth.authenticate(token)
        if principal is None:
            raise Denied(error_response(401, "invalid access token", UNAUTHORIZED_HEADERS))
        if not principal.allows(scope):
            raise Denied(
                error_response(403, f'token "{principal.name}" does not have the "{scope}" scope')
            )
        return principal

    @property
    def hooks_catalog(self) -> HookCatalog:
        assert self.hooks is not None, "built with the hook routes"
        return self.hooks.catalog

    def reconfigure(self, config: Config, changes: HookChanges) -> None:
        """A reload applied: its tokens from the next request on, its hooks in the list."""
        self._auth = Authenticator(config.auth.tokens)
        if self.hooks is not None:
            self.hooks.reconfigure(config, changes)

    async def _reload_config(self, request: Request, params: dict[str, str]) -> Result:
        self._administrator(request)
        reloaded = await self._reload()
        if reloaded.problems:
            message = "config not reloaded, nothing changed: " + "; ".join(reloaded.problems)
            return error_response(400, message, details={"problems": list(reloaded.problems)})
        return Response(200, orjson.dumps(reloaded.answer()))

    def _hooks_principal(
        self, request: Request, params: dict[str, str]
    ) -> tuple[Principal, int | None]:
        """The principal of a hook route (the hooks or admin scope) and its product."""
        principal = self._principal(request, "hooks")
        if "product" in params:
            return principal, self._product_id(principal, params["product"])
        if not principal.unscoped:
            raise Denied(
                error_response(
                    403,
                    f'token "{principal.name}" is limited to some products or devices: manage '
                    "its webhooks under /v1/products/:product/webhooks",
                )
            )
        return principal, None

    def _product_id(self, principal: Principal, key: str) -> int:
        product = self._config.product(key)
        if product is None:
            raise Denied(error_response(404, f'product "{key}" not found'))
        if not principal.sees_product(product.id):
            raise Denied(
                error_response(403, f'token "{principal.name}" may not use product {product.id}')
            )
        return product.id

    # routes

    async def _publish(self, request: Request, params: dict[str, str]) -> Result:
        principal = self._principal(request, "publish")
        product_id = self._product_id(principal, params["product"]) if params else None
        if not principal.sees_product(product_id):
            raise Denied(
                error_response(
                    403,
                    f'token "{principal.name}" is limited to its products; '
                    "publish to /v1/products/:product/events",
                )
            )
        if not principal.sees_device(REST_DEVICE_ID):
            raise Denied(
                error_response(
                    403, f'token "{principal.name}" may not publish as device "{REST_DEVICE_ID}"'
                )
            )
        draft = build_draft(
            publish_fields(request),
            device_id=REST_DEVICE_ID,
            product_id=product_id,
            max_data_bytes=self._config.limits.max_data_bytes,
        )
        if not self._within_rate(principal):
            return error_response(429, f'token "{principal.name}" is publishing too fast')
        # Queued now, in request order; the answer waits for the commit, which the
        # publishes pipelined behind this one may then share.
        return Deferred(functools.partial(self._stored, self._journal.append_nowait(draft)))

    async def _stored(self, pending: PendingAppend) -> Response:
        """A publish's answer once its append is committed (or refused: 503)."""
        try:
            event = await pending.wait()
        except JournalUnavailable as exc:
            return error_response(503, f"event not stored: {exc}")
        self._published.inc()
        return Response(200, b'{"ok":true,"id":%d}' % event.id)

    def _within_rate(self, principal: Principal) -> bool:
        limits = self._config.limits
        if limits.publish_rate <= 0:
            return True
        now = trio.current_time()
        bucket = self._buckets.get(principal.name)
        if bucket is None:
            burst = limits.publish_burst or max(1.0, limits.publish_rate)
            bucket = self._buckets[principal.name] = TokenBucket(limits.publish_rate, burst, now)
        return bucket.try_take(now)

    async def _stream(self, request: Request, params: dict[str, str]) -> Result:
        principal = self._principal(request, "subscribe")
        product_id = self._product_id(principal, params["product"]) if "product" in params else None
        device_id = params.get("device")
        if device_id is not None:
            check_device_id(device_id)
            if not principal.sees_device(device_id):
                raise Denied(
                    error_response(
                        403, f'token "{principal.name}" may not see device "{device_id}"'
                    )
                )
        try:
            last_event_id = requested_resume(request)
        except ValueError as exc:
            raise Denied(error_response(400, str(exc))) from None
        accepts = event_filter(principal, params.get("prefix", ""), device_id, product_id)
        if last_event_id is None:
            return EventStream(self.broadcaster, accepts)
        try:
            resume = await plan_resume(self._journal, last_event_id)
        except JournalUnavailable as exc:
            return error_response(503, f"stream not resumed: {exc}")
        return EventStream(self.broadcaster, accepts, resume)

    async def _dead_letters(self, request: Request, params: dict[str, str]) -> Result:
        self._administrator(request)
        try:
            query = list_query(request.query, time.time())
        except ValueError as exc:
            return error_response(400, str(exc))
        try:
            letters = await self._journal.list_dead_letters(query)
        except JournalUnavailable as exc:
            return error_response(503, f"dead letters not read: {exc}")
        body = {"ok": True, "dead_letters": [letter.to_json() for letter in letters]}
        return Response(200, orjson.dumps(body))

    async def _replay_dead_letters(self, request: Request, params: dict[str, str]) -> Result:
        self._administrator(request)
        try:
            query = replay_query(request.body, time.time())
        except ValueError as exc:
            return error_response(400, str(exc))
        try:
            replayed = await self._journal.replay_dead_letters(query)
        except JournalUnavailable as exc:
            return error_response(503, f"nothing replayed: {exc}")
        return Response(200, orjson.dumps(replayed.to_json()))

    def _administrator(self, request: Request) -> Principal:
        """The principal of an admin route: the admin scope, and no product or device limit."""
        principal = self._principal(request, "admin")
        if not principal.unscoped:
            raise Denied(
                error_response(
                    403,
                    f'token "{principal.name}" is limited to some products or devices; '
                    "dead letters need an admin token without limits",
                )
            )
        return principal

    async def _metrics_page(self, request: Request, params: dict[str, str]) -> Result:
        if self._config.metrics.require_token:
            self._principal(request, "metrics")
        return Response(200, self._metrics.render(), [("content-type", CONTENT_TYPE)])

    async def _ready(self, request: Request, params: dict[str, str]) -> Result:
        """Readiness: 503 with the reasons while the journal cannot be written, a delivery
        worker is down or Redis cannot be reached; ``/healthz`` stays liveness."""
        problems = self._problems()
        if problems:
            return error_response(
                503, "not ready: " + "; ".join(problems), details={"problems": problems}
            )
        return Response(200, b'{"ok":true,"ready":true}')

    async def _health(self, request: Request, params: dict[str, str]) -> Result:
        body = {
            "ok": True,
            "version": __version__,
            "last_event_id": self._journal.last_id(),
            "subscribers": len(self.broadcaster),
        }
        return Response(200, orjson.dumps(body))


def with_headers(result: Result, headers: tuple[tuple[str, str], ...]) -> Result:
    """``result`` with ``headers`` added to its head (a deferred one's, once it resolves)."""
    if isinstance(result, Response):
        return dataclasses.replace(result, headers=[*result.headers, *headers])
    if isinstance(result, StreamResponse):
        result.headers = [*result.headers, *headers]  # a stream's own object, made for this request
        return result
    return Deferred(functools.partial(_resolved_with, result, headers))


async def _resolved_with(deferred: Deferred, headers: tuple[tuple[str, str], ...]) -> Response:
    response = await deferred.resolve()
    return dataclasses.replace(response, headers=[*response.headers, *headers])


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def token_from(request: Request) -> str | None:
    """The token of a request: `Authorization: Bearer ...`, else `?access_token=`."""
    header = request.header(b"authorization")
    if header is not None:
        scheme, _, value = header.decode("latin-1").strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    return request.query.get("access_token") or None
