"""`hookwire cluster status`: the nodes on one Redis, who holds which partition, what waits.

It reads Redis directly (the config's ``[journal]``), so it works with any node up or none.
"""

from __future__ import annotations

import argparse
import sys

import orjson
import trio

from engine.cli._config import load_or_report
from engine.cli._text import table
from engine.journal.base import JournalUnavailable
from engine.journal.redis_status import ClusterStatus, cluster_status

COMMANDS = ("cluster",)


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], default_config: str
) -> None:
    """Add ``cluster status`` to ``hookwire``'s subcommands."""
    cluster = commands.add_parser("cluster", help="nodes sharing one Redis (cluster mode)")
    actions = cluster.add_subparsers(dest="cluster_command", required=True, metavar="COMMAND")
    status = actions.add_parser(
        "status",
        help="list the nodes, the partitions each holds, leases and backlog",
        description="Read the cluster's state from the Redis of the config's [journal].",
    )
    status.add_argument(
        "--config", default=default_config, help="the config file (default %(default)s)"
    )
    status.add_argument("--json", action="store_true", help="print JSON, for scripts")


def run(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return 1
    journal = config.journal
    if journal.backend != "redis" or journal.url is None:
        print(
            f'hookwire cluster: {config.path}: journal.backend is "{journal.backend}": '
            'cluster mode needs "redis"',
            file=sys.stderr,
        )
        return 1
    try:
        status = trio.run(cluster_status, journal.url, journal.password, config.cluster.lease)
    except JournalUnavailable as exc:
        print(f"hookwire cluster: {exc}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(status.as_json(), option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(status))
    return 0


def render(status: ClusterStatus) -> str:
    """The status as tables: nodes, then totals, then partitions not held by a live node."""
    live = {node.name for node in status.nodes if node.live}
    nodes = table(
        ["node", "state", "last seen", "partitions", "in flight", "unread"],
        [
            [
                node.name,
                "live" if node.live else "gone",
                f"{node.seen_ago:.1f} s ago",
                str(node.partitions),
                str(sum(p.in_flight for p in status.partitions if p.holder == node.name)),
                str(sum(p.unread for p in status.partitions if p.holder == node.name)),
            ]
            for node in status.nodes
        ],
    )
    orphans = [p for p in status.partitions if p.holder not in live]
    lines = [
        nodes,
        f"events: last id {status.last_event_id}, {status.events_kept} kept; "
        f"retries waiting {status.retries_waiting}; dead letters {status.dead_letters}; "
        f"downlinks waiting {status.downlinks_waiting}",
    ]
    if orphans:
        lines.append(
            f"{len(orphans)} partitions held by no live node: "
            + ", ".join(f"{p.number} ({p.holder or 'free'})" for p in orphans)
        )
    else:
        lines.append(f"all {len(status.partitions)} partitions held by live nodes")
    return "\n".join(lines) + "\n"
