"""Starting and stopping the servers a benchmark measures, and reading their vital signs.

``Daemon`` runs ``hookwire run`` as a subprocess with a generated config in a temporary
directory, on a free loopback port, waits for ``/healthz``, and stops it with SIGTERM.
``ServerProcess`` is the same life cycle for any HTTP server (the baselines).
Everything here is synchronous and stdlib-only: the orchestrating process is not the
load generator, so it can afford ``http.client``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

HARNESS_DIR = Path(__file__).resolve().parent
BENCH_DIR = HARNESS_DIR.parent
REPO_ROOT = BENCH_DIR.parent

HOST = "127.0.0.1"
"""Loopback only: these benchmarks never send traffic anywhere else."""

STARTUP_TIMEOUT = 20.0
"""Seconds a server gets to answer /healthz before the benchmark gives up."""

STOP_TIMEOUT = 10.0
"""Seconds between SIGTERM and SIGKILL: the daemon's own shutdown grace is 3 s."""

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

PORT_VARIABLE = "HOOKWIRE_BENCH_PORT"
"""When set, the HTTP port every ``Daemon`` listens on (one runs at a time); else a free one."""


class EngineFailed(Exception):
    """The server under test did not start, died, or answered wrongly: the run is void."""


def free_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago (the server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = HOST) -> str | None:
    """Why ``host:port`` cannot be listened on (e.g. "Address already in use"), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def config_duration(text: str) -> str | float:
    """A command-line duration for the daemon's config: a number of seconds as a number
    (the engine reads the string "0" as a malformed duration), else the string ("2ms")."""
    try:
        return float(text)
    except ValueError:
        return text


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE to ``wanted`` (capped by the hard limit).

    Children inherit it, so call this before starting the daemon and the clients.
    Returns the soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def rss_kb(pid: int) -> int:
    """Resident set size of ``pid`` in KiB, from /proc/PID/status (VmRSS)."""
    return status_kb(pid, "VmRSS")


def status_kb(pid: int, field: str) -> int:
    """Any ``kB`` field of /proc/PID/status (VmRSS, VmHWM, RssAnon...)."""
    prefix = field + ":"
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(prefix):
            return int(line.split()[1])
    raise EngineFailed(f"/proc/{pid}/status has no {field}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time ``pid`` has used so far, from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may contain spaces: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children(parent: int) -> list[int]:
    """The processes whose parent is ``parent`` (nginx's or the daemon's workers), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces: the ppid is the second field after it.
        if int(stat[stat.rindex(")") + 2 :].split(maxsplit=2)[1]) == parent:
            found.append(int(entry.name))
    return found


def tree_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds used so far by ``pid`` and by each of its children, by pid."""
    found = {pid: cpu_seconds(pid)}
    for child in children(pid):
        try:
            found[child] = cpu_seconds(child)
        except OSError:
            continue  # it exited meanwhile
    return found


def machine_cpu_seconds() -> float:
    """CPU seconds used so far by everything on the machine, all CPUs, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]  # less idle and iowait; guest is in user
    return busy / CLOCK_TICKS


def machine_busy(seconds: float = 1.0) -> float:
    """Share of all CPUs (0..1) in use over ``seconds``.

    Benchmarks run on a small shared machine; taken before a run, this says whether other
    work (another test suite, a build) is competing with the numbers about to be measured.
    """
    before = machine_cpu_seconds()
    time.sleep(seconds)
    used = machine_cpu_seconds() - before
    return max(0.0, min(1.0, used / (seconds * (os.cpu_count() or 1))))


def http_get(host: str, port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """One GET on a fresh connection; returns (status, body)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition into ``{"name{labels}": value}`` (comments skipped)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            values[name] = float(value)
        except ValueError:
            continue
    return values


class ServerProcess:
    """An HTTP server run as a subprocess, healthy once GET ``health_path`` answers 200."""

    def __init__(self, argv: list[str], *, port: int, name: str, health_path: str = "/healthz"):
        self.argv = argv
        self.host = HOST
        self.port = port
        self.name = name
        self.health_path = health_path
        self._workdir = tempfile.TemporaryDirectory(prefix=f"hookwire-bench-{name}-")
        self.workdir = Path(self._workdir.name)
        self.log_path = self.workdir / "server.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self.stop_seconds: float | None = None  # SIGTERM to exit, once stopped

    def __repr__(self) -> str:
        state = "stopped" if self._proc is None else f"pid={self._proc.pid}"
        return f"<{type(self).__name__} {self.name} {self.host}:{self.port} {state}>"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise EngineFailed(f"{self.name} is not running")
        return self._proc.pid

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def start(self) -> None:
        """Start the process and wait (bounded) until it is healthy."""
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self.env(),
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last_error = "no answer"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EngineFailed(
                    f"{self.name} exited with {self._proc.returncode} while starting:\n"
                    + self.log_tail()
                )
            why = self.unhealthy()
            if why is None:
                return
            last_error = why
            time.sleep(0.05)
        self.stop()
        raise EngineFailed(
            f"{self.name} not healthy after {STARTUP_TIMEOUT:.0f}s ({last_error}):\n"
            + self.log_tail()
        )

    def unhealthy(self) -> str | None:
        """Why the server is not healthy yet (None once it is): GET ``health_path`` answers
        200. A server that speaks another protocol says so here (bench/harness/redis_server.py)."""
        try:
            status, body = http_get(self.host, self.port, self.health_path, timeout=1.0)
        except OSError as exc:
            return str(exc)
        return None if status == 200 else f"{status} {body[:200]!r}"

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def check_alive(self) -> None:
        """Raise EngineFailed if the process has died."""
        if self._proc is not None and self._proc.poll() is not None:
            raise EngineFailed(
                f"{self.name} died (exit {self._proc.returncode}):\n" + self.log_tail()
            )

    def stop(self) -> int | None:
        """SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL; returns the exit code."""
        proc = self._proc
        if proc is None:
            return self.returncode
        if proc.poll() is None:
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
                self.returncode = -signal.SIGKILL
                self._proc = None
                return self.returncode
            finally:
                self.stop_seconds = time.monotonic() - started
        self.returncode = proc.returncode
        self._proc = None
        return self.returncode

    def kill(self) -> int | None:
        """SIGKILL now (a crash: no shutdown of any kind), wait for it; returns the exit code.

        ``start()`` may be called again afterwards: same command, same working directory.
        """
        proc = self._proc
        if proc is None:
            return self.returncode
        if proc.poll() is None:
            proc.kill()
            proc.wait(STOP_TIMEOUT)
        self.returncode = proc.returncode
        self._proc = None
        return self.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def cleanup(self) -> None:
        self._workdir.cleanup()

    def __enter__(self) -> ServerProcess:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            code = self.stop()
            if exc is None and code not in (0, None):
                if code == -signal.SIGKILL:
                    why = f"did not stop within {STOP_TIMEOUT:.0f}s of SIGTERM and was killed"
                else:
                    why = f"exited with {code} {self.stop_seconds or 0:.1f}s after SIGTERM"
                raise EngineFailed(f"{self.name} {why}:\n" + self.log_tail())
        finally:
            self.cleanup()


def engine_command() -> list[str]:
    """``hookwire`` next to this interpreter (the venv's), else ``python -m engine.cli``."""
    script = Path(sys.executable).with_name("hookwire")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "engine.cli"]


TomlValue = str | int | float | bool | list[str]
"""What a generated ``[delivery]`` or ``[[hooks]]`` entry may hold."""


class Daemon(ServerProcess):
    """``hookwire run`` with a generated config and a fresh bearer token.

    ``delivery`` becomes the ``[delivery]`` table and each of ``hooks`` a ``[[hooks]]``
    table, as written (e.g. ``{"allow_networks": ["127.0.0.0/8"]}`` and
    ``[{"name": "h0", "event": "bench/", "url": "http://127.0.0.1:8000/"}]``);
    by default the config has neither. ``journal`` becomes the ``[journal]`` table
    (default ``{"backend": "memory"}``); a relative ``path`` in it is under ``workdir``.
    ``gateway`` becomes the ``[gateway]`` table (e.g. ``{"tcp": "127.0.0.1:7070"}``),
    ``cluster`` the ``[cluster]`` table (e.g. ``{"node": "node-a"}``, with a Redis journal).
    ``port`` is the HTTP port (default: ``$HOOKWIRE_BENCH_PORT``, else a free one).
    ``idle_timeout`` is ``[limits] idle_timeout`` (default: the engine's).
    """

    def __init__(
        self,
        *,
        sse_keepalive: float = 9,
        sse_buffer: int = 1024,
        sse_batch_window: float | None = None,
        max_data_bytes: int = 1024,
        log_level: str = "warning",
        delivery: dict[str, TomlValue] | None = None,
        hooks: list[dict[str, TomlValue]] | None = None,
        journal: dict[str, TomlValue] | None = None,
        gateway: dict[str, TomlValue] | None = None,
        cluster: dict[str, TomlValue] | None = None,
        port: int | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        if port is None:
            port = int(os.environ.get(PORT_VARIABLE) or 0) or free_port()
        self.token = secrets.token_urlsafe(24)
        super().__init__([], port=port, name="hookwire")
        self.config_path = self.workdir / "engine.toml"
        self.config_path.write_text(
            _config_toml(
                port=port,
                token_sha256=hashlib.sha256(self.token.encode()).hexdigest(),
                sse_keepalive=sse_keepalive,
                sse_buffer=sse_buffer,
                sse_batch_window=sse_batch_window,
                max_data_bytes=max_data_bytes,
                log_level=log_level,
                journal=journal or {"backend": "memory"},
                idle_timeout=idle_timeout,
            )
            + _tables_toml(delivery, hooks)
            + ("\n[gateway]\n" + _toml_pairs(gateway) if gateway else "")
            + ("\n[cluster]\n" + _toml_pairs(cluster) if cluster else "")
        )
        self.argv = [*engine_command(), "run", "--config", str(self.config_path)]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        # Measure the working tree, whatever state the editable install is in.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        return env

    def health(self) -> dict[str, object]:
        status, body = http_get(self.host, self.port, "/healthz")
        if status != 200:
            raise EngineFailed(f"/healthz answered {status}: {body[:200]!r}")
        result: dict[str, object] = json.loads(body)
        return result

    def publish(self, name: str, data: str) -> int:
        """Publish one event over REST; returns its id."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5.0)
        try:
            conn.request(
                "POST",
                "/v1/devices/events",
                body=json.dumps({"name": name, "data": data}),
                headers={
                    "Authorization": f"Bearer {self.token}",
                    "Content-Type": "application/json",
                },
            )
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise EngineFailed(f"publish answered {response.status}: {body[:200]!r}")
        event_id: int = json.loads(body)["id"]
        return event_id

    def metrics(self) -> dict[str, float]:
        status, body = http_get(self.host, self.port, "/metrics")
        if status != 200:
            raise EngineFailed(f"/metrics answered {status}: {body[:200]!r}")
        return parse_metrics(body.decode())

    def wait_for_metric(
        self, name: str, value: float, timeout: float, interval: float = 0.1
    ) -> float | None:
        """Poll /metrics until ``name`` equals ``value``; returns the last value seen."""
        deadline = time.monotonic() + timeout
        seen: float | None = None
        while True:
            self.check_alive()
            seen = self.metrics().get(name)
            if seen == value or time.monotonic() >= deadline:
                return seen
            time.sleep(interval)


def _config_toml(
    *,
    port: int,
    token_sha256: str,
    sse_keepalive: float,
    sse_buffer: int,
    sse_batch_window: float | None,
    max_data_bytes: int,
    log_level: str,
    journal: dict[str, TomlValue],
    idle_timeout: float | None = None,
) -> str:
    window = "" if sse_batch_window is None else f"batch_window = {sse_batch_window}\n"
    idle = "" if idle_timeout is None else f"idle_timeout = {idle_timeout}\n"
    return f"""\
# Generated by bench/harness/daemon.py for one benchmark run.
[server]
host = "{HOST}"
port = {port}

[log]
level = "{log_level}"

[[auth.tokens]]
name = "bench"
sha256 = "{token_sha256}"
scopes = ["publish", "subscribe", "admin", "gateway"]

[limits]
max_data_bytes = {max_data_bytes}
{idle}
[sse]
keepalive = {sse_keepalive}
buffer = {sse_buffer}
{window}
[journal]
{_toml_pairs(journal)}"""


def _tables_toml(
    delivery: dict[str, TomlValue] | None, hooks: list[dict[str, TomlValue]] | None
) -> str:
    """``[delivery]`` and ``[[hooks]]`` tables (empty text when neither is given)."""
    parts = []
    if delivery:
        parts.append("\n[delivery]\n" + _toml_pairs(delivery))
    for hook in hooks or ():
        parts.append("\n[[hooks]]\n" + _toml_pairs(hook))
    return "".join(parts)


def _toml_pairs(table: dict[str, TomlValue]) -> str:
    return "".join(f"{key} = {_toml_value(value)}\n" for key, value in table.items())


def _toml_value(value: TomlValue) -> str:
    # JSON strings are valid TOML basic strings; bool before int (bool is an int).
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    return "[" + ", ".join(json.dumps(item) for item in value) + "]"
