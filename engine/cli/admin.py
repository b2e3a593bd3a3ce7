"""`hookwire dead-letters list|show|replay` and `hookwire replay`: the journal, from a shell.

The commands open the SQLite journal directly, so they work whether or not the daemon runs:
a replay marks deliveries ``replay``, which a running daemon takes within a second and a
stopped one at its next start. Tables are for people; ``--json`` prints what the REST API
answers, for scripts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import orjson
import trio

from engine.cli._config import load_or_report
from engine.cli._text import one_line, table
from engine.config.settings import Config
from engine.hooks.router import HookSet
from engine.journal import _sqlite_log as sqlite_log
from engine.journal import admin
from engine.journal.base import JournalUnavailable
from engine.journal.delivery_log import DeliveryDetail, DeliveryPage, DeliveryQuery
from engine.journal.redis import RedisJournal
from engine.journal.schema import JournalError, open_database

COMMANDS = ("dead-letters", "replay")

T = TypeVar("T")

TIME_HELP = (
    'TIME: an ISO 8601 time ("2026-11-29T10:00:00Z"; UTC when it names no zone) '
    'or a duration ago ("30m", "2h", "7d").'
)

WHEN_SENT = "a running daemon sends them within a second, a stopped one when it starts"

EXCERPT_CHARS = 60
"""Characters of a response body shown in a table row: one attempt stays one line."""


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], config: str
) -> None:
    """Add the dead-letter and replay commands to ``hookwire``'s subcommands."""
    dead = commands.add_parser("dead-letters", help="list, show and replay dead letters")
    actions = dead.add_subparsers(dest="dead_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="dead letters, newest first")
    _selection(listing, admin.LIST_LIMIT)
    show = actions.add_parser("show", help="a delivery, its event and every attempt")
    show.add_argument("id", help="the delivery id (its webhook-id)")
    replay = actions.add_parser(
        "replay",
        help="send dead letters again under their ids",
        description="Queue dead letters again, oldest first, each under its own id: name them "
        "by id, or select them with --hook, --since and --until.",
    )
    replay.add_argument("ids", nargs="*", metavar="ID", help="delivery ids")
    _selection(replay, admin.REPLAY_LIMIT)
    window = commands.add_parser(
        "replay",
        help="send a hook the events of a time window again, as new deliveries",
        description="Queue every retained event stored in [--since, --until) that HOOK takes, "
        "under new delivery ids. Nothing is queued when more than --limit events match.",
    )
    window.add_argument("--hook", required=True, help="the hook's name")
    window.add_argument(
        "--since", required=True, type=_when, metavar="TIME", help="stored at or after it"
    )
    window.add_argument(
        "--until", type=_when, metavar="TIME", help="stored before it (default: now)"
    )
    _common(window, admin.REPLAY_LIMIT)
    for parser in (listing, show, replay, window):
        parser.add_argument("--config", default=config, help="config file (default %(default)s)")
        parser.epilog = TIME_HELP
    show.add_argument("--json", action="store_true", help="print JSON, for scripts")


def _selection(parser: argparse.ArgumentParser, limit: int) -> None:
    parser.add_argument("--hook", help="only this hook's")
    parser.add_argument("--since", type=_when, metavar="TIME", help="given up at or after it")
    parser.add_argument("--until", type=_when, metavar="TIME", help="given up before it")
    _common(parser, limit)


def _common(parser: argparse.ArgumentParser, limit: int) -> None:
    parser.add_argument(
        "--limit", type=_positive, default=limit, help="at most this many (default %(default)s)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON, for scripts")


def _when(text: str) -> float:
    try:
        return admin.parse_time(text, time.time())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    if not text.isdecimal() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def run(args: argparse.Namespace) -> int:
    """Run one of ``COMMANDS``; returns the exit status."""
    window = args.command == "replay"
    who = "hookwire replay" if window else f"hookwire dead-letters {args.dead_command}"
    if window and args.until is None:
        args.until = time.time()
    since, until = getattr(args, "since", None), getattr(args, "until", None)
    if since is not None and until is not None and until <= since:
        print(f"{who}: --until must be later than --since", file=sys.stderr)
        return 2
    config = load_or_report(args.config)
    if config is None:
        return 1
    store = open_store(who, config, "GET /v1/dead-letters")
    if store is None:
        return 1

    def command(store: Store) -> int:
        if window:
            return _replay_window(who, config, store, args)
        if args.dead_command == "list":
            return _print_letters(store.dead_letters(_query(args)), args, config)
        if args.dead_command == "show":
            return _print_record(who, store.delivery(args.id), args)
        return _replay(who, store, args)

    return run_on(who, config, store, command)


def run_on(who: str, config: Config, store: Store, command: Callable[[Store], int]) -> int:
    """``command(store)``'s exit status, the journal's failures told in one line; the store
    closed after."""
    try:
        return command(store)
    except sqlite3.Error as exc:
        print(f"{who}: {config.journal.path}: {exc}", file=sys.stderr)
        return 1
    except JournalUnavailable as exc:
        print(f"{who}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader left (`| head`): say nothing more, and let the exit not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        store.close()


class Store(Protocol):
    """Where the commands find dead letters and queue replays: a journal, as it keeps them."""

    def dead_letters(self, query: admin.DeadLetterQuery) -> list[admin.DeadLetter]: ...

    def delivery(self, key: str) -> admin.DeliveryRecord | None: ...

    def replay(self, query: admin.DeadLetterQuery) -> admin.Replayed: ...

    def replay_window(
        self, hook: str, since: float, until: float, limit: int
    ) -> admin.WindowReplay: ...

    def delivery_page(self, query: DeliveryQuery) -> DeliveryPage: ...

    def delivery_detail(self, key: str) -> DeliveryDetail | None: ...

    def close(self) -> None: ...


def open_store(who: str, config: Config, api_route: str) -> Store | None:
    """The config's journal, as the commands read it; None after saying why there is none
    (``api_route``: where a running daemon answers the same, for a journal with no file)."""
    if config.journal.backend == "redis":
        return _RedisStore(config)
    return _open(who, config, api_route)


class _SqliteStore:
    """The SQLite journal's file, opened directly (whether or not the daemon runs)."""

    def __init__(self, conn: sqlite3.Connection, config: Config) -> None:
        self._conn = conn
        self._config = config

    def dead_letters(self, query: admin.DeadLetterQuery) -> list[admin.DeadLetter]:
        return admin.list_dead_letters(self._conn, query)

    def delivery(self, key: str) -> admin.DeliveryRecord | None:
        return admin.show_delivery(self._conn, key)

    def replay(self, query: admin.DeadLetterQuery) -> admin.Replayed:
        with admin.transaction(self._conn):
            return admin.replay_dead_letters(self._conn, query, time.time())

    def replay_window(
        self, hook: str, since: float, until: float, limit: int
    ) -> admin.WindowReplay:
        hooks = HookSet(self._config.hooks)
        with admin.transaction(self._conn):
            return admin.replay_window(
                self._conn, hooks, hook, since, until, limit=limit, now=time.time()
            )

    def delivery_page(self, query: DeliveryQuery) -> DeliveryPage:
        names = [hook.name for hook in self._config.hooks]
        return sqlite_log.file_page(self._conn, names, query)

    def delivery_detail(self, key: str) -> DeliveryDetail | None:
        return sqlite_log.delivery_detail(self._conn, key)

    def close(self) -> None:
        self._conn.close()


class _RedisStore:
    """The Redis journal (cluster mode), through the journal itself: opened and run for each
    call, in a trio run of its own."""

    def __init__(self, config: Config) -> None:
        settings = config.journal
        assert settings.url is not None
        self._journal = RedisJournal(
            settings.url, HookSet(config.hooks), node="cli", password=settings.password
        )

    def _call(self, method: Callable[..., Awaitable[T]], *args: Any) -> T:
        journal = self._journal

        async def call() -> T:
            await journal.open()
            async with trio.open_nursery() as nursery:
                await nursery.start(journal.run)
                try:
                    return await method(*args)
                finally:
                    nursery.cancel_scope.cancel()

        return trio.run(call)

    def dead_letters(self, query: admin.DeadLetterQuery) -> list[admin.DeadLetter]:
        return self._call(self._journal.list_dead_letters, query)

    def delivery(self, key: str) -> admin.DeliveryRecord | None:
        return self._call(self._journal.show_delivery, key)

    def replay(self, query: admin.DeadLetterQuery) -> admin.Replayed:
        return self._call(self._journal.replay_dead_letters, query)

    def replay_window(
        self, hook: str, since: float, until: float, limit: int
    ) -> admin.WindowReplay:
        replay = functools.partial(self._journal.replay_window, limit=limit, now=time.time())
        return self._call(replay, hook, since, until)

    def delivery_page(self, query: DeliveryQuery) -> DeliveryPage:
        return self._call(self._journal.delivery_page, query)

    def delivery_detail(self, key: str) -> DeliveryDetail | None:
        return self._call(self._journal.delivery_detail, key)

    def close(self) -> None:
        """Nothing held between calls."""


def _open(who: str, config: Config, api_route: str) -> _SqliteStore | None:
    """The config's SQLite journal; None after saying why there is none."""
    settings = config.journal
    if settings.backend != "sqlite":
        print(
            f'{who}: {config.path}: journal.backend is "{settings.backend}": nothing is on disk '
            f"to read (a running daemon answers the same: {api_route})",
            file=sys.stderr,
        )
        return None
    try:
        conn = open_database(settings.path, synchronous=settings.synchronous, create=False)
    except JournalError as exc:
        print(f"{who}: {exc}", file=sys.stderr)
        return None
    return _SqliteStore(conn, config)


def _query(args: argparse.Namespace, ids: tuple[str, ...] = ()) -> admin.DeadLetterQuery:
    limit = max(len(ids), args.limit)
    return admin.DeadLetterQuery(ids, args.hook, args.since, args.until, limit)


def _print_letters(
    letters: list[admin.DeadLetter], args: argparse.Namespace, config: Config
) -> int:
    if args.json:
        print_json({"ok": True, "dead_letters": [letter.to_json() for letter in letters]})
        return 0
    if args.hook is not None and args.hook not in {hook.name for hook in config.hooks}:
        print(f'note: no hook named "{args.hook}" in {config.path}', file=sys.stderr)
    if not letters:
        print("no dead letters")
        return 0
    headers = ("ID", "HOOK", "EVENT", "DEVICE", "GAVE UP (UTC)", "ATTEMPTS", "REASON")
    rows = [
        (
            d.id,
            d.hook,
            f"{d.event_name} #{d.event_id}",
            d.device_id,
            _clock(d.at),
            str(d.attempts),
            d.reason,
        )
        for d in letters
    ]
    print(table(headers, rows))
    more = (
        f"; --limit {args.limit} reached, there may be more" if len(letters) == args.limit else ""
    )
    print(f"\n{_count(len(letters), 'dead letter')}, newest first{more}")
    return 0


def _print_record(who: str, record: admin.DeliveryRecord | None, args: argparse.Namespace) -> int:
    if record is None:
        print(f"{who}: no delivery {args.id} in the journal", file=sys.stderr)
        return 1
    if args.json:
        print_json(record.to_json())
        return 0
    event = record.event
    product = f", product {event.product_id}" if event.product_id is not None else ""
    fields = [
        ("delivery", record.id),
        ("hook", record.hook),
        ("state", _state(record)),
        ("attempts", str(record.attempts)),
        ("reason", record.reason or "-"),
        ("event", f"{event.name} #{event.id}, device {event.device_id}{product}"),
        ("published", event.published_at),
        ("data", one_line(event.data, None)),
    ]
    print(table((), fields))
    print()
    if not record.attempt_log:
        print("no attempts yet")
        return 0
    headers = ("#", "TIME (UTC)", "STATUS", "DURATION", "REASON", "RESPONSE")
    rows = [
        (
            str(a.number),
            _clock(a.at, ms=True),
            str(a.status) if a.status is not None else "-",
            f"{a.duration:.3f} s",
            a.reason,
            one_line(a.excerpt.decode("utf-8", "replace"), EXCERPT_CHARS),
        )
        for a in record.attempt_log
    ]
    print(table(headers, rows))
    return 0


def _replay(who: str, store: Store, args: argparse.Namespace) -> int:
    ids = tuple(dict.fromkeys(args.ids))
    query = _query(args, ids)
    if not query.selects:
        print(
            f"{who}: name dead letters by id, or select them with --hook, --since, --until",
            file=sys.stderr,
        )
        return 2
    return _print_replayed(who, store.replay(query), args)


def _print_replayed(who: str, replayed: admin.Replayed, args: argparse.Namespace) -> int:
    if args.json:
        print_json(replayed.to_json())
    else:
        print(
            f"queued {_count(len(replayed.ids), 'dead letter')} again, under their ids; {WHEN_SENT}"
        )
        if replayed.more:
            print(f"{replayed.more} more match; run again to replay them, or raise --limit")
    for key in replayed.missing:
        print(
            f"{who}: not a dead letter (unknown, pruned or replayed already): {key}",
            file=sys.stderr,
        )
    return 1 if replayed.missing else 0


def _replay_window(who: str, config: Config, store: Store, args: argparse.Namespace) -> int:
    if _unknown_hook(who, config, args.hook):
        return 1
    try:
        queued = store.replay_window(args.hook, args.since, args.until, args.limit)
    except admin.AdminError as exc:
        print(f"{who}: {exc}", file=sys.stderr)
        return 1
    return _print_window(queued, args)


def _unknown_hook(who: str, config: Config, name: str) -> bool:
    """Whether ``--hook`` names no hook of the config file (said, with its hooks)."""
    names = [hook.name for hook in config.hooks]
    if name in names:
        return False
    known = ", ".join(f'"{hook}"' for hook in names) or "none"
    print(
        f'{who}: --hook: no hook named "{name}" in {config.path}; its hooks: {known}',
        file=sys.stderr,
    )
    return True


def _print_window(queued: admin.WindowReplay, args: argparse.Namespace) -> int:
    if args.json:
        print_json(queued.to_json())
    elif not queued.ids:
        print(f'no event stored in that window goes to hook "{queued.hook}"; nothing queued')
    else:
        events = _count(len(queued.ids), "event")
        print(
            f'queued {events} for hook "{queued.hook}" as replay {queued.replay} '
            f"(new delivery ids ending in _r{queued.replay}); {WHEN_SENT}"
        )
    return 0


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def _state(record: admin.DeliveryRecord) -> str:
    if record.dead_at is not None:
        return f"dead since {_clock(record.dead_at)} UTC"
    if record.state in ("pending", "waiting", "replay"):
        return f"{record.state}, due {_clock(record.due)} UTC"
    return record.state


def _clock(at: float, *, ms: bool = False) -> str:
    moment = dt.datetime.fromtimestamp(at, dt.UTC)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return f"{text}.{moment.microsecond // 1000:03d}" if ms else text


def print_json(value: object) -> None:
    sys.stdout.buffer.write(orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.buffer.flush()
