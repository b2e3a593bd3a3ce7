"""One request through a hook for a made-up event (``hookwire hooks test``): what was sent,
and what came back. Nothing is stored, retried or sent back to a device."""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import quote

from engine.core.model import Event
from engine.delivery.dispatcher import RESOLVE_TIMEOUT
from engine.delivery.request import EventParts, PreparedRequest, RequestBuilder, RequestError
from engine.delivery.ssrf import Network, Refused, Unresolvable, vetted_address
from engine.hooks.hook import Hook
from engine.http.client import ConnectionPool, HttpClientError
from engine.templates.context import event_context

SHOWN_BYTES = 1024
"""The start of a request or response body shown."""

SECRET_HEADERS = frozenset({"authorization", "webhook-signature"})


async def try_hook(
    hook: Hook,
    event: Event,
    *,
    allow: tuple[Network, ...],
    timeout: float,  # noqa: ASYNC109 (the pool's own deadline names the phase)
) -> dict[str, Any]:
    """Send ``event`` through ``hook`` once; the request (secrets masked) and the answer,
    or the reason there is none."""
    delivery_id = f"msg_test_{secrets.token_hex(8)}"
    parts = EventParts(event, event_context(event))
    try:
        request = RequestBuilder().build(hook, hook.templates, parts, delivery_id)
    except RequestError as exc:
        return {"answered": False, "error": f"the request cannot be built: {exc}"}
    headers = request.headers
    if hook.signer is not None:
        headers = headers + hook.signer.attempt_headers(delivery_id, int(time.time()), request.body)
    shown = _request(request, headers)
    target = request.target
    try:
        address = await vetted_address(target.host, target.port, allow, RESOLVE_TIMEOUT)
    except (Refused, Unresolvable) as exc:
        return {"answered": False, "error": str(exc), "request": shown}
    pool = ConnectionPool(target, address=address, verify_tls=hook.reject_unauthorized)
    started = time.perf_counter()
    try:
        response = await pool.request(
            request.method, request.path, headers, request.body, timeout=timeout
        )
    except HttpClientError as exc:
        return {"answered": False, "error": f"{exc} from {target.host}", "request": shown}
    finally:
        await pool.aclose()
    return {
        "answered": True,
        "request": shown,
        "response": {
            "status": response.status,
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in response.headers],
            "body": response.body[:SHOWN_BYTES].decode("utf-8", "replace"),
            "seconds": round(time.perf_counter() - started, 4),
        },
    }


def _request(request: PreparedRequest, headers: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "method": request.method,
        "url": f"{request.target}{quote(request.path, safe='/?&=%:+,;@!$~*()')}",
        "headers": [[k, "***" if k.lower() in SECRET_HEADERS else v] for k, v in headers],
        "body": request.body[:SHOWN_BYTES].decode("utf-8", "replace"),
    }
