"""How context values look in a rendered template: as Particle's JavaScript renderer shows
them, not as Python's ``str()`` would (no I/O)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson


def to_text(value: object) -> str:
    """A value as text: ``true``/``false``, ``21.5``, ``3`` (never ``3.0``), "" for null."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[return-value]
    if value is None:
        return ""
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float:
        return js_number(value)  # type: ignore[arg-type]
    if isinstance(value, Mapping | list | tuple):
        return compact_json(value)
    return str(value)


def js_number(value: float) -> str:
    """A float as JavaScript's Number#toString writes it."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        sign = "-" if exponent.startswith("-") else "+"
        text = f"{mantissa}e{sign}{exponent.lstrip('+-').lstrip('0') or '0'}"
    return text


def compact_json(value: Any) -> str:
    """Objects and lists as compact JSON (JavaScript would print ``[object Object]``)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        # Integers beyond 64 bits and other rarities: the slower, more lenient encoder.
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def escape_html(text: str) -> str:
    """What ``{{name}}`` does to a value: the spec's four characters."""
    if "&" in text or "<" in text or ">" in text or '"' in text:
        return (
            text.replace("&", "&amp;")
            .replace("<", "&lt;")
            .replace(">", "&gt;")
            .replace('"', "&quot;")
        )
    return text


def truthy(value: object) -> bool:
    """Whether a section renders: JavaScript's truth, and an empty list is false."""
    if value is None or value is False or value == "":
        return False
    if type(value) in (int, float):
        return value != 0 and value == value
    if isinstance(value, list | tuple):
        return bool(value)
    return True
