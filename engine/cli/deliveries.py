"""`hookwire deliveries list|show`: the delivery log from a shell, read from the journal (the
SQLite file, whether or not the daemon runs, or Redis in cluster mode). Tables are for
people; ``--json`` prints what the REST API answers (``GET /v1/deliveries``)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from engine.cli._config import load_or_report
from engine.cli._text import one_line, table
from engine.cli.admin import Store, open_store, print_json, run_on
from engine.journal import delivery_log as log
from engine.journal.delivery_log import DeliveryDetail, DeliveryPage

COMMANDS = ("deliveries",)

REASON_CHARS = 60
"""Characters of an outcome or an answer shown in a table cell: a row stays one line."""


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], config: str
) -> None:
    """Add ``hookwire deliveries`` to ``hookwire``'s subcommands."""
    deliveries = commands.add_parser("deliveries", help="the delivery log: deliveries, attempts")
    actions = deliveries.add_subparsers(dest="deliveries_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="deliveries, newest first")
    listing.add_argument("--hook", metavar="NAME", help="only this hook's")
    listing.add_argument(
        "--state",
        metavar="S",
        help=f"only these states, comma-separated: {', '.join(log.STATES)}",
    )
    listing.add_argument(
        "--limit", type=int, default=log.LIST_LIMIT, help=f"at most this many ({log.LIST_LIMIT})"
    )
    listing.add_argument("--cursor", help="go on after a page (its next cursor)")
    show = actions.add_parser("show", help="a delivery, its event and every attempt")
    show.add_argument("id", metavar="WEBHOOK_ID", help="the delivery id (its webhook-id)")
    for parser in (listing, show):
        parser.add_argument("--config", default=config, help=f"config file ({config})")
        parser.add_argument("--json", action="store_true", help="print JSON, as the API answers")


def run(args: argparse.Namespace) -> int:
    who = f"hookwire deliveries {args.deliveries_command}"
    if args.deliveries_command == "list":
        params = {"state": args.state or "", "limit": str(args.limit), "cursor": args.cursor or ""}
        try:
            query = log.delivery_query(params, args.hook)
        except ValueError as exc:
            print(f"{who}: --{exc}", file=sys.stderr)
            return 2
    config = load_or_report(args.config)
    if config is None:
        return 1
    store = open_store(who, config, "GET /v1/deliveries")
    if store is None:
        return 1

    def command(store: Store) -> int:
        if args.deliveries_command == "list":
            return _print_page(store.delivery_page(query), args)
        return _print_detail(who, store.delivery_detail(args.id), args)

    return run_on(who, config, store, command)


def _print_page(page: DeliveryPage, args: argparse.Namespace) -> int:
    if args.json:
        print_json({"ok": True, **page.to_json()})
        return 0
    if not page.deliveries:
        print("no deliveries")
        return 0
    headers = ("TIME (UTC)", "HOOK", "STATE", "TRIES", "EVENT", "LAST RESULT", "NEXT TRY", "ID")
    rows = [
        (
            _clock(entry.at),
            entry.hook,
            entry.state,
            str(entry.attempts),
            f"{entry.event_name} #{entry.event_id}",
            one_line(entry.reason, REASON_CHARS) or "-",
            _clock(entry.next_try) if entry.next_try is not None else "-",
            entry.id,
        )
        for entry in page.deliveries
    ]
    print(table(headers, rows))
    if page.cursor is not None:
        print(f"\nmore: --cursor {page.cursor}")
    return 0


def _print_detail(who: str, found: DeliveryDetail | None, args: argparse.Namespace) -> int:
    if found is None:
        print(f"{who}: no delivery {args.id} in the journal", file=sys.stderr)
        return 1
    shown = found.to_json()
    if args.json:
        print_json({"ok": True, **shown})
        return 0
    record, event = found.record, found.record.event
    fields = [
        ("delivery", record.id),
        ("hook", record.hook),
        ("state", str(shown["state"])),
        ("attempts", str(record.attempts)),
        ("next try", f"{_clock(record.due)} UTC" if shown["next_try"] else "-"),
        ("event", f"{event.name} #{event.id}, device {event.device_id}"),
        ("data", one_line(event.data, None)),
    ]
    print(table((), fields))
    for attempt in found.attempts:
        status = str(attempt.status) if attempt.status is not None else "no answer"
        after = log.JOURNAL_STATES.get(attempt.state, attempt.state)
        print(
            f"\nattempt {attempt.number}  {_clock(attempt.at)} UTC  {status}"
            f"  {attempt.duration * 1000:.1f} ms  -> {after}"
        )
        if not attempt.ok:
            print(f"  error: {one_line(attempt.reason, None)}")
        if attempt.request is not None:
            print(f"  > {attempt.request.method} {attempt.request.url}")
            for name, value in attempt.request.headers:
                print(f"  > {name}: {one_line(value, None)}")
        if attempt.excerpt:
            text = attempt.excerpt[: log.EXCERPT_SHOWN].decode("utf-8", "replace")
            print(f"  < {one_line(text, None)}")
    if not found.attempts:
        print("\nno attempts yet")
    return 0


def _clock(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
