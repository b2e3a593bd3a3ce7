"""bench/harness/redis_server.py against a real redis-server, and the cluster scenario's quick
run (skipped when redis-server is absent)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.harness.daemon import EngineFailed
from bench.harness.redis_server import (
    AOF_EVERYSEC,
    RedisCommandError,
    RedisCpu,
    RedisServer,
    _complete,
    redis_path,
)
from bench.scenarios.cluster import Nodes

ROOT = Path(__file__).resolve().parents[2]

needs_redis = pytest.mark.skipif(
    redis_path() is None, reason="redis-server is not installed (Debian package redis-server)"
)


def test_replies_are_read_whole_or_not_at_all() -> None:
    assert _complete(b"+PONG\r\n") == b"PONG"
    assert _complete(b"+PO") is None
    assert _complete(b"$5\r\nhel") is None
    assert _complete(b"$5\r\nhello\r\n") == b"hello"
    assert _complete(b"$0\r\n\r\n") == b""
    with pytest.raises(RedisCommandError, match="unexpected reply b'-ERR unknown'"):
        _complete(b"-ERR unknown\r\n")


def test_cpu_readings_subtract() -> None:
    spent = RedisCpu(3.5, 1.0) - RedisCpu(1.0, 0.25)
    assert spent == RedisCpu(2.5, 0.75)
    assert spent.total == 3.25


class _Node:
    def __init__(self, metrics: dict[str, float]) -> None:
        self._metrics = metrics
        self.alive = True

    def metrics(self) -> dict[str, float]:
        return self._metrics

    def check_alive(self) -> None:
        if not self.alive:
            raise EngineFailed("node died")


def test_nodes_sum_their_metrics_and_fail_when_one_dies() -> None:
    a = _Node({'hookwire_deliveries_total{outcome="delivered"}': 3.0, "up": 1.0})
    b = _Node({'hookwire_deliveries_total{outcome="delivered"}': 4.0})
    nodes = Nodes([a, b])  # type: ignore[list-item]
    assert nodes.pid is None
    assert nodes.metrics() == {'hookwire_deliveries_total{outcome="delivered"}': 7.0, "up": 1.0}
    nodes.check_alive()
    b.alive = False
    with pytest.raises(EngineFailed, match="node died"):
        nodes.check_alive()


@needs_redis
def test_a_redis_server_with_an_append_only_file_in_its_own_directory() -> None:
    with RedisServer(AOF_EVERYSEC) as redis:
        assert redis.url == f"redis://127.0.0.1:{redis.port}/0"
        assert redis.unhealthy() is None
        assert redis.info("persistence")["aof_enabled"] == "1"
        assert redis.command("SET", "k", "v") == b"OK"
        assert redis.command("GET", "k") == b"v"
        redis.flushall()
        assert redis.info("keyspace") == {}
        cpu = redis.cpu()
        assert cpu.main > 0 and cpu.children >= 0
        workdir = redis.workdir
        assert any(workdir.glob("appendonly*"))
    assert redis.returncode == 0  # SIGTERM: a clean stop
    assert not workdir.exists()


@needs_redis
@pytest.mark.slow
def test_the_cluster_scenario_runs_quick(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.scenarios.cluster", "--quick", "--sink", "python"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    table = done.stdout
    for row in (
        "round 1: 1 node, SQLite journal",
        "round 1: 1 node, Redis journal",
        "round 1: 2 nodes, one Redis",
        "Redis node / SQLite node (medians)",
        "takeover after kill -9",
        "--appendonly yes --appendfsync everysec",
    ):
        assert row in table
    assert "Redis node / SQLite node, CPU per delivery" in table.split("-- targets")[1]
    path = Path(table.rsplit("results: ", 1)[1].strip())
    document = json.loads(path.read_text())
    path.unlink()
    results = document["results"]
    for kind in ("sqlite", "redis", "two"):
        assert results[f"summary.{kind}.deliveries_per_s"] > 0
    assert results["two.1.lost"] == results["two.1.duplicates"] == 0
    assert results["summary.redis.node_us"] > 0 and results["summary.redis.redis_us"] > 0
    # node-b killed: its partitions held by node-a within 2 leases (7 s), nothing lost
    assert 0 < results["summary.takeover"] <= 2 * 7.0
    assert results["takeover.lost"] == 0
    assert results["two.1.spread_s"] < 3 * 7.0  # the nodes split the partitions' leases
