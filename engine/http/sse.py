"""Server-Sent Events framing without I/O (the WHATWG event-stream format)."""

from __future__ import annotations

PREAMBLE = b":ok\n\n"
"""What Particle's streams send first; clients wait for it to know the stream is open."""

HEADERS = [
    ("content-type", "text/event-stream; charset=utf-8"),
    ("cache-control", "no-cache"),
    ("x-accel-buffering", "no"),
]


def _field_value(value: str, what: str) -> bytes:
    if "\r" in value or "\n" in value:
        raise ValueError(f"SSE {what} must not contain CR or LF: {value!r}")
    return value.encode("utf-8")


def format_event(name: str, event_id: int, data: bytes) -> bytes:
    """One event frame; ``data`` is one line of JSON (orjson never emits raw newlines)."""
    if b"\n" in data or b"\r" in data:
        raise ValueError("SSE data must be a single line")
    return b"event: %b\nid: %d\ndata: %b\n\n" % (_field_value(name, "event name"), event_id, data)


def format_comment(text: str) -> bytes:
    """A comment line: ignored by clients, keeps proxies and idle timers from closing."""
    return b":%b\n\n" % _field_value(text, "comment")


MAX_EVENT_ID_DIGITS = 19
"""Event ids are 63-bit integers (SQLite's rowid); a longer number was never an id."""


def parse_event_id(value: str, source: str) -> int | None:
    """The id a client resumes after; None when empty (no id); ValueError names the fault."""
    text = value.strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= MAX_EVENT_ID_DIGITS):
        raise ValueError(
            f"{source} must be the id of the last event received, a whole number "
            f"(0 to replay everything kept), got {value!r}"
        )
    return int(text)
