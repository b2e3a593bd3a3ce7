"""The variables a template sees for one event; built once per event, shared by its hooks."""

from __future__ import annotations

from typing import Any

import orjson

from engine.core.model import Event

MAX_JSON_DATA_CHARS = 1_000_000
"""Event data is bounded by the publish limits; this only guards direct callers."""

_ALIASES = {
    "TRACKLE_EVENT_NAME": ("PARTICLE_EVENT_NAME", "SPARK_EVENT_NAME"),
    "TRACKLE_EVENT_VALUE": ("PARTICLE_EVENT_VALUE", "SPARK_EVENT_VALUE"),
    "TRACKLE_DEVICE_ID": ("PARTICLE_DEVICE_ID", "SPARK_CORE_ID"),
    "TRACKLE_PUBLISHED_AT": ("PARTICLE_PUBLISHED_AT", "SPARK_PUBLISHED_AT"),
    "TRACKLE_EVENT_ID": ("PARTICLE_EVENT_ID",),
    "PRODUCT_ID": (),
    "PRODUCT_VERSION": (),
}

BUILTIN_NAMES = frozenset(name for main, aliases in _ALIASES.items() for name in (main, *aliases))


def data_variables(data: str) -> dict[str, Any]:
    """The top-level keys of event data that is a JSON object; {} for anything else."""
    if not data.startswith("{") or len(data) > MAX_JSON_DATA_CHARS:
        return {}
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def builtin_variables(
    name: str,
    data: str,
    device_id: str,
    published_at: str,
    event_id: int | None = None,
    product_id: int | None = None,
    product_version: int | None = None,
) -> dict[str, Any]:
    """The built-in names and their Particle and Spark aliases."""
    values = {
        "TRACKLE_EVENT_NAME": name,
        "TRACKLE_EVENT_VALUE": data,
        "TRACKLE_DEVICE_ID": device_id,
        "TRACKLE_PUBLISHED_AT": published_at,
        "TRACKLE_EVENT_ID": event_id,
        "PRODUCT_ID": product_id,
        "PRODUCT_VERSION": product_version,
    }
    variables: dict[str, Any] = {}
    for main, aliases in _ALIASES.items():
        value = values[main]
        variables[main] = value
        for alias in aliases:
            variables[alias] = value
    return variables


def event_context(event: Event, product_version: int | None = None) -> dict[str, Any]:
    """Every variable of ``event``: its JSON data's keys, then the built-ins (which win)."""
    variables = data_variables(event.data)
    variables.update(
        builtin_variables(
            event.name,
            event.data,
            event.device_id,
            event.published_at,
            event.id,
            event.product_id,
            product_version,
        )
    )
    return variables
