"""Response text and its 512-byte chunks."""

from __future__ import annotations

from engine.delivery.responses import (
    CHUNK_BYTES,
    MAX_RESPONSE_BYTES,
    chunks,
    response_events,
    response_text,
    topic_is_valid,
)
from engine.templates import compile_template


def test_chunks_are_512_bytes_and_never_split_a_character() -> None:
    text = "a" * 511 + "é" + "b" * 600
    pieces = chunks(text)
    assert "".join(pieces) == text
    assert all(len(p.encode()) <= CHUNK_BYTES for p in pieces)
    assert pieces[0] == "a" * 511
    assert len(chunks("x" * (MAX_RESPONSE_BYTES * 2))) == MAX_RESPONSE_BYTES // CHUNK_BYTES
    assert chunks("") == []


def test_response_events_are_numbered_topics() -> None:
    assert response_events("hook-response/temp", "x" * 600) == [
        ("hook-response/temp/0", "x" * 512),
        ("hook-response/temp/1", "x" * 88),
    ]


def test_response_template_sees_the_json_then_the_event() -> None:
    template = compile_template("{{status}}/{{TRACKLE_EVENT_NAME}}")
    context = {"TRACKLE_EVENT_NAME": "temp", "status": "event's"}
    assert response_text(b'{"status":"ok"}', template, context) == "ok/temp"
    assert response_text(b"not json", template, context) == "not json"
    assert response_text(b"raw \xff", None, context) == "raw \ufffd"


def test_topics_must_make_event_names() -> None:
    assert topic_is_valid("hook-response/temp")
    assert not topic_is_valid("has space")
    assert not topic_is_valid("")
