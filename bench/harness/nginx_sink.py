"""nginx as a webhook sink: the receiver the benchmarks use when nginx is installed.

``NginxSink`` has ``Receiver``'s interface (bench/harness/receiver.py: ``ports``,
``silent_ports``, ``reset()``, ``count()``, ``stats()``, ``ids()``, ``pid``, a context
manager) but serves the healthy ports with nginx, which costs about half the Python
receiver's CPU per request (9 against 19 us at 15,000 requests/s on the 2-core reference
machine; loopback TCP in the kernel is most of what is left), so the engine keeps more of
the machine to itself.

nginx needs no root: it runs from a temporary directory (``daemon off``, pid file, error
log, access log and every temp path inside it; as root its worker runs as ``nobody``,
which needs none of them), one worker, loopback ports only, keep-alive
connections never cut by count or time, and ``return 200;`` for every request: an empty
body, the request body read and discarded, the connection kept. Each request writes one
access-log line (no ``buffer=``: the line is there as soon as the answer is), which this
process parses incrementally:

- the receipt time, from nginx's ``$msec``: wall-clock time with **1 ms resolution**
  (nginx's cached time, taken when its event loop woke for the request), converted to
  ``time.monotonic()`` seconds with the offset between the two clocks measured here at each
  reset, then moved half a millisecond up so the truncation errs both ways (±0.5 ms);
- the ``webhook-id`` header, to count unique deliveries and duplicates;
- the local port, the status and the connection's serial number: ``stats().connections``
  counts the connections that carried a request, and ``bad_requests`` the answers other
  than 200 (nginx's 400 for bytes that are not HTTP, logged only once nginx has closed
  that connection, up to 5 s later: its lingering close), which are not ``requests``.

The unbuffered log costs nginx about 1 us of CPU per request (a ``write`` each), and
parsing a line here about 0.6 us.

The event's stamp travels in the request *body* (``data=<float>``), which nginx cannot log
when it answers with ``return``: every ``stamps`` entry is NaN, so latency phases must use
the Python receiver. Silent ports (destinations that accept and never answer) are served by
a Python ``Receiver`` with only silent ports, started alongside: its requests, connections
and CPU are added in.

Every wait is bounded; nginx runs under ``timeout(1)`` when it exists, so it exits after
``lifetime`` seconds even if this process dies without stopping it.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench.harness.daemon import HOST, children, cpu_seconds
from bench.harness.receiver import Receiver, ReceiverStats

NAN = float("nan")

START_TIMEOUT = 20.0
"""Seconds nginx gets to bind its ports and start its worker."""

STOP_GRACE = 5.0
"""Seconds between SIGQUIT (finish what is in flight, close idle keep-alives) and SIGTERM."""

KILL_GRACE = 2.0
"""Seconds after SIGTERM, then after SIGKILL, before the sink gives up waiting."""

BIND_ATTEMPTS = 5
"""Fresh sets of free ports to try when another process takes one between pick and bind."""

WORKER_CONNECTIONS = 16384
"""Far above any benchmark's open connections (max_in_flight x destinations)."""

WORKER_FILES = WORKER_CONNECTIONS + 64
"""One descriptor per connection, plus listeners and logs."""

BACKLOG = 1024
"""Like the Python receiver: a burst of new connections waits instead of being refused."""

LOG_FORMAT = "$msec $server_port $status $connection $http_webhook_id"
"""The webhook-id comes last: it is the only field that could hold a space."""

NO_VALUE = b"-"
"""What nginx logs for a missing header."""

ERROR_TAIL = 2000
"""Characters of nginx's error output quoted in a start failure."""


def nginx_path() -> str | None:
    """The nginx binary, or None when nginx is not installed."""
    found = shutil.which("nginx")
    if found is not None:
        return found
    fallback = Path("/usr/sbin/nginx")
    return str(fallback) if os.access(fallback, os.X_OK) else None


def render_config(prefix: Path, ports: Sequence[int]) -> str:
    """The nginx.conf of a sink that keeps all its files in ``prefix``."""
    listens = "\n".join(f"        listen {HOST}:{port} backlog={BACKLOG};" for port in ports)
    return f"""\
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {WORKER_FILES};
pid {prefix}/nginx.pid;
lock_file {prefix}/nginx.lock;
error_log {prefix}/error.log warn;

events {{
    worker_connections {WORKER_CONNECTIONS};
    multi_accept on;
}}

http {{
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;

    log_format sink '{LOG_FORMAT}';
    access_log {prefix}/access.log sink;

    # The engine's keep-alive connections live as long as the run: never cut them.
    keepalive_requests 1000000000;
    keepalive_timeout 3600s;
    keepalive_time 1d;
    # The size check runs before "return" would discard the body: no 413 for big payloads.
    client_max_body_size 0;
    server_tokens off;

    server {{
{listens}
        location / {{
            return 200;
        }}
    }}
}}
"""


class NginxSink:
    """nginx serving bare 200s on loopback ports, seen as a ``Receiver``; a context manager."""

    def __init__(
        self,
        ports: int,
        silent_ports: int = 0,
        lifetime: float = 3600.0,
        *,
        port_numbers: Sequence[int] | None = None,
    ) -> None:
        if port_numbers is not None and len(port_numbers) != ports:
            raise ValueError(f"port_numbers has {len(port_numbers)} ports, not {ports}")
        if ports < 1:
            raise ValueError("an nginx sink needs at least one healthy port")
        self._ports = ports
        self._silent_ports = silent_ports
        self._lifetime = lifetime
        self._port_numbers = list(port_numbers) if port_numbers is not None else None
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._master: int | None = None
        self._silent: Receiver | None = None
        self._log: io.FileIO | None = None
        self._tail = b""
        self.ports: list[int] = []
        """The healthy ports, in order."""
        self.silent_ports: list[int] = []
        self._cpu_at_reset: dict[int, float] = {}
        self._clear()

    @property
    def pid(self) -> int:
        """The nginx master process."""
        assert self._master is not None, "the sink is not running"
        return self._master

    def start(self) -> None:
        binary = nginx_path()
        if binary is None:
            raise RuntimeError("nginx is not installed")
        if self._process is not None:
            raise RuntimeError("the sink is already running")
        self._dir = Path(tempfile.mkdtemp(prefix="hookwire-nginx-"))
        try:
            for attempt in range(BIND_ATTEMPTS):
                forced = self._port_numbers is not None
                ports = self._port_numbers or _free_ports(self._ports)
                busy = self._launch(binary, ports)
                if busy is None:
                    break
                if forced or attempt == BIND_ATTEMPTS - 1:
                    raise RuntimeError(
                        f"nginx could not bind port {busy}: it is in use\n{self._error_tail()}"
                    )
            self.ports = list(ports)
            if self._silent_ports:
                self._silent = Receiver(0, self._silent_ports, self._lifetime)
                self._silent.start()
                self.silent_ports = list(self._silent.silent_ports)
            self.reset()
        except BaseException:
            self.stop()
            raise

    def reset(self) -> None:
        """Forget every request seen so far."""
        self._read()  # finish the lines written so far, then drop what they said
        self._clear()
        self._cpu_at_reset = self._cpu()
        if self._silent is not None:
            self._silent.reset()

    def count(self) -> tuple[int, int, int]:
        """(requests answered, unique webhook-ids, requests on silent ports) since the reset.

        Parses only the log lines written since the last call: cheap enough to poll.
        """
        self._read()
        silent = self._silent.count()[2] if self._silent is not None else 0
        return self._requests, len(self._ids), silent

    def ids(self) -> set[bytes]:
        """Every distinct webhook-id received since the reset."""
        self._read()
        return set(self._ids)

    def stats(self) -> ReceiverStats:
        self._read()
        cpu = sum(used - self._cpu_at_reset.get(pid, 0.0) for pid, used in self._cpu().items())
        stats = ReceiverStats(
            requests=self._requests,
            unique_ids=len(self._ids),
            missing_id=self._missing_id,
            connections=len(self._connections),
            bad_requests=self._bad_requests,
            per_port=dict(self._per_port),
            times=array("d", self._times),
            stamps=array("d", [NAN]) * len(self._times),
            cpu=cpu,
        )
        if self._silent is not None:
            silent = self._silent.stats()
            stats.silent_requests = silent.silent_requests
            stats.connections += silent.connections
            stats.bad_requests += silent.bad_requests
            stats.cpu += silent.cpu
        return stats

    def stop(self) -> None:
        """Stop nginx (and the silent receiver) and remove the temporary directory."""
        process, self._process = self._process, None
        try:
            if process is not None:
                self._end(process)
        finally:
            if self._silent is not None:
                self._silent.stop()
                self._silent = None
            if self._log is not None:
                self._log.close()
                self._log = None
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None
            self._master = None

    def _launch(self, binary: str, ports: Sequence[int]) -> int | None:
        """Start nginx on ``ports`` and wait until it serves; the port in use if one was."""
        prefix = self._dir
        assert prefix is not None
        conf = prefix / "nginx.conf"
        conf.write_text(render_config(prefix, ports))
        for name in ("error.log", "access.log", "nginx.pid"):
            (prefix / name).unlink(missing_ok=True)
        (prefix / "access.log").touch()
        if self._log is not None:
            self._log.close()
        self._log = (prefix / "access.log").open("rb", buffering=0)
        self._tail = b""
        command = [binary, "-c", str(conf), "-p", str(prefix), "-e", str(prefix / "error.log")]
        watchdog = shutil.which("timeout")
        if watchdog is not None:
            # SIGQUIT at the end of the lifetime, SIGKILL 10 s later if nginx lingers.
            lifetime = f"{max(self._lifetime, 1.0):g}"
            command = [watchdog, "-s", "QUIT", "-k", "10", lifetime, *command]
        with (prefix / "output.log").open("wb") as output:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: one killpg reaches all
            )
        self._process = process
        deadline = time.monotonic() + START_TIMEOUT
        waiting = set(ports)
        while True:
            errors = self._errors()
            if "[emerg]" in errors or process.poll() is not None:
                # nginx retries a busy port for 2.5 s before it gives up: do not wait for it.
                self._process = None
                self._end(process, graceful=False)
                busy = _busy_port(errors)
                if busy is None:
                    raise RuntimeError(f"nginx did not start\n{self._error_tail()}")
                return busy
            if self._master is None:
                self._master = _read_pid(prefix / "nginx.pid")
            waiting = {port for port in waiting if not _accepts(port)}
            if not waiting and self._master is not None and children(self._master):
                return None
            if time.monotonic() > deadline:
                self._process = None
                self._end(process, graceful=False)
                raise RuntimeError(
                    f"nginx did not serve ports {sorted(waiting)} within {START_TIMEOUT:.0f} s"
                    f"\n{self._error_tail()}"
                )
            time.sleep(0.01)

    def _end(self, process: subprocess.Popen[bytes], graceful: bool = True) -> None:
        """Stop nginx: SIGQUIT to the master, then SIGTERM and SIGKILL to the group."""
        master, self._master = self._master, None
        steps = [(signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, KILL_GRACE)]
        if graceful and master is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(master, signal.SIGQUIT)
            steps.insert(0, (signal.SIGQUIT, STOP_GRACE))
        for sig, grace in steps:
            if sig != signal.SIGQUIT:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, sig)
            try:
                process.wait(grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def _clear(self) -> None:
        self._requests = 0
        self._ids: set[bytes] = set()
        self._missing_id = 0
        self._bad_requests = 0
        self._connections: set[bytes] = set()
        self._per_port: Counter[int] = Counter()
        self._times: array[float] = array("d")
        self._cpu_at_reset = {}
        before = time.monotonic()
        wall = time.time()
        after = time.monotonic()
        # $msec is truncated to the millisecond: half of one re-centres the error.
        self._shift = 0.0005 - (wall - (before + after) / 2)

    def _read(self) -> None:
        """Account for the access-log lines written since the last read."""
        if self._log is None:
            return
        data = self._log.read()
        if not data:
            return
        if self._tail:
            data = self._tail + data
        end = data.rfind(b"\n") + 1
        self._tail = data[end:]
        shift = self._shift
        ids, times, per_port = self._ids, self._times, self._per_port
        for line in data[:end].splitlines():
            msec, port, status, connection, webhook_id = line.split(b" ", 4)
            self._connections.add(connection)
            if status != b"200":
                self._bad_requests += 1
                continue
            self._requests += 1
            per_port[int(port)] += 1
            times.append(float(msec) + shift)
            if webhook_id == NO_VALUE:
                self._missing_id += 1
            else:
                ids.add(webhook_id)

    def _cpu(self) -> dict[int, float]:
        """CPU seconds used so far by the master and each of its workers."""
        if self._master is None:
            return {}
        used: dict[int, float] = {}
        for pid in (self._master, *children(self._master)):
            with contextlib.suppress(OSError, ValueError, IndexError):
                used[pid] = cpu_seconds(pid)
        return used

    def _errors(self) -> str:
        assert self._dir is not None
        text = ""
        for name in ("error.log", "output.log"):
            with contextlib.suppress(OSError):
                text += (self._dir / name).read_text(errors="replace")
        return text

    def _error_tail(self) -> str:
        return self._errors()[-ERROR_TAIL:]

    def __repr__(self) -> str:
        state = f"pid={self._master}" if self._master is not None else "stopped"
        return (
            f"<NginxSink {state} ports={self.ports} silent_ports={self.silent_ports} "
            f"requests={self._requests} unique_ids={len(self._ids)}>"
        )

    def __enter__(self) -> NginxSink:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _busy_port(errors: str) -> int | None:
    """The port of nginx's "bind() to 127.0.0.1:PORT failed (98: ...)" message, if any."""
    marker = f"bind() to {HOST}:"
    at = errors.find(marker)
    if at < 0 or "(98:" not in errors[at : errors.find("\n", at)]:
        return None
    digits = errors[at + len(marker) :].split(" ", 1)[0]
    return int(digits) if digits.isdigit() else None


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None  # not written yet, or half written
