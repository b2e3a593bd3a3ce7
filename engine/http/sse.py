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
