"""tests/redis_server.py: the real redis-server the tests start (issue 20), checked against
itself, through redis-cli and through coredis (the client the engine uses)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import coredis
import pytest

from tests import redis_server as helper
from tests.redis_server import (
    HOST,
    MISSING,
    RedisError,
    RedisServer,
    RedisServerError,
    free_port,
    requires_redis,
)

pytestmark = requires_redis


def test_the_session_server_answers(redis_server: RedisServer, redis_url: str) -> None:
    assert redis_server.running
    assert redis_url == f"redis://{HOST}:{redis_server.port}/0"
    assert redis_server.call("PING") == "PONG"
    # Nothing persists by default: no RDB snapshots, no append-only file.
    assert redis_server.call("CONFIG", "GET", "save") == [b"save", b""]
    assert redis_server.call("CONFIG", "GET", "appendonly") == [b"appendonly", b"no"]
    assert redis_server.call("CONFIG", "GET", "bind") == [b"bind", HOST.encode()]
    assert redis_server.call("CONFIG", "GET", "dir") == [
        b"dir",
        str(redis_server.directory.resolve()).encode(),
    ]


async def test_coredis_on_trio_reaches_it(redis_db: str) -> None:
    client: coredis.Redis[bytes] = coredis.Redis.from_url(redis_db)
    async with client:
        assert await client.set("greeting", "hello")
        assert await client.get("greeting") == b"hello"
        assert await client.incr("counter") == 1


@pytest.mark.parametrize("round_", [1, 2])
def test_redis_db_is_empty_for_each_test(
    redis_server: RedisServer, redis_db: str, round_: int
) -> None:
    # Each round finds no key from the round before, nor from the coredis test.
    assert redis_server.call("DBSIZE") == 0
    assert redis_server.call("SET", "left-by", round_) == "OK"
    assert redis_server.call("SELECT", 3) == "OK"  # FLUSHALL empties every database


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
def test_redis_cli_sees_the_same_server(redis_server: RedisServer, redis_db: str) -> None:
    redis_server.call("SET", "k", "v")
    cli = ["redis-cli", "-h", HOST, "-p", str(redis_server.port)]
    answer = subprocess.run([*cli, "GET", "k"], capture_output=True, text=True, timeout=10)
    assert answer.stdout.strip() == "v"


def test_errors_are_raised(redis_server: RedisServer, redis_db: str) -> None:
    with pytest.raises(RedisError, match="unknown command"):
        redis_server.call("NOSUCHCOMMAND")
    assert redis_server.call("GET", "missing") is None


def test_restart_keeps_the_port_and_loses_the_data(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "r") as server:
        port, first_pid = server.port, server.pid
        server.call("SET", "k", "v")
        server.restart()
        assert (server.port, server.running, server.ping()) == (port, True, True)
        assert server.pid != first_pid
        assert server.call("GET", "k") is None  # nothing persisted
        server.stop()
        assert not server.running
        assert not server.ping()
        server.start()
        assert server.port == port
        assert server.ping()
    assert not server.running


def test_kill_then_start_with_an_append_only_file_keeps_what_was_written(
    tmp_path: Path,
) -> None:
    durable = ("--appendonly", "yes", "--appendfsync", "always")
    with RedisServer(tmp_path / "r", args=durable) as server:
        server.call("SET", "k", "v")
        server.kill()  # SIGKILL: no shutdown save
        assert not server.running
        server.start()
        assert server.call("GET", "k") == b"v"


def test_a_second_server_gets_another_port(redis_server: RedisServer, tmp_path: Path) -> None:
    with RedisServer(tmp_path / "second") as second:
        assert second.port != redis_server.port
        second.call("SET", "only-here", 1)
        assert redis_server.call("EXISTS", "only-here") == 0
        assert second.call("EXISTS", "only-here") == 1


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "a") as first:
        clash = RedisServer(tmp_path / "b", port=first.port)
        with pytest.raises(RedisServerError) as caught:
            clash.start()
        assert f"could not listen on {HOST}:{first.port}" in str(caught.value)
        assert "Address already in use" in str(caught.value)  # redis-server's own words
        assert not clash.running
        assert first.ping()


def test_a_server_that_cannot_start_names_its_port_and_output(tmp_path: Path) -> None:
    port = free_port()
    broken = RedisServer(tmp_path / "r", port=port, args=("--no-such-option", "1"))
    with pytest.raises(RedisServerError) as caught:
        broken.start()
    message = str(caught.value)
    assert f"redis-server on {HOST}:{port} exited at start" in message
    assert "no-such-option" in message  # the tail of redis-server's output
    assert not broken.running


def test_a_port_taken_before_the_bind_is_picked_again(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ports = iter([redis_server.port, free_port()])  # the first one "free" a moment ago
    monkeypatch.setattr(helper, "free_port", lambda: next(ports))
    with RedisServer(tmp_path / "r") as server:
        assert server.port != redis_server.port
        assert server.ping()


def test_a_server_that_does_not_answer_in_time_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(helper, "START_TIMEOUT", 0.0)
    server = RedisServer(tmp_path / "r")
    with pytest.raises(RedisServerError) as caught:
        server.start()
    assert f"redis-server on {HOST}:{server.port} did not answer PING within 0s" in str(
        caught.value
    )
    assert not server.running


def test_without_redis_server_skip_but_fail_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    assert MISSING == "redis-server is not installed (Debian package redis-server)"
    monkeypatch.setattr(helper, "binary", lambda: None)
    monkeypatch.setattr(helper, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match=r"redis-server is not installed"):
        helper.need_redis()
    monkeypatch.setattr(helper, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match=r"\.ci/run installs it"):
        helper.need_redis()
