"""Who owns which partition (engine.journal._leases): every node computes the same answer,
a change of nodes moves only what it must, and looks converge within two leases."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.journal._leases import (
    SAFETY,
    assignment,
    live_nodes,
    look_interval,
    owner,
    plan,
    valid_until,
)

node_names = st.lists(
    st.text(alphabet="abcdefgh-0123456789", min_size=1, max_size=8),
    min_size=1,
    max_size=6,
    unique=True,
)


@given(node_names, st.integers(1, 128))
def test_every_partition_has_exactly_one_owner(nodes: list[str], partitions: int) -> None:
    owned = assignment(partitions, nodes)
    assert set(owned) == set(nodes)
    counted = sorted(p for held in owned.values() for p in held)
    assert counted == list(range(partitions))
    # The same on every node, whatever order it lists the nodes in.
    assert assignment(partitions, list(reversed(nodes))) == owned


@given(node_names, st.data())
def test_a_node_leaving_moves_only_its_partitions(nodes: list[str], data: st.DataObject) -> None:
    gone = data.draw(st.sampled_from(nodes))
    rest = [node for node in nodes if node != gone]
    before = assignment(64, nodes)
    after = assignment(64, rest)
    for node in rest:
        assert before[node] <= after[node]  # nobody loses a partition it had
    moved = set().union(*(after[node] - before[node] for node in rest)) if rest else set()
    assert moved == set(before[gone]) if rest else True


def test_partitions_spread_over_the_nodes() -> None:
    owned = assignment(64, ["node-a", "node-b", "node-c"])
    assert all(12 <= len(held) <= 32 for held in owned.values()), owned


@given(node_names, st.data())
def test_looks_converge_to_the_assignment(nodes: list[str], data: st.DataObject) -> None:
    # Start from any holding (each partition held by at most one node, as leases make it),
    # then let every node look twice: releases first free what others must acquire.
    held: dict[str, set[int]] = {node: set() for node in nodes}
    for partition in range(16):
        holder = data.draw(st.sampled_from([None, *nodes]))
        if holder is not None:
            held[holder].add(partition)
    for _ in range(2):
        for node in nodes:
            step = plan(node, 16, nodes, held[node])
            held[node] -= set(step.release)
        for node in nodes:
            step = plan(node, 16, nodes, held[node])
            taken = set().union(*(held[other] for other in nodes if other != node))
            held[node] |= set(step.acquire) - taken  # SET NX: a held lease is not taken
    assert {node: frozenset(h) for node, h in held.items()} == assignment(16, nodes)


def test_a_lone_node_owns_everything_and_unknown_nodes_nothing() -> None:
    assert plan("a", 8, [], []).acquire == tuple(range(8))
    assert owner(3, []) is None
    assert plan("a", 8, ["a"], range(8)).release == ()


def test_live_nodes_have_a_heartbeat_younger_than_a_lease() -> None:
    beats = {"a": 100.0, "b": 85.0, "c": 90.1}
    assert live_nodes(beats, now=100.0, lease=10.0) == ["a", "c"]


def test_a_lease_is_used_less_its_safety_part_from_when_the_renewal_was_sent() -> None:
    assert valid_until(1000.0, 30.0) == 1000.0 + 30.0 * (1 - SAFETY)
    assert look_interval(30.0) == 10.0
    # Two looks fit in the usable part: a missed renewal still leaves a look to stop in.
    assert 2 * look_interval(30.0) < 30.0 * (1 - SAFETY)
