"""redis-server for the cluster benchmark: started in a temporary directory on a free
loopback port, healthy once it answers PING, stopped with SIGTERM (``ServerProcess``'s life
cycle, bench/harness/daemon.py), and read through a few plain commands (INFO, FLUSHALL).

The tests have their own helper (tests/redis_server.py, built on pytest); the benchmark
imports nothing from tests/, so this is the small part of it a benchmark needs.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from bench.harness.daemon import HOST, ServerProcess, free_port

AOF_EVERYSEC = ("--appendonly", "yes", "--appendfsync", "everysec")
"""Redis's usual durable setting: the append-only file, fsynced once a second."""

REPLY_TIMEOUT = 5.0
"""Seconds one command may take to be answered."""


def redis_path() -> str | None:
    """The redis-server program (Debian package redis-server), or None."""
    found = shutil.which("redis-server")
    if found is None and os.access("/usr/bin/redis-server", os.X_OK):
        found = "/usr/bin/redis-server"  # a PATH without /usr/bin
    return found


class RedisCommandError(RuntimeError):
    """Redis answered a command with an error, or with something this reader cannot read."""


@dataclass(frozen=True, slots=True)
class RedisCpu:
    """CPU seconds redis-server has used (``INFO cpu``): its own threads, and its forked
    children (AOF rewrites, snapshots) once they ended."""

    main: float
    children: float

    @property
    def total(self) -> float:
        return self.main + self.children

    def __sub__(self, earlier: RedisCpu) -> RedisCpu:
        return RedisCpu(self.main - earlier.main, self.children - earlier.children)


class RedisServer(ServerProcess):
    """One redis-server on ``127.0.0.1``, its files in the working directory, no RDB
    snapshots, with ``persistence`` (default: AOF, fsync every second) on its command line."""

    def __init__(self, persistence: Sequence[str] = AOF_EVERYSEC) -> None:
        program = redis_path()
        if program is None:
            raise FileNotFoundError("redis-server is not installed (Debian package redis-server)")
        super().__init__([], port=free_port(), name="redis-server")
        self.persistence = tuple(persistence)
        config = {
            "port": str(self.port),
            "bind": HOST,
            "protected-mode": "no",  # loopback only anyway
            "dir": str(self.workdir),
            "save": "",  # no RDB snapshots: persistence is what ``persistence`` says
        }
        self.argv = [program]
        for name, value in config.items():
            self.argv += [f"--{name}", value]
        self.argv += self.persistence

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def unhealthy(self) -> str | None:
        try:
            answer = self.command("PING")
        except (OSError, RedisCommandError) as exc:
            return str(exc)
        return None if answer == b"PONG" else f"PING answered {answer!r}"

    def command(self, *words: str) -> bytes:
        """One command on a fresh connection; its reply (a status or a bulk string) as
        bytes. Enough for PING, FLUSHALL and INFO."""
        request = b"*%d\r\n" % len(words)
        for word in words:
            encoded = word.encode()
            request += b"$%d\r\n%s\r\n" % (len(encoded), encoded)
        with socket.create_connection((HOST, self.port), timeout=REPLY_TIMEOUT) as sock:
            sock.sendall(request)
            reply = b""
            while (body := _complete(reply)) is None:
                chunk = sock.recv(65536)
                if not chunk:
                    raise RedisCommandError(f"{words[0]}: the connection closed mid-reply")
                reply += chunk
        return body

    def info(self, section: str) -> dict[str, str]:
        """``INFO section`` as ``{field: value}``."""
        text = self.command("INFO", section).decode()
        pairs = (line.partition(":") for line in text.splitlines() if ":" in line)
        return {name: value for name, _, value in pairs}

    def cpu(self) -> RedisCpu:
        found = self.info("cpu")
        return RedisCpu(
            float(found["used_cpu_sys"]) + float(found["used_cpu_user"]),
            float(found["used_cpu_sys_children"]) + float(found["used_cpu_user_children"]),
        )

    def flushall(self) -> None:
        answer = self.command("FLUSHALL")
        if answer != b"OK":
            raise RedisCommandError(f"FLUSHALL answered {answer!r}")


def _complete(reply: bytes) -> bytes | None:
    """The body of a whole status (``+``) or bulk (``$``) reply; None while it is partial."""
    head, found, rest = reply.partition(b"\r\n")
    if not found:
        return None
    kind, value = head[:1], head[1:]
    if kind == b"+":
        return value
    if kind == b"$" and value != b"-1":
        size = int(value)
        return rest[:size] if len(rest) >= size + 2 else None
    raise RedisCommandError(f"unexpected reply {head[:200]!r}")
