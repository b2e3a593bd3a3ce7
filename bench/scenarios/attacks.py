"""Attacks on a running daemon that need no token: its memory and /healthz while each runs.

The four holes closed by the hardening work, reproduced from outside against ``hookwire run``
(a subprocess, its own config). While each attack runs, a thread of this process times
``GET /healthz`` on a new connection again and again and samples the daemon's VmRSS.

- ``header-value``, ``header-name``: a header line that never ends (up to 32 MiB of ``a``);
- ``pipelined``: ``GET /metrics`` x 2,600 in one write from a socket with a 4 KiB receive
  buffer that then reads nothing for a few seconds;
- ``crlf``: a bare CRLF every 2 s on a keep-alive connection (``idle_timeout = 3``);
- ``gateway``: msgpack frames of the wrong type, before and after hello; each must get its
  error frame (``malformed``, ``bad-frame``), and the daemon's log must show no traceback.

Targets: VmRSS after each attack within 5 MiB of before, and at most 5 MiB above it while it
runs; /healthz answered in under 50 ms throughout; the CRLF connection closed by the idle
timeout measured from its last request.

    .venv/bin/python -m bench.scenarios.attacks
    .venv/bin/python -m bench.scenarios.attacks --only crlf gateway
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import msgpack

from bench.harness.daemon import HOST, Daemon, EngineFailed, free_port, machine_busy, status_kb
from bench.harness.report import Report

RSS_SLACK_KB = 5 * 1024
"""How far the daemon's VmRSS may move because of an attack (the issue's bound)."""

HEALTHZ_LIMIT_MS = 50.0
"""How long /healthz may take while an attack runs."""

IDLE_TIMEOUT = 3.0
"""The daemon's [limits] idle_timeout here, so that the CRLF attack ends in seconds."""

ATTACK_BYTES = 32 << 20
PIECE = b"a" * 65536
PIPELINED = 2600
HOLD_SECONDS = 3.0
"""How long the pipelining client sits without reading."""

HEALTHZ = b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"

SOCKET_TIMEOUT = 15.0
"""No single socket operation of an attack waits longer than this."""


@dataclass
class Watch:
    """What a thread saw of the daemon while an attack ran."""

    healthz_ms: list[float] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@contextlib.contextmanager
def watched(daemon: Daemon) -> Iterator[Watch]:
    """Time /healthz and sample VmRSS in a thread until the block ends (bounded: 20,000)."""
    watch = Watch()
    done = threading.Event()

    def run() -> None:
        while not done.is_set() and len(watch.healthz_ms) < 20_000:
            watch.rss_kb.append(status_kb(daemon.pid, "VmRSS"))
            started = time.perf_counter()
            try:
                answer = _request(
                    daemon.port, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"
                )
            except OSError as exc:
                watch.errors.append(f"/healthz: {exc}")
                continue
            watch.healthz_ms.append(1000 * (time.perf_counter() - started))
            if not answer.startswith(b"HTTP/1.1 200"):
                watch.errors.append(f"/healthz answered {answer[:40]!r}")
            time.sleep(0.002)

    thread = threading.Thread(target=run, name="watch", daemon=True)
    thread.start()
    try:
        yield watch
    finally:
        done.set()
        thread.join(SOCKET_TIMEOUT)


def _request(port: int, data: bytes) -> bytes:
    with socket.create_connection((HOST, port), timeout=SOCKET_TIMEOUT) as conn:
        conn.sendall(data)
        return _read_to_eof(conn)


def _read_to_eof(conn: socket.socket, limit: int = 1 << 20) -> bytes:
    out = bytearray()
    with contextlib.suppress(ConnectionResetError):
        while len(out) < limit and (chunk := conn.recv(65536)):
            out += chunk
    return bytes(out)


def settled_rss(pid: int, settle: float = 1.0) -> int:
    """The median of five VmRSS readings over the last part of ``settle`` seconds."""
    time.sleep(settle)
    samples = []
    for _ in range(5):
        samples.append(status_kb(pid, "VmRSS"))
        time.sleep(0.1)
    return int(statistics.median(samples))


# the attacks: each returns one line saying how the daemon answered


def endless_header(daemon: Daemon, head: bytes) -> str:
    sent = 0
    with socket.create_connection((HOST, daemon.port), timeout=SOCKET_TIMEOUT) as conn:
        try:
            conn.sendall(head)
            while sent < ATTACK_BYTES:
                conn.sendall(PIECE)
                sent += len(PIECE)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon hung up: what it said is in the receive buffer
        answer = _read_to_eof(conn)
    status = answer.split(b"\r\n", 1)[0].decode("latin-1") or "closed without an answer"
    return f"{status}, after {sent / 1024:,.0f} KiB of the line"


def pipelined(daemon: Daemon) -> str:
    with socket.socket() as conn:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        conn.settimeout(SOCKET_TIMEOUT)
        conn.connect((HOST, daemon.port))
        conn.sendall(b"GET /metrics HTTP/1.1\r\n\r\n" * PIPELINED)
        time.sleep(HOLD_SECONDS)
    return f"{PIPELINED:,} requests sent, none read for {HOLD_SECONDS:.0f} s"


def crlf(daemon: Daemon) -> str:
    with socket.create_connection((HOST, daemon.port), timeout=SOCKET_TIMEOUT) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
        conn.recv(65536)
        answered = time.monotonic()
        conn.settimeout(2.0)
        closed_after: float | None = None
        while time.monotonic() - answered < 6 * IDLE_TIMEOUT:
            try:
                if conn.recv(65536) == b"":
                    closed_after = time.monotonic() - answered
                    break
            except TimeoutError:
                pass
            except ConnectionResetError:
                closed_after = time.monotonic() - answered
                break
            with contextlib.suppress(OSError):
                conn.sendall(b"\r\n")
    if closed_after is None:
        return f"still open {6 * IDLE_TIMEOUT:.0f} s after its last request"
    return f"closed {closed_after:.1f} s after its last request"


def gateway(daemon: Daemon, port: int) -> str:
    seen: list[str] = []
    with socket.create_connection((HOST, port), timeout=SOCKET_TIMEOUT) as conn:
        conn.sendall(b"\x81\x91\x01\x01")  # before hello: a map whose key is an array
        seen += _frames(conn, 1)
    with socket.create_connection((HOST, port), timeout=SOCKET_TIMEOUT) as conn:
        hello = {"op": "hello", "token": daemon.token, "version": 1, "name": "attacks"}
        conn.sendall(msgpack.packb(hello))
        seen += _frames(conn, 1)
        for frame in ({"op": [1, 2]}, {"op": {"a": 1}}, {"op": "ping"}):
            conn.sendall(msgpack.packb(frame))
        seen += _frames(conn, 3)
    return ", ".join(seen)


def _frames(conn: socket.socket, count: int) -> list[str]:
    """The next ``count`` frames from the engine, each as ``op`` or ``op error``."""
    unpacker = msgpack.Unpacker(raw=False)
    out: list[str] = []
    while len(out) < count:
        data = conn.recv(65536)
        if not data:
            out.append("closed")
            break
        unpacker.feed(data)
        for frame in unpacker:
            out.append(" ".join(str(frame[k]) for k in ("op", "error") if k in frame))
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Attacks that need no token, from outside.")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["header-value", "header-name", "pipelined", "crlf", "gateway"],
        help="run only these attacks",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    report = Report("attacks", {"idle_timeout": IDLE_TIMEOUT, "attack_bytes": ATTACK_BYTES})
    report.check_machine(machine_busy())
    try:
        _run(args.only, report)
    except EngineFailed as exc:
        report.fail(str(exc))
    return report.finish()


def _run(only: list[str] | None, report: Report) -> None:
    gateway_port = free_port()
    with Daemon(idle_timeout=IDLE_TIMEOUT, gateway={"tcp": f"{HOST}:{gateway_port}"}) as daemon:
        attacks: dict[str, Callable[[], str]] = {
            "header-value": lambda: endless_header(
                daemon, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
            ),
            "header-name": lambda: endless_header(daemon, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"),
            "pipelined": lambda: pipelined(daemon),
            "crlf": lambda: crlf(daemon),
            "gateway": lambda: gateway(daemon, gateway_port),
        }
        daemon.metrics()  # its first page builds what later pages reuse
        daemon.health()
        for name, attack in attacks.items():
            if only and name not in only:
                continue
            before = settled_rss(daemon.pid)
            with watched(daemon) as watch:
                outcome = attack()
            daemon.check_alive()
            after = settled_rss(daemon.pid)
            _report_attack(report, name, outcome, before, after, watch)
        log = daemon.log_tail()
        if "Traceback" in log:
            report.fail(f"the daemon logged a traceback:\n{log}")
        report.row("tracebacks in the daemon's log", log.count("Traceback"))


def _report_attack(
    report: Report, name: str, outcome: str, before: int, after: int, watch: Watch
) -> None:
    peak = max(watch.rss_kb, default=before)
    slowest = max(watch.healthz_ms, default=float("nan"))
    report.section(name)
    report.row("outcome", outcome)
    report.row("VmRSS before", before, "KiB", key=f"{name}.rss_before_kb")
    report.row("VmRSS peak while it ran", peak, "KiB", key=f"{name}.rss_peak_kb")
    report.row("VmRSS after", after, "KiB", key=f"{name}.rss_after_kb")
    report.row("/healthz answers while it ran", len(watch.healthz_ms), key=f"{name}.healthz_n")
    report.row("/healthz slowest", slowest, "ms", key=f"{name}.healthz_max_ms")
    for error in watch.errors[:3]:
        report.fail(f"{name}: {error}")
    report.target(f"{name}: VmRSS after - before", (after - before) / 1024, "<=", 5, "MiB")
    report.target(f"{name}: VmRSS peak - before", (peak - before) / 1024, "<=", 5, "MiB")
    report.target(f"{name}: /healthz slowest", slowest, "<=", HEALTHZ_LIMIT_MS, "ms")


if __name__ == "__main__":
    sys.exit(main())
