"""How context values look in a rendered template: as Particle's JavaScript renderer shows
them, not as Python's ``str()`` would (no I/O)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

_INFINITIES = {float("inf"): "Infinity", float("-inf"): "-Infinity"}


def to_text(value: object) -> str:
    """A value as text: ``true``/``false``, ``21.5``, ``3`` (never ``3.0``), "" for null."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[return-value]
    if kind is int:
        return str(value)
    if kind is float:
        return js_number(value)  # type: ignore[arg-type]
    if value is None:
        return ""
    if kind is bool:
        return "true" if value else "false"
    if isinstance(value, Mapping | list | tuple):
        return compact_json(value)
    return str(value)


def js_number(value: float) -> str:
    """A float as JavaScript's Number#toString writes it (both print the shortest digits)."""
    text = repr(value)
    if "e" not in text and "n" not in text:
        if text[-1] == "0" and text[-2] == ".":
            return "0" if value == 0 else text[:-2]  # and -0 is "0" too
        return text
    if "n" in text:  # 'nan', 'inf', '-inf'
        return _INFINITIES.get(value, "NaN")
    mantissa, exponent = text.split("e")
    power = int(exponent)
    if value.is_integer() and power < 21:
        # JavaScript writes integers below 1e21 in full: the digits, then zeros.
        sign = "-" if mantissa.startswith("-") else ""
        digits = mantissa.lstrip("-").replace(".", "")
        return sign + digits + "0" * (power + 1 - len(digits))
    if -7 < power < 0:
        # JavaScript keeps fixed notation down to 1e-6 (Python switches below 1e-4).
        sign = "-" if mantissa.startswith("-") else ""
        return f"{sign}0.{'0' * (-power - 1)}{mantissa.lstrip('-').replace('.', '')}"
    return f"{mantissa}e{'-' if power < 0 else '+'}{abs(power)}"


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
