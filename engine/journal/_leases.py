"""Which node owns which delivery partition, decided by every node alike (no I/O).

No coordinator: each node knows the live nodes (those whose heartbeat is younger than a
lease) and computes the same assignment by rendezvous hashing: a partition belongs to the
live node with the highest ``hash(node, partition)``. When a node joins or leaves, only the
partitions it gains or loses move. Each node then acquires its partitions whose lease is
free (``SET NX PX``), keeps renewing those it holds, and releases those no longer its own;
a dead node's leases expire, and their new owners take them (and, with ``XAUTOCLAIM``, the
entries they left in flight). With a look every third of a lease, a partition changes
hands within two leases.

A node sends a partition's deliveries only while its lease is surely valid: the lease runs
from when the renewal was *sent* (Redis may have applied it any time after), less a margin
for clocks that drift, so a node stops before Redis can give the partition to another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SAFETY = 0.2
"""The part of a lease a node does not use: it stops sending this long before the lease
could expire in Redis (covers clock drift and a slow renewal)."""

LOOKS_PER_LEASE = 3
"""Looks (renewals, joins, releases) per lease: a partition moves within two leases."""


def weight(node: str, partition: int) -> int:
    """The rendezvous weight of ``node`` for ``partition``: the same on every node."""
    digest = hashlib.blake2b(f"{node}\x00{partition}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(partition: int, nodes: Iterable[str]) -> str | None:
    """The live node a partition belongs to; None when no node is live."""
    return max(nodes, key=lambda node: (weight(node, partition), node), default=None)


def assignment(partitions: int, nodes: Sequence[str]) -> dict[str, frozenset[int]]:
    """Every live node's partitions: each partition is exactly one node's."""
    owned: dict[str, set[int]] = {node: set() for node in nodes}
    for partition in range(partitions):
        found = owner(partition, nodes)
        if found is not None:
            owned[found].add(partition)
    return {node: frozenset(held) for node, held in owned.items()}


@dataclass(frozen=True, slots=True)
class Plan:
    """What one look does: leases to try to take, and leases to give back."""

    acquire: tuple[int, ...]
    release: tuple[int, ...]


def plan(me: str, partitions: int, live: Iterable[str], held: Iterable[int]) -> Plan:
    """The look of node ``me``, which holds ``held``, among the ``live`` nodes (``me``
    counts as live: it is looking)."""
    nodes = sorted({*live, me})
    mine = {p for p in range(partitions) if owner(p, nodes) == me}
    holding = set(held)
    return Plan(tuple(sorted(mine - holding)), tuple(sorted(holding - mine)))


def live_nodes(heartbeats: dict[str, float], now: float, lease: float) -> list[str]:
    """The nodes whose last heartbeat (unix seconds) is younger than a lease."""
    return sorted(node for node, at in heartbeats.items() if now - at < lease)


def valid_until(sent_at: float, lease: float) -> float:
    """Until when a lease renewed by a command sent at ``sent_at`` may be used (on the
    caller's clock): the lease less its safety part, from the sending."""
    return sent_at + lease * (1 - SAFETY)


def look_interval(lease: float) -> float:
    return lease / LOOKS_PER_LEASE
