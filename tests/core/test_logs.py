"""engine.core.logs: the text and JSON lines, their UTC times."""

from __future__ import annotations

import io
import json
import logging
import re
import sys

import pytest

from engine.core import logs

TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def record(message: str = "hello %s", *args: object) -> logging.LogRecord:
    made = logging.LogRecord("hookwire.test", logging.WARNING, __file__, 1, message, args, None)
    made.created = 1796596392.1749  # 2026-12-06T22:33:12.174Z
    return made


def test_utc_time_has_milliseconds_and_a_z() -> None:
    assert logs.utc_time(1796596392.1749) == "2026-12-06T22:33:12.174Z"
    assert logs.utc_time(0) == "1970-01-01T00:00:00.000Z"
    assert logs.utc_time(59.9999) == "1970-01-01T00:00:59.999Z"  # truncated, never 60


def test_text_line() -> None:
    line = logs.formatter("text").format(record("hello %s", "there"))
    assert line == "2026-12-06T22:33:12.174Z WARNING hookwire.test: hello there"


def test_json_line_is_one_object() -> None:
    line = logs.formatter("json").format(record("two\nlines %d", 2))
    assert "\n" not in line
    assert json.loads(line) == {
        "time": "2026-12-06T22:33:12.174Z",
        "level": "WARNING",
        "logger": "hookwire.test",
        "message": "two\nlines 2",
    }


def test_json_line_carries_the_exception() -> None:
    try:
        raise ValueError("bad value")
    except ValueError:
        made = record("failed")
        made.exc_info = sys.exc_info()
    line = logs.formatter("json").format(made)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "failed"
    assert parsed["exception"].startswith("Traceback (most recent call last):")
    assert parsed["exception"].endswith("ValueError: bad value")


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="text, json"):
        logs.formatter("xml")


def test_configure_replaces_the_handlers() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        out = io.StringIO()
        logs.configure("info", "json", out)
        logging.getLogger("hookwire.test").info("started on %d", 8080)
        logging.getLogger("hookwire.test").debug("not shown")
        (line,) = out.getvalue().splitlines()
        parsed = json.loads(line)
        assert re.fullmatch(TIME, parsed["time"])
        assert (parsed["level"], parsed["message"]) == ("INFO", "started on 8080")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
