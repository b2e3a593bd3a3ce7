"""How handlebars.js 4.7 sees a JSON value (no I/O): as text, as a condition, as an object
whose properties a path reads, and when two contexts are "the same" for ``../``.

Python's ``None`` stands for both JavaScript's ``null`` and ``undefined``: a webhook's
context is parsed JSON, and handlebars.js shows and tests the two alike.
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from typing import Any

from engine.templates.values import js_number

NULL_CONTEXT: Mapping[str, Any] = types.MappingProxyType({})
"""handlebars.js's ``container.nullContext``: what a helper's ``this`` is when the context is
null, so the body of ``{{#if}}`` in a null context sees an empty object, not null."""

MAX_SAFE_INTEGER = 2**53
"""Beyond this, JavaScript's numbers (doubles) no longer hold every integer."""

OBJECT_TEXT = "[object Object]"

_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "'": "&#x27;",
        "`": "&#x60;",
        "=": "&#x3D;",
    }
)
_NEEDS_ESCAPE = re.compile("[&<>\"'`=]")

_INDEX = re.compile(r"0|[1-9][0-9]*")
_JS_SPACE = " \t\n\v\f\r\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"  # noqa: E501
_DECIMAL = re.compile(r"[+-]?(?:Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
_RADIX = re.compile(r"0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+")


def to_text(value: object) -> str:
    """What ``{{value}}`` shows before escaping: JavaScript's String(), "" for null."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[return-value]
    if value is None:
        return ""
    return js_string(value)


def js_string(value: object) -> str:
    """JavaScript's ``String(value)`` for a JSON value (``null`` -> "null")."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[return-value]
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:  # type: ignore[operator]
            return str(value)
        return js_number(float(value))  # type: ignore[arg-type]
    if kind is float:
        return js_number(value)  # type: ignore[arg-type]
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        # Array#join: null and undefined items are empty, nested arrays joined the same way.
        return ",".join("" if item is None else js_string(item) for item in value)
    if isinstance(value, Mapping):
        return OBJECT_TEXT
    return str(value)


def escape(text: str) -> str:
    """handlebars.js's escapeExpression: & < > " ' ` = as HTML entities."""
    if _NEEDS_ESCAPE.search(text) is None:
        return text
    return text.translate(_ESCAPES)


def truthy(value: object) -> bool:
    """JavaScript's truth: false, 0, -0, NaN, "", null are false; [] and {} are true."""
    if type(value) in (list, dict) or isinstance(value, Mapping | tuple):
        return True
    return bool(value) and value == value


def is_empty(value: object) -> bool:
    """handlebars.js's isEmpty: falsy but not 0, or an empty array."""
    if isinstance(value, list | tuple):
        return not value
    return not truthy(value) and not (type(value) in (int, float) and value == 0)


def get_property(parent: object, name: str) -> Any:
    """``parent[name]`` as handlebars.js's lookupProperty reads it: own properties only (an
    array's items and ``length``, a string's code units and ``length``), None otherwise."""
    if type(parent) is dict or isinstance(parent, Mapping):
        return parent.get(name)
    if isinstance(parent, list | tuple):
        if name == "length":
            return len(parent)
        if _INDEX.fullmatch(name) and int(name) < len(parent):
            return parent[int(name)]
        return None
    if type(parent) is str:
        units = parent.encode("utf-16-le", "surrogatepass")
        if name == "length":
            return len(units) // 2
        if _INDEX.fullmatch(name) and int(name) < len(units) // 2:
            at = int(name) * 2
            return units[at : at + 2].decode("utf-16-le", "surrogatepass")
    return None


def property_key(value: object) -> str:
    """A value used as a property name (``lookup``'s second argument): ToPropertyKey."""
    if value is None:
        return "undefined"
    if type(value) is float and value == 0:
        return "0"
    return js_string(value)


def object_keys(value: Mapping[str, Any]) -> list[str]:
    """JavaScript's Object.keys order: integer-like keys ascending, then the rest in order."""
    keys = list(value)
    indexes = [key for key in keys if _INDEX.fullmatch(key) and int(key) < 2**32 - 1]
    if not indexes:
        return keys
    named = [key for key in keys if not (_INDEX.fullmatch(key) and int(key) < 2**32 - 1)]
    return sorted(indexes, key=int) + named


def same_context(context: object, current: object) -> bool:
    """Whether entering ``context`` adds no ``../`` level: handlebars.js pushes a context
    only when ``context != depths[0]`` (JavaScript's loose equality), and never its
    nullContext over a null one."""
    if context is NULL_CONTEXT and current is None:
        return True
    return loosely_equal(context, current)


def loosely_equal(a: object, b: object) -> bool:
    """JavaScript's ``a == b`` for JSON values (objects and arrays by identity)."""
    if a is None or b is None:
        return a is None and b is None
    kind_a, kind_b = _kind(a), _kind(b)
    if kind_a == kind_b:
        if kind_a == "object":
            return a is b
        if kind_a == "number":
            return float(a) == float(b)  # type: ignore[arg-type]
        return a == b
    if kind_a == "boolean":
        return loosely_equal(1 if a else 0, b)
    if kind_b == "boolean":
        return loosely_equal(a, 1 if b else 0)
    if kind_a == "object":
        return loosely_equal(js_string(a), b)
    if kind_b == "object":
        return loosely_equal(a, js_string(b))
    # One number, one string: compare as numbers.
    number_a = to_number(a) if kind_a == "string" else float(a)  # type: ignore[arg-type]
    number_b = to_number(b) if kind_b == "string" else float(b)  # type: ignore[arg-type]
    return number_a == number_b


def to_number(text: str) -> float:
    """JavaScript's Number(text): blank is 0, decimal or 0x/0o/0b literals, else NaN."""
    text = text.strip(_JS_SPACE)
    if not text:
        return 0.0
    if _RADIX.fullmatch(text):
        return float(int(text, 0))
    if _DECIMAL.fullmatch(text):
        return float(text.replace("Infinity", "inf"))
    return float("nan")


def _kind(value: object) -> str:
    if type(value) is bool:
        return "boolean"
    if type(value) in (int, float):
        return "number"
    if type(value) is str:
        return "string"
    return "object"
