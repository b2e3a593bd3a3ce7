"""What goes back to the device after a webhook: response chunks and error lines (no I/O)."""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping, MutableMapping
from typing import Any, cast

import orjson

from engine.templates import Template, TemplateRenderError

CHUNK_BYTES = 512
"""Particle's hook-response chunk size: what a device's receive buffer is sized for."""

MAX_RESPONSE_BYTES = 100 * 1024
"""At most this much of a response goes back to a device (200 chunks)."""

SLEEPING = "Sleeping, too many errors, please wait and try again"


def response_text(body: bytes, template: Template | None, context: Mapping[str, Any]) -> str:
    """The text sent back for a 2xx body: ``responseTemplate`` rendered, or the raw body.

    The template sees the parsed JSON response first, then the event's variables. A body
    that is not JSON is sent raw even when there is a template.
    """
    text = body.decode("utf-8", "replace")
    if template is None:
        return text
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return text
    # ChainMap only reads its later maps; the typing wants them mutable.
    behind = cast("MutableMapping[str, Any]", context)
    scope: Any = ChainMap(parsed, behind) if isinstance(parsed, dict) else parsed
    try:
        return template.render(scope)
    except TemplateRenderError:
        return text


def chunks(text: str, size: int = CHUNK_BYTES, limit: int = MAX_RESPONSE_BYTES) -> list[str]:
    """``text`` cut into pieces of at most ``size`` UTF-8 bytes, never inside a character."""
    data = text.encode("utf-8")[:limit]
    pieces: list[str] = []
    start = 0
    while start < len(data):
        end = min(start + size, len(data))
        # Back off to a character boundary: continuation bytes are 0b10xxxxxx.
        while end < len(data) and end > start and (data[end] & 0xC0) == 0x80:
            end -= 1
        pieces.append(data[start:end].decode("utf-8", "ignore"))
        start = end
    return pieces


def response_events(topic: str, text: str) -> list[tuple[str, str]]:
    """(name, data) of each hook-response event: ``<topic>/<index>``."""
    return [(f"{topic}/{index}", piece) for index, piece in enumerate(chunks(text))]


def status_line(status: int, host: str) -> str:
    return f"error status {status} from {host}"


def topic_is_valid(topic: str) -> bool:
    """Response topics become event names: printable ASCII, no spaces, not too long."""
    return 0 < len(topic) <= 200 and all(33 <= ord(c) <= 126 for c in topic)
