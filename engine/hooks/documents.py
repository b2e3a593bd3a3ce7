"""Hooks created through the API: a Particle webhook JSON document, compiled like the
config file's hooks, with the same checks and messages. No I/O."""

from __future__ import annotations

import dataclasses

import orjson

from engine.config.settings import Config, ConfigError, read_particle_webhook
from engine.hooks.hook import Hook, compile_hook
from engine.hooks.templates import HookTemplateErrors

WHERE = "webhook"
"""How messages name the document: ``webhook.url: expected ...``."""

SPELLINGS = {"deviceid": "deviceID"}
"""Particle's integrations API spells some fields otherwise than its webhooks API."""


def parse_document(text: bytes | str) -> dict[str, object]:
    """A webhook document's JSON object; raises ConfigError when it is not one."""
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ConfigError([f"{WHERE}: the body is not JSON: {exc}"]) from None
    if not isinstance(document, dict):
        kind = "an array" if isinstance(document, list) else f"a {type(document).__name__}"
        raise ConfigError([f"{WHERE}: expected a JSON object, got {kind}"])
    for spelled, field in SPELLINGS.items():
        if spelled in document and field not in document:
            document[field] = document.pop(spelled)
    return document


def hook_from_document(
    document: dict[str, object], *, name: str, product: int | None, config: Config
) -> Hook:
    """``document`` as a compiled hook named ``name``, for ``product`` when created under
    one; raises ConfigError listing every problem, templates' included."""
    hook = read_particle_webhook(document, where=WHERE, name=name, config=config)
    if product is not None:
        hook = dataclasses.replace(hook, product=product)
    try:
        return compile_hook(hook, config.partials, config.delivery.retry)
    except HookTemplateErrors as exc:
        raise ConfigError(list(exc.problems)) from None
