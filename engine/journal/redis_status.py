"""What a cluster on one Redis looks like now: its nodes, who holds which partition, and
what waits (``hookwire cluster status``). Read-only: it changes nothing in Redis."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import coredis
from coredis.exceptions import RedisError, StreamConsumerGroupError

from engine.journal import _redis_scripts as scripts
from engine.journal.base import JournalUnavailable
from engine.journal.redis import PARTITIONS


@dataclass(frozen=True, slots=True)
class NodeStatus:
    name: str
    seen_ago: float  # seconds since its last heartbeat
    live: bool  # its heartbeat is younger than a lease
    partitions: int  # held now


@dataclass(frozen=True, slots=True)
class PartitionStatus:
    number: int
    holder: str | None  # the node whose lease it is, None when free
    lease_left: float  # seconds before the lease lapses unless renewed (0 when free)
    in_flight: int  # pending entries: read by a node, not settled
    unread: int  # entries no node has read yet (the group's lag)


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    nodes: list[NodeStatus]
    partitions: list[PartitionStatus]
    last_event_id: int
    events_kept: int
    retries_waiting: int
    dead_letters: int
    downlinks_waiting: int

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


async def cluster_status(
    url: str, password: str | None, lease: float, prefix: str = "hw:"
) -> ClusterStatus:
    """Read the cluster's state from Redis; raises JournalUnavailable when it cannot."""
    try:
        async with coredis.Redis.from_url(url, password=password) as client:
            return await _read(client, lease, prefix)
    except (RedisError, OSError) as exc:
        raise JournalUnavailable(f"cannot read the cluster from Redis at {url}: {exc}") from None


async def _read(client: coredis.Redis[bytes], lease: float, p: str) -> ClusterStatus:
    now = time.time()
    partitions = []
    for n in range(PARTITIONS):
        holder = await client.get(f"{p}lease:{n}")
        left = max(0, await client.pttl(f"{p}lease:{n}")) / 1000 if holder else 0.0
        in_flight, unread = await _backlog(client, f"{p}d:{n}")
        name = holder.decode() if holder else None
        partitions.append(PartitionStatus(n, name, left, in_flight, unread))
    beats = await client.zrange(f"{p}nodes", 0, -1, withscores=True)
    nodes = []
    for item in beats:
        name = item.member.decode() if isinstance(item.member, bytes) else str(item.member)
        ago = max(0.0, now - item.score / 1000)
        held = sum(1 for part in partitions if part.holder == name)
        nodes.append(NodeStatus(name, ago, ago < lease, held))
    nodes.sort(key=lambda node: (not node.live, node.name))
    return ClusterStatus(
        nodes,
        partitions,
        int(await client.get(f"{p}next") or 0),
        await client.xlen(f"{p}events"),
        await client.zcard(f"{p}retry"),
        await client.zcard(f"{p}dead"),
        await client.hlen(f"{p}outbox"),
    )


async def _backlog(client: coredis.Redis[bytes], stream: str) -> tuple[int, int]:
    """(entries in flight, entries unread) of a partition's consumer group."""
    try:
        groups = await client.xinfo_groups(stream)
    except StreamConsumerGroupError:
        return 0, 0
    for group in groups:
        if group.get(b"name") == scripts.GROUP.encode():
            return _count(group.get(b"pending")), _count(group.get(b"lag"))
    return 0, 0


def _count(value: object) -> int:
    return value if isinstance(value, int) else 0
