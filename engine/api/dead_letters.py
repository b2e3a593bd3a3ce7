"""What an admin asks of the dead letters, read from a query string or a JSON body (no I/O).

Every reader raises ValueError with one sentence naming the parameter at fault; the API
answers it with a 400.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from engine.journal.admin import LIST_LIMIT, REPLAY_LIMIT, DeadLetterQuery, parse_time

MAX_LIMIT = 10_000
"""Most dead letters one request lists or replays: an answer stays a few MB at most."""

REPLAY_FIELDS = ("ids", "hook", "since", "until", "limit")

SELECT_HINT = 'select dead letters by {"ids": [...]}, or by "hook", "since" and "until"'


def list_query(params: Mapping[str, str], now: float) -> DeadLetterQuery:
    """The dead letters ``GET /v1/dead-letters?hook=&since=&until=&limit=`` asks for."""
    limit = params.get("limit") or None
    return _query(
        (),
        params.get("hook") or None,
        params.get("since") or None,
        params.get("until") or None,
        _limit(int(limit) if limit is not None and limit.isdecimal() else limit, LIST_LIMIT),
        now,
    )


def replay_query(body: bytes, now: float) -> DeadLetterQuery:
    """The dead letters a ``POST /v1/dead-letters/replay`` body selects: ids, or hook and time."""
    try:
        fields = orjson.loads(body) if body.strip() else None
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"malformed JSON body: {exc}") from None
    if not isinstance(fields, dict):
        raise ValueError(f"expected a JSON object: {SELECT_HINT}")
    unknown = [name for name in fields if name not in REPLAY_FIELDS]
    if unknown:
        raise ValueError(f'unknown field "{unknown[0]}"; known: {", ".join(REPLAY_FIELDS)}')
    ids = _ids(fields.get("ids", []))
    query = _query(
        ids,
        _text(fields, "hook"),
        _text(fields, "since"),
        _text(fields, "until"),
        _limit(fields.get("limit"), len(ids) or REPLAY_LIMIT),
        now,
    )
    if not query.selects:
        raise ValueError(SELECT_HINT)
    return query


def _query(
    ids: tuple[str, ...],
    hook: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    now: float,
) -> DeadLetterQuery:
    start = _time("since", since, now)
    end = _time("until", until, now)
    if start is not None and end is not None and end <= start:
        raise ValueError("until must be later than since")
    return DeadLetterQuery(ids, hook, start, end, limit)


def _time(name: str, value: str | None, now: float) -> float | None:
    if value is None:
        return None
    try:
        return parse_time(value, now)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _limit(value: object, default: int) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_LIMIT:
        raise ValueError(f"limit: expected an integer from 1 to {MAX_LIMIT}, got {value!r}")
    return value


def _ids(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(key, str) for key in value):
        raise ValueError("ids: expected an array of delivery ids (strings)")
    if len(value) > MAX_LIMIT:
        raise ValueError(f"ids: at most {MAX_LIMIT} at once, got {len(value)}")
    return tuple(dict.fromkeys(value))


def _text(fields: Mapping[str, object], name: str) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name}: expected a non-empty string, got {orjson.dumps(value).decode()}")
    return value
