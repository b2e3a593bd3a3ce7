"""The rules every published event must follow, whichever way it arrived (no I/O).

REST publishes and gateway frames go through the same checks, so an event is either
valid everywhere or rejected everywhere with the same sentence.
"""

from __future__ import annotations

import re
import reprlib
import time
from functools import lru_cache

from engine.core.model import EventDraft

MAX_NAME_LENGTH = 64
"""Particle's limit on event names; firmware buffers are sized for it."""

DEFAULT_TTL = 60
MAX_TTL = 2**31 - 1
"""TTL is a signed 32-bit number of seconds on devices."""

RESERVED_PREFIXES = ("hook-", "trackle", "iotready")
"""Names the engine publishes itself; a publisher may not forge them."""

MAX_SHOWN = 60
"""Characters of a refused value quoted in a message: enough to recognise it, not to echo it."""

_NAME = re.compile(r"[\x21-\x7e]{1,64}")
_DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class EventRejected(ValueError):
    """A publish that breaks a rule; the message is one sentence for the publisher."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _short_repr() -> reprlib.Repr:
    # reprlib stops at a depth and a width, where repr() would recurse through a value a
    # gateway nested a thousand arrays deep (RecursionError) or spell out all of a big one.
    short = reprlib.Repr()
    short.maxlevel = 2
    short.maxstring = short.maxother = MAX_SHOWN
    return short


_SHORT = _short_repr()


def shown(value: object) -> str:
    """A refused value as a message quotes it: its repr, cut to MAX_SHOWN characters."""
    text = _SHORT.repr(value)
    return text if len(text) <= MAX_SHOWN else f"{text[: MAX_SHOWN - 3]}..."


def _json_kind(value: object) -> str:
    """What a JSON value is, in JSON's words (not Python's type names)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def check_name(name: object) -> str:
    if name is None or name == "":
        raise EventRejected("name not provided")
    if not isinstance(name, str):
        raise EventRejected(f"name must be a string, got {_json_kind(name)}")
    if len(name) > MAX_NAME_LENGTH:
        raise EventRejected(f"name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}")
    if not _NAME.fullmatch(name):
        raise EventRejected("name must be printable ASCII without spaces")
    if name.startswith(RESERVED_PREFIXES):
        prefix = next(p for p in RESERVED_PREFIXES if name.startswith(p))
        raise EventRejected(f'name may not start with "{prefix}": it is reserved for the engine')
    return name


def check_data(data: object, max_bytes: int) -> str:
    if data is None:
        return ""
    if not isinstance(data, str):
        raise EventRejected(
            f"data must be a string, got {_json_kind(data)} (send JSON data as a string:"
            ' "data": "{\\"temp\\": 21.5}")'
        )
    try:
        size = len(data.encode("utf-8"))
    except UnicodeEncodeError:
        raise EventRejected("data is not valid Unicode text (lone surrogate)") from None
    if size > max_bytes:
        raise EventRejected(f"data is {size} bytes; the limit is {max_bytes} bytes", 413)
    return data


def check_ttl(ttl: object) -> int:
    if ttl is None or ttl == "":
        return DEFAULT_TTL
    if isinstance(ttl, bool):
        raise EventRejected("ttl must be a whole number of seconds")
    if isinstance(ttl, str):
        try:
            ttl = int(ttl.strip(), 10)
        except ValueError:
            raise EventRejected(
                f"ttl must be a whole number of seconds, got {shown(ttl)}"
            ) from None
    if not isinstance(ttl, int):
        raise EventRejected(f"ttl must be a whole number of seconds, got {shown(ttl)}")
    if not 0 <= ttl <= MAX_TTL:
        raise EventRejected(f"ttl must be between 0 and {MAX_TTL} seconds, got {ttl}")
    return ttl


def check_private(private: object) -> bool:
    if private is None or private == "":
        return False
    if isinstance(private, bool):
        return private
    if isinstance(private, str) and private.lower() in ("true", "false"):
        return private.lower() == "true"
    raise EventRejected(f"private must be true or false, got {shown(private)}")


def check_device_id(device_id: object) -> str:
    if not isinstance(device_id, str) or not _DEVICE_ID.fullmatch(device_id):
        raise EventRejected(
            f"device id must be 1 to 64 characters of A-Z, a-z, 0-9, _ or -, got {shown(device_id)}"
        )
    return device_id


def utc_now_iso() -> str:
    """The current time as Particle writes it: ISO-8601 UTC with milliseconds."""
    now = time.time()
    second = int(now)
    return f"{_utc_second(second)}.{int((now - second) * 1000):03d}Z"


@lru_cache(maxsize=2)
def _utc_second(second: int) -> str:
    # strftime is most of the cost of a timestamp; within one second it never changes.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def build_draft(
    fields: dict[str, object],
    *,
    device_id: str,
    product_id: int | None,
    max_data_bytes: int,
) -> EventDraft:
    """Validate a publisher's fields (name, data, ttl, private) into a draft event."""
    return EventDraft(
        name=check_name(fields.get("name")),
        data=check_data(fields.get("data"), max_data_bytes),
        ttl=check_ttl(fields.get("ttl")),
        private=check_private(fields.get("private")),
        published_at=utc_now_iso(),
        device_id=device_id,
        product_id=product_id,
    )
