"""Reading a publish request's body (form or JSON) into fields, without I/O."""

from __future__ import annotations

from urllib.parse import parse_qsl

import orjson

from engine.core.events import EventRejected
from engine.http.h1 import Request

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def publish_fields(request: Request) -> dict[str, object]:
    """The publisher's fields; raises EventRejected (400/415) for a body we cannot read."""
    header = request.header(b"content-type")
    media_type = (
        header.decode("latin-1").partition(";")[0].strip().lower() if header is not None else ""
    )
    body = request.body
    if media_type == JSON or (media_type == "" and body.lstrip()[:1] == b"{"):
        return _json_fields(body)
    if media_type in (FORM, ""):
        return _form_fields(body, request.query)
    raise EventRejected(f"unsupported content type {media_type!r}: send {FORM} or {JSON}", 415)


def _json_fields(body: bytes) -> dict[str, object]:
    try:
        fields = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise EventRejected(f"malformed JSON body: {exc}") from None
    if not isinstance(fields, dict):
        raise EventRejected(f"JSON body must be an object, got {_json_type(fields)}")
    return fields


def _form_fields(body: bytes, query: dict[str, str]) -> dict[str, object]:
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise EventRejected(
            "malformed form body: bytes outside ASCII must be percent-encoded"
        ) from None
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), errors="strict")
    except UnicodeDecodeError:
        raise EventRejected("malformed form body: percent-encoded bytes are not UTF-8") from None
    except ValueError as exc:
        raise EventRejected(f"malformed form body: {exc}") from None
    fields: dict[str, object] = {}
    # Particle's CLI sends fields in the query string too; the body wins.
    for name, value in [*query.items(), *pairs]:
        if name != "access_token":
            fields[name] = value
    return fields


def _json_type(value: object) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number"}.get(
        type(value), "null" if value is None else "a boolean"
    )
