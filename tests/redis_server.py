"""A real redis-server for the tests (issue 20): started on a free loopback port in a temp
dir, answered PING before a test runs, stopped at the end.

Fixtures (exposed by tests/conftest.py):

- ``redis_server``: the session's `RedisServer`, for fault tests (``stop()``, ``start()``,
  ``restart()``, ``kill()``, on the same port and dir);
- ``redis_url``: its URL, ``"redis://127.0.0.1:PORT/0"``, one server per test session;
- ``redis_db``: the same URL, after FLUSHALL (and after starting the server again if a
  test left it stopped): what most tests want.

Without redis-server (Debian package redis-server) these fixtures, and the tests marked
``@requires_redis``, skip; under CI (``CI`` set, as tests/node_packages.py reads it) they
fail instead, since .ci/run installs the package.

By default nothing persists (``--save ""``, ``--appendonly no``); a test of durability
starts its own server with ``RedisServer(tmp_path, args=("--appendonly", "yes"))``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import pytest

HOST = "127.0.0.1"
IN_CI = bool(os.environ.get("CI"))
MISSING = "redis-server is not installed (Debian package redis-server)"

START_TIMEOUT = 10.0  # seconds until PING must be answered
STOP_TIMEOUT = 10.0  # seconds after SIGTERM before SIGKILL
PORT_TRIES = 5  # a free port taken by someone else before redis-server binds it: pick again
OUTPUT_TAIL = 2000  # characters of redis-server's output in an error


def binary() -> str | None:
    """The redis-server program, or None when it is not installed."""
    found = shutil.which("redis-server")
    if found is None and os.access("/usr/bin/redis-server", os.X_OK):
        found = "/usr/bin/redis-server"  # a PATH without /usr/bin
    return found


requires_redis = pytest.mark.skipif(binary() is None and not IN_CI, reason=MISSING)
"""Skip where redis-server is not installed, except under CI, where it must be."""


class RedisServerError(Exception):
    """redis-server did not start, or would not stop."""


class RedisError(Exception):
    """Redis answered a command with an error reply (``-ERR ...``)."""


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process on ``127.0.0.1:port``, with its files in ``directory``.

    ``port`` None picks a free one at the first start (again if it was taken meanwhile);
    after that the server keeps its port and dir across ``stop()``/``start()``, so a client
    configured with ``url`` finds it again. ``args`` are added to the command line
    (``("--appendonly", "yes", "--appendfsync", "always")``).
    """

    def __init__(
        self, directory: Path, *, port: int | None = None, args: Sequence[str] = ()
    ) -> None:
        self.directory = Path(directory)
        self._port = port
        self._fixed_port = port is not None
        self.args = tuple(args)
        self._process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None
        self._output_start = 0  # where this run's output begins in output_path

    @property
    def port(self) -> int:
        if self._port is None:
            raise RedisServerError("redis-server has no port yet: start() it first")
        return self._port

    @property
    def url(self) -> str:
        return self.url_of(0)

    def url_of(self, db: int) -> str:
        """The URL of database ``db`` (0 to 15) on this server."""
        return f"redis://{HOST}:{self.port}/{db}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def output_path(self) -> Path:
        return self.directory / "redis-server.log"

    def command_line(self, program: str) -> list[str]:
        return [
            program,
            "--port", str(self.port),
            "--bind", HOST,
            "--protected-mode", "no",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            *self.args,
        ]  # fmt: skip

    def start(self) -> RedisServer:
        """Start redis-server and wait until it answers (at most START_TIMEOUT): as itself,
        by the process_id of INFO, not some other server that took the port meanwhile."""
        if self.running:
            return self
        program = binary()
        if program is None:
            raise RedisServerError(MISSING)
        self.directory.mkdir(parents=True, exist_ok=True)
        for attempt in range(PORT_TRIES):
            if self._port is None:
                self._port = free_port()
            try:
                self._spawn(program)
                return self
            except _PortTaken:
                if self._fixed_port or attempt == PORT_TRIES - 1:
                    raise RedisServerError(
                        f"redis-server could not listen on {HOST}:{self.port}: the port is "
                        f"taken; its output:\n{self.output()}"
                    ) from None
                self._port = None  # taken between free_port() and the bind: another one
        raise AssertionError("unreachable")

    def _spawn(self, program: str) -> None:
        self._output = self.output_path.open("ab")
        self._output.write(f"--- {' '.join(self.command_line(program))}\n".encode())
        self._output.flush()
        self._output_start = self._output.tell()
        self._process = subprocess.Popen(
            self.command_line(program),
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                output = self.output()
                self._reap()
                if "Address already in use" in self.output(since_start=True):
                    raise _PortTaken
                raise RedisServerError(
                    f"redis-server on {HOST}:{self.port} exited at start "
                    f"(status {self._exit_status}); its output:\n{output}"
                )
            if self._answers():
                return
            time.sleep(0.02)
        self._halt()
        raise RedisServerError(
            f"redis-server on {HOST}:{self.port} did not answer PING within "
            f"{START_TIMEOUT:g}s; its output:\n{self.output()}"
        )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT; returns once the process is gone."""
        self._halt()

    def kill(self) -> None:
        """SIGKILL at once, as a crash: nothing is saved on the way out."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
        self._halt()

    def restart(self) -> RedisServer:
        """Stop, and start again on the same port and dir."""
        self.stop()
        return self.start()

    def ping(self) -> bool:
        """Whether the server answers PING now."""
        try:
            return self.call("PING", timeout=0.5) == "PONG"
        except (OSError, RedisError):
            return False

    def _answers(self) -> bool:
        """Whether this process answers on the port (not another server that holds it)."""
        try:
            info = self.call("INFO", "server", timeout=0.5)
        except (OSError, RedisError):
            return False
        return isinstance(info, bytes) and f"process_id:{self.pid}\r\n".encode() in info

    def flushall(self) -> None:
        """Empty every database."""
        answer = self.call("FLUSHALL")
        if answer != "OK":
            raise RedisServerError(f"FLUSHALL on {HOST}:{self.port} answered {answer!r}")

    def call(self, *args: str | bytes | int, timeout: float = 5.0) -> object:
        """Send one command and return its reply: str for simple strings, int, bytes for
        bulk strings, None, list for arrays; an error reply raises RedisError."""
        parts = [arg if isinstance(arg, bytes) else str(arg).encode() for arg in args]
        request = b"*%d\r\n" % len(parts) + b"".join(
            b"$%d\r\n%s\r\n" % (len(part), part) for part in parts
        )
        with socket.create_connection((HOST, self.port), timeout=timeout) as sock:
            sock.sendall(request)
            with sock.makefile("rb") as reader:
                return _reply(reader)

    def output(self, *, since_start: bool = False) -> str:
        """The end of what redis-server wrote (its log, on stdout), of every run or of the
        last one only."""
        try:
            with self.output_path.open("rb") as file:
                file.seek(self._output_start if since_start else 0)
                text = file.read().decode(errors="replace")
        except OSError:
            return "(no output)"
        return text[-OUTPUT_TAIL:]

    @property
    def _exit_status(self) -> int | None:
        return self._process.returncode if self._process is not None else None

    def _halt(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                try:
                    process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    raise RedisServerError(
                        f"redis-server (pid {process.pid}) on {HOST}:{self.port} did not "
                        "stop on SIGKILL"
                    ) from None
        self._reap()

    def _reap(self) -> None:
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=STOP_TIMEOUT)
        if self._output is not None:
            self._output.close()
            self._output = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<RedisServer {HOST}:{self._port} {state} dir={self.directory}>"


class _PortTaken(Exception):
    """redis-server could not bind its port."""


def _reply(reader: IO[bytes]) -> object:
    line = reader.readline()
    if not line.endswith(b"\r\n"):
        raise OSError("the connection closed before a whole reply")
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body.decode()
    if kind == b"-":
        raise RedisError(body.decode(errors="replace"))
    if kind == b":":
        return int(body)
    if kind == b"$":
        size = int(body)
        if size < 0:
            return None
        data = reader.read(size + 2)
        return data[:-2]
    if kind == b"*":
        count = int(body)
        return None if count < 0 else [_reply(reader) for _ in range(count)]
    raise OSError(f"not a RESP reply: {line[:40]!r}")


def need_redis() -> None:
    """Skip the test here (fail it under CI) when redis-server is not installed."""
    if binary() is None:
        if IN_CI:
            pytest.fail(f"{MISSING}; .ci/run installs it under CI")
        pytest.skip(MISSING)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the test session, stopped at its end."""
    need_redis()
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    with server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """The session's redis-server: ``"redis://127.0.0.1:PORT/0"``."""
    return redis_server.url


@pytest.fixture
def redis_db(redis_server: RedisServer) -> str:
    """The session's redis-server, running and emptied (FLUSHALL) for this test: its URL."""
    redis_server.start()  # a fault test may have left it stopped
    redis_server.flushall()
    return redis_server.url
