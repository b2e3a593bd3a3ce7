"""The daemon's log lines, one definition for every process: text or JSON, UTC times.

``[log] format = "text"`` writes ``TIME LEVEL LOGGER: MESSAGE``; ``"json"`` writes one JSON
object per line with the keys ``time``, ``level``, ``logger``, ``message`` and, when there is
one, ``exception`` (the traceback's text). Times are ISO-8601 in UTC with milliseconds and a
``Z``: ``2026-12-06T22:33:12.174Z``. The main process and its delivery workers call
``configure`` with the same settings, so their lines interleave as one log.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO

FORMATS = ("text", "json")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""A text line: time, level, logger, message (an exception's traceback follows it)."""


def utc_time(created: float) -> str:
    """``created`` (seconds since the epoch) as ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class TextFormatter(logging.Formatter):
    """TEXT_FORMAT with UTC ISO-8601 times."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_time(record.created)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; newlines inside a message or a traceback stay escaped."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, str] = {
            "time": utc_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False)


def formatter(kind: str) -> logging.Formatter:
    """The formatter for a ``[log] format`` value (``text`` or ``json``)."""
    if kind == "json":
        return JsonFormatter()
    if kind == "text":
        return TextFormatter()
    raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {kind!r}")


def configure(level: str, kind: str, stream: TextIO | None = None) -> None:
    """Send every log record at ``level`` or above to ``stream`` (stderr) in ``kind``,
    replacing any handlers set before."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(formatter(kind))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
