"""Particle's webhook and integration API: hooks created, listed, changed and removed live.

``POST /v1/webhooks`` (and ``/v1/integrations``, and both under ``/v1/products/:product``)
takes a Particle webhook JSON document as Particle's clients send it, checks it as the
config file's hooks are checked, keeps it in the journal, and routes to it from the next
event on. ``DELETE`` answers once none of the hook's deliveries can still be sent: those
queued end as dead letters ("hook removed") and those in flight have ended. Hooks of the
config file are listed too (source "config") and are changed only by editing the file.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from engine.config.settings import Config, ConfigError
from engine.core.auth import Principal
from engine.core.model import Event, StoredHook
from engine.hooks.catalog import API, CONFIG, HookCatalog, HookEntry, config_hook_id, new_hook_id
from engine.hooks.changes import HookChanges
from engine.hooks.documents import hook_from_document, parse_document
from engine.hooks.hook import Hook
from engine.hooks.router import HookSet
from engine.http.h1 import Request
from engine.http.server import Response, error_response
from engine.journal import HookNameTaken, Journal, JournalUnavailable
from engine.metrics import DeliveryCounts

SCOPE = "hooks"

log = logging.getLogger("hookwire.api")


class HookControl(Protocol):
    """What the API needs of the delivery side (the daemon's ``Deliveries``)."""

    def define(self, name: str, document: str, product: int | None) -> None: ...

    async def forget(self, name: str) -> None: ...

    async def refusal(self, hook: Hook) -> str | None:
        """Why the hook's URL may not be reached (the SSRF guard), or None."""
        ...

    async def trial(self, hook: Hook, event: Event) -> dict[str, Any]:
        """One request through the hook for a made-up event: what was sent and answered."""
        ...


Authorize = Callable[[Request, dict[str, str]], tuple[Principal, int | None]]
"""A request's principal (with the hooks scope) and the product of its route, or raises."""


def now_iso() -> str:
    """The time as Particle writes it: ``2026-12-06T17:30:00.000Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def catalog_of(hooks: HookSet, stored: list[StoredHook], started_at: str) -> HookCatalog:
    """The catalog at start: the config file's hooks, then those the journal kept."""
    api = {s.name for s in stored}
    entries = [
        HookEntry(config_hook_id(hook.name), hook.name, CONFIG, started_at, hook.product)
        for hook in hooks.hooks
        if hook.name not in api
    ]
    entries += [
        HookEntry(s.id, s.name, API, s.created_at, s.product, orjson.loads(s.document))
        for s in stored
    ]
    return HookCatalog(entries)


class HooksApi:
    """The handlers of the hook routes; state lives in the hook set, catalog and journal."""

    def __init__(
        self,
        config: Config,
        hooks: HookSet,
        catalog: HookCatalog,
        journal: Journal,
        control: HookControl,
        counts: DeliveryCounts,
        authorize: Authorize,
    ) -> None:
        self._config = config
        self._hooks = hooks
        self._catalog = catalog
        self._journal = journal
        self._control = control
        self._counts = counts
        self._authorize = authorize
        self._claimed: set[str] = set()  # names of hooks being created

    def __repr__(self) -> str:
        return f"<HooksApi {self._catalog!r}>"

    @property
    def catalog(self) -> HookCatalog:
        return self._catalog

    def reconfigure(self, config: Config, changes: HookChanges) -> None:
        """A reload applied: the config file's hooks as they now are, in the catalog."""
        self._config = config
        for name in changes.removed:
            self._catalog.remove(config_hook_id(name))
        now = now_iso()
        for hook in changes.added:
            self._catalog.put(
                HookEntry(config_hook_id(hook.name), hook.name, CONFIG, now, hook.product)
            )
        for hook in changes.changed:
            entry = self._catalog.named(hook.name)
            if entry is not None:
                self._catalog.put(dataclasses.replace(entry, product=hook.product))

    async def follow(self, stored: list[StoredHook]) -> None:
        """Make this node's API hooks what the journal keeps: hooks another node's API
        created, changed or deleted (a journal shared in cluster mode) apply here too. A
        stored hook that does not compile here (this node's config differs) is left out,
        with a log line."""
        wanted = {hook.id for hook in stored}
        for entry in self._catalog.from_source(API):
            if entry.id not in wanted:
                self._hooks.remove(entry.name)
                self._catalog.remove(entry.id)
                await self._control.forget(entry.name)
        for kept in stored:
            document = orjson.loads(kept.document)
            found = self._catalog.get(kept.id)
            if found is not None and found.document == document:
                continue
            try:
                hook = hook_from_document(
                    document, name=kept.name, product=kept.product, config=self._config
                )
            except ConfigError as exc:
                log.warning("stored hook %r not applied here: %s", kept.name, exc)
                continue
            if found is None:
                self._hooks.add(hook)
            else:
                self._hooks.replace(hook)
            self._catalog.put(
                HookEntry(kept.id, kept.name, API, kept.created_at, kept.product, document)
            )
            self._control.define(kept.name, kept.document, kept.product)

    async def create(self, request: Request, params: dict[str, str]) -> Response:
        _, product = self._authorize(request, params)
        try:
            document = parse_document(request.body)
        except ConfigError as exc:
            return _invalid(exc)
        hook_id = new_hook_id()
        given = document.get("name")
        name = given if isinstance(given, str) and given else hook_id
        taken = self._name_taken(name)
        if taken is not None:
            return error_response(409, taken)
        hook = await self._checked(document, name, product)
        if isinstance(hook, Response):
            return hook
        entry = HookEntry(hook_id, name, API, now_iso(), product, document)
        self._claimed.add(name)
        try:
            failed = await self._store(entry)
        finally:
            self._claimed.discard(name)
        if failed is not None:
            return failed
        self._hooks.add(hook)
        self._catalog.put(entry)
        self._control.define(name, _text(document), product)
        return _ok(self._created(entry, hook, request))

    async def edit(self, request: Request, params: dict[str, str]) -> Response:
        """PUT on an integration: the fields given replace the stored ones."""
        _, product = self._authorize(request, params)
        entry = self._entry(params["id"], product)
        if isinstance(entry, Response):
            return entry
        try:
            changes = parse_document(request.body)
        except ConfigError as exc:
            return _invalid(exc)
        assert entry.document is not None
        document = {**entry.document, **changes}
        if document.get("name", entry.name) != entry.name:
            return error_response(409, "a hook's name cannot change: create a new one instead")
        hook = await self._checked(document, entry.name, product)
        if isinstance(hook, Response):
            return hook
        edited = dataclasses.replace(entry, document=document)
        failed = await self._store(edited)
        if failed is not None:
            return failed
        self._hooks.replace(hook)
        self._catalog.put(edited)
        self._control.define(entry.name, _text(document), product)
        return _ok(self._view(edited))

    async def delete(self, request: Request, params: dict[str, str]) -> Response:
        _, product = self._authorize(request, params)
        entry = self._entry(params["id"], product)
        if isinstance(entry, Response):
            return entry
        try:
            await self._journal.delete_hook(entry.id)
        except JournalUnavailable as exc:
            return error_response(503, f"webhook not deleted: {exc}")
        self._hooks.remove(entry.name)
        self._catalog.remove(entry.id)
        await self._control.forget(entry.name)
        return _ok({"ok": True})

    async def test(self, request: Request, params: dict[str, str]) -> Response:
        """Send one made-up event through a hook (nothing stored, nothing retried); the
        body may give its ``name``, ``data`` and ``deviceId``."""
        _, product = self._authorize(request, params)
        entry = self._catalog.get(params["id"])
        hook = self._hooks.get(entry.name) if entry is not None else None
        if entry is None or hook is None or entry.product != product:
            return error_response(404, f"no webhook with id {params['id']!r}")
        fields: dict[str, object] = {}
        if request.body.strip():
            try:
                fields = parse_document(request.body)
            except ConfigError as exc:
                return _invalid(exc)
        event = Event(
            0,
            str(fields.get("name") or hook.event or "test"),
            str(fields.get("data", "test")),
            60,
            True,
            now_iso(),
            str(fields.get("deviceId") or next(iter(hook.devices), "test-device")),
            product,
        )
        return _ok(await self._control.trial(hook, event))

    async def list(self, request: Request, params: dict[str, str]) -> Response:
        _, product = self._authorize(request, params)
        return _ok([self._view(entry) for entry in self._catalog.entries(product)])

    async def show(self, request: Request, params: dict[str, str]) -> Response:
        _, product = self._authorize(request, params)
        entry = self._catalog.get(params["id"])
        if entry is None or entry.product != product:
            return error_response(404, f"no webhook with id {params['id']!r}")
        return _ok(self._view(entry))

    # helpers

    def _counters(self, name: str) -> dict[str, object]:
        """Deliveries and dead letters since the start, and the last success and failure."""
        counts = self._counts
        delivered_at = counts.last_delivered.get(name)
        failed = counts.last_failed.get(name)
        return {
            "delivered": counts.outcomes.get((name, "delivered"), 0),
            "dead": counts.outcomes.get((name, "dead"), 0),
            "last_delivered_at": _iso(delivered_at) if delivered_at is not None else None,
            "last_failed_at": _iso(failed[0]) if failed is not None else None,
            "last_failure": failed[1] if failed is not None else None,
        }

    async def _checked(
        self, document: dict[str, object], name: str, product: int | None
    ) -> Hook | Response:
        """The document compiled as a hook, or the answer that refuses it (a problem in
        it, or an address the SSRF guard refuses)."""
        try:
            hook = hook_from_document(document, name=name, product=product, config=self._config)
        except ConfigError as exc:
            return _invalid(exc)
        refusal = await self._control.refusal(hook)
        if refusal is not None:
            return error_response(400, f"webhook.url: {refusal}")
        return hook

    def _name_taken(self, name: str) -> str | None:
        if self._hooks.get(name) is not None or name in self._claimed:
            return f"a hook named {name!r} exists already: choose another name"
        return None

    def _entry(self, hook_id: str, product: int | None) -> HookEntry | Response:
        """The API hook to change; an error answer for an unknown one or a config hook."""
        entry = self._catalog.get(hook_id)
        if entry is None or entry.product != product:
            return error_response(404, f"no webhook with id {hook_id!r}")
        if entry.source == CONFIG:
            return error_response(
                409,
                f"webhook {entry.name!r} comes from the config file ({self._config.path}): "
                "change it there, and reload",
            )
        return entry

    async def _store(self, entry: HookEntry) -> Response | None:
        """Keep the entry in the journal; an error answer when it cannot be."""
        assert entry.document is not None
        stored = StoredHook(
            entry.id, entry.name, _text(entry.document), entry.product, entry.created_at
        )
        try:
            await self._journal.put_hook(stored)
        except HookNameTaken as exc:
            return error_response(409, str(exc))
        except JournalUnavailable as exc:
            return error_response(503, f"webhook not stored: {exc}")
        return None

    def _created(self, entry: HookEntry, hook: Hook, request: Request) -> dict[str, object]:
        view = {
            "ok": True,
            "id": entry.id,
            "name": entry.name,
            "url": hook.url,
            "event": hook.event,
            "created_at": entry.created_at,
            "hookUrl": f"{request.path.rstrip('/')}/{entry.id}",
        }
        if request.path.rstrip("/").endswith("/integrations"):
            view |= {"integration_type": "Webhook", "requestType": hook.request_type}
        return view

    def _view(self, entry: HookEntry) -> dict[str, object]:
        """Particle's fields of a listed webhook, and ours."""
        hook = self._hooks.get(entry.name)
        assert hook is not None
        why = self._hooks.why_disabled(entry.name)
        view: dict[str, object] = {
            "id": entry.id,
            "name": entry.name,
            "event": hook.event,
            "url": hook.url,
            "requestType": hook.request_type,
            "created_at": entry.created_at,
            "integration_type": "Webhook",
            "disabled": why is not None,
            "source": entry.source,
            "enabled": why is None,
            "disabled_reason": why,
            "counters": self._counters(entry.name),
        }
        if len(hook.devices) == 1:
            [view["deviceID"]] = hook.devices
        if entry.product is not None:
            view["product_id"] = entry.product
        return view


def _iso(unix: float) -> str:
    return (
        datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _text(document: dict[str, object]) -> str:
    return orjson.dumps(document).decode()


def _ok(body: object) -> Response:
    return Response(200, orjson.dumps(body))


def _invalid(exc: ConfigError) -> Response:
    return error_response(400, "; ".join(exc.problems))
