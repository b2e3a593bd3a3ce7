"""The delivery log's routes: a hook's deliveries (by state, newest first, a page at a time),
one delivery with every attempt, and a hook's last successes and failures with its traffic
per hour. The hooks or admin scope, as the hook routes; a token limited to a product sees
that product's hooks only."""

from __future__ import annotations

import orjson

from engine.api.hooks import Authorize
from engine.hooks.catalog import HookCatalog, HookEntry
from engine.http.h1 import Request
from engine.http.server import Response, error_response
from engine.journal import Journal
from engine.journal.base import JournalUnavailable
from engine.journal.delivery_log import delivery_query


class DeliveryLogApi:
    """Handlers of ``/v1/integrations/:id/deliveries``, ``/v1/integrations/:id/activity``,
    ``/v1/deliveries`` and ``/v1/deliveries/:id`` (and their /webhooks and product forms)."""

    def __init__(self, journal: Journal, catalog: HookCatalog, authorize: Authorize) -> None:
        self._journal = journal
        self._catalog = catalog
        self._authorize = authorize

    def __repr__(self) -> str:
        return f"<DeliveryLogApi {self._catalog!r}>"

    async def hook_deliveries(self, request: Request, params: dict[str, str]) -> Response:
        """A page of one hook's deliveries: ``?state=pending,retrying,delivered,dead``,
        ``cursor`` (from the previous page) and ``limit``."""
        entry = self._hook(request, params)
        if isinstance(entry, Response):
            return entry
        return await self._page(request, entry.name)

    async def deliveries(self, request: Request, params: dict[str, str]) -> Response:
        """A page of deliveries of every hook, or of ``?hook=NAME``."""
        _, product = self._authorize(request, params)
        name = request.query.get("hook") or None
        if name is not None:
            entry = self._catalog.named(name)
            if entry is None or entry.product != product:
                return error_response(404, f"no hook named {name!r}")
        return await self._page(request, name)

    async def delivery(self, request: Request, params: dict[str, str]) -> Response:
        """One delivery by its webhook-id, its event, and every attempt."""
        _, product = self._authorize(request, params)
        key = params["id"]
        try:
            found = await self._journal.delivery_detail(key)
        except JournalUnavailable as exc:
            return error_response(503, f"the delivery log cannot be read: {exc}")
        if found is not None:
            entry = self._catalog.named(found.record.hook)
            if (entry.product if entry is not None else None) == product:
                return _ok(found.to_json())
        return error_response(404, f"no delivery with id {key!r}")

    async def activity(self, request: Request, params: dict[str, str]) -> Response:
        """A hook's last 10 successes and 10 failures (with their requests and answers) and
        its delivered and failed attempts per hour for the last 30 days."""
        entry = self._hook(request, params)
        if isinstance(entry, Response):
            return entry
        try:
            found = await self._journal.hook_activity(entry.name)
        except JournalUnavailable as exc:
            return error_response(503, f"the delivery log cannot be read: {exc}")
        return _ok(found.to_json())

    def _hook(self, request: Request, params: dict[str, str]) -> HookEntry | Response:
        _, product = self._authorize(request, params)
        entry = self._catalog.get(params["id"])
        if entry is None or entry.product != product:
            return error_response(404, f"no webhook with id {params['id']!r}")
        return entry

    async def _page(self, request: Request, hook: str | None) -> Response:
        try:
            query = delivery_query(request.query, hook)
        except ValueError as exc:
            return error_response(400, str(exc))
        try:
            page = await self._journal.delivery_page(query)
        except JournalUnavailable as exc:
            return error_response(503, f"the delivery log cannot be read: {exc}")
        return _ok(page.to_json())


def _ok(body: dict[str, object]) -> Response:
    return Response(200, orjson.dumps({"ok": True, **body}))
