"""The route table and a matcher without I/O: (method, raw path) -> route and parameters.

Patterns are written as paths: ``:name`` takes one segment, ``*name`` takes the rest
of the path (possibly empty), ``+name`` the rest of the path (at least one character).
Event-name prefixes may contain ``/`` (``hook-response/temp``), hence the tails.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    method: str
    pattern: str

    def match(self, segments: list[str]) -> dict[str, str] | None:
        parts = self.pattern.strip("/").split("/")
        params: dict[str, str] = {}
        for i, part in enumerate(parts):
            if part[0] in "*+":
                rest = "/".join(segments[i:])
                if part[0] == "+" and not rest:
                    return None
                params[part[1:]] = rest
                return params
            if i >= len(segments):
                return None
            if part[0] == ":":
                if not segments[i]:
                    return None
                params[part[1:]] = segments[i]
            elif part != segments[i]:
                return None
        return params if len(segments) == len(parts) else None


ROUTES = (
    Route("publish", "POST", "/v1/devices/events"),
    Route("publish_product", "POST", "/v1/products/:product/events"),
    Route("stream", "GET", "/v1/events/+prefix"),
    Route("stream_devices", "GET", "/v1/devices/events/*prefix"),
    Route("stream_device", "GET", "/v1/devices/:device/events/*prefix"),
    Route("stream_product", "GET", "/v1/products/:product/events/*prefix"),
    Route("stream_product_device", "GET", "/v1/products/:product/devices/:device/events/*prefix"),
    Route("hooks_create", "POST", "/v1/webhooks"),
    Route("hooks_list", "GET", "/v1/webhooks"),
    Route("hooks_show", "GET", "/v1/webhooks/:id"),
    Route("hooks_delete", "DELETE", "/v1/webhooks/:id"),
    Route("hooks_test", "POST", "/v1/webhooks/:id/test"),
    Route("hooks_create", "POST", "/v1/integrations"),
    Route("hooks_list", "GET", "/v1/integrations"),
    Route("hooks_show", "GET", "/v1/integrations/:id"),
    Route("hooks_delete", "DELETE", "/v1/integrations/:id"),
    Route("hooks_test", "POST", "/v1/integrations/:id/test"),
    Route("hooks_edit", "PUT", "/v1/integrations/:id"),
    Route("hooks_create", "POST", "/v1/products/:product/webhooks"),
    Route("hooks_list", "GET", "/v1/products/:product/webhooks"),
    Route("hooks_show", "GET", "/v1/products/:product/webhooks/:id"),
    Route("hooks_delete", "DELETE", "/v1/products/:product/webhooks/:id"),
    Route("hooks_test", "POST", "/v1/products/:product/webhooks/:id/test"),
    Route("hooks_create", "POST", "/v1/products/:product/integrations"),
    Route("hooks_list", "GET", "/v1/products/:product/integrations"),
    Route("hooks_show", "GET", "/v1/products/:product/integrations/:id"),
    Route("hooks_delete", "DELETE", "/v1/products/:product/integrations/:id"),
    Route("hooks_test", "POST", "/v1/products/:product/integrations/:id/test"),
    Route("hooks_edit", "PUT", "/v1/products/:product/integrations/:id"),
    Route("hook_deliveries", "GET", "/v1/webhooks/:id/deliveries"),
    Route("hook_activity", "GET", "/v1/webhooks/:id/activity"),
    Route("hook_deliveries", "GET", "/v1/integrations/:id/deliveries"),
    Route("hook_activity", "GET", "/v1/integrations/:id/activity"),
    Route("hook_deliveries", "GET", "/v1/products/:product/webhooks/:id/deliveries"),
    Route("hook_activity", "GET", "/v1/products/:product/webhooks/:id/activity"),
    Route("hook_deliveries", "GET", "/v1/products/:product/integrations/:id/deliveries"),
    Route("hook_activity", "GET", "/v1/products/:product/integrations/:id/activity"),
    Route("deliveries", "GET", "/v1/deliveries"),
    Route("delivery", "GET", "/v1/deliveries/:id"),
    Route("reload", "POST", "/v1/reload"),
    Route("dead_letters", "GET", "/v1/dead-letters"),
    Route("replay_dead_letters", "POST", "/v1/dead-letters/replay"),
    Route("metrics", "GET", "/metrics"),
    Route("healthz", "GET", "/healthz"),
    Route("readyz", "GET", "/readyz"),
    Route("console", "GET", "/console"),
    Route("console_file", "GET", "/console/:file"),
)


_EXACT = {r.pattern: r for r in ROUTES if not any(c in r.pattern for c in ":*+")}
"""Routes without parameters, found by one lookup (the publish route is the hot one)."""


@dataclass(frozen=True, slots=True)
class Matched:
    route: Route
    params: dict[str, str]


@dataclass(frozen=True, slots=True)
class NotFound:
    message: str


@dataclass(frozen=True, slots=True)
class MethodNotAllowed:
    allowed: tuple[str, ...]


def match_route(
    method: str, raw_path: str, routes: tuple[Route, ...] = ROUTES
) -> Matched | NotFound | MethodNotAllowed:
    """Find the route for a request; the path is split before percent-decoding.

    HEAD finds the GET route: the server sends what GET would, less the content
    (RFC 9110 9.3.2). Raises ValueError when a segment does not decode to UTF-8.
    """
    if method == "HEAD":
        method = "GET"
    exact = _EXACT.get(raw_path)
    if exact is not None and exact.method == method:
        return Matched(exact, {})
    if not raw_path.startswith("/"):
        return NotFound("request target must be a path")
    segments = [unquote(s, errors="strict") for s in raw_path[1:].split("/")]
    if segments and segments[-1] == "" and len(segments) > 1:
        segments.pop()  # a trailing slash changes nothing
    allowed: list[str] = []
    for route in routes:
        params = route.match(segments)
        if params is None:
            continue
        if route.method == method:
            return Matched(route, params)
        allowed.append(route.method)
        if route.method == "GET":
            allowed.append("HEAD")
    if allowed:
        return MethodNotAllowed(tuple(dict.fromkeys(allowed)))
    if segments[:2] == ["v1", "events"]:
        return NotFound("an event name prefix is required: /v1/events/:prefix")
    return NotFound(f"no route for {raw_path}")
