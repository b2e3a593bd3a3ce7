"""Many SSE subscribers in one process: raw non-blocking sockets driven by ``selectors``.

Each subscriber sends ``GET <path>`` with the bearer token, checks the ``200`` head and the
``:ok`` preamble, then only counts: the bytes up to the last complete frame (``\\n\\n``)
are scanned with C-speed ``bytes.count`` for ``\\nid: ``, and only the first and last
id of each read are parsed. A read whose ids are not exactly ``previous + 1 ..`` in a row
counts as a gap, so every subscriber's stream is checked for loss, duplicates and order
without parsing every frame. Partial frames wait for the next read, so nothing is
counted twice or missed across chunk boundaries.

The body is chunked (HTTP/1.1): chunk-size lines never hold ``\n\n`` or ``\nid: ``, so
the count runs over the raw bytes and costs nothing more. Every ``CHECK_EVERY``-th
subscriber also follows the chunk framing strictly (without copying), so the framing is
checked under load at a small fraction of the client's work.

The process is driven over a ``multiprocessing`` pipe by the orchestrating script:

    -> ("connected", SubscriberStats)   once every subscriber is open (or failed)
    <- ("drain", first, last, seconds)  read until every live subscriber has id ``last``
    <- ("stop",)                        close everything now
    -> ("result", SubscriberStats)
"""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import os
import selectors
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from typing import TypeVar

RECEIVE_SIZE = 262144
CONNECT_BATCH = 256
"""Connections opened at once: stays well inside the listen backlog (somaxconn)."""

CHECK_EVERY = 50
"""One subscriber in this many checks the chunked framing of everything it reads."""

HEAD_END = b"\r\n\r\n"
CRLF = b"\r\n"
CHUNKED = b"\r\ntransfer-encoding: chunked\r\n"
PREAMBLE = b":ok\n\n"
PREAMBLE_CHUNK = b"5\r\n:ok\n\n\r\n"
HEX = b"0123456789abcdefABCDEF"
FRAME_END = b"\n\n"
ID_LINE = b"\nid: "

T = TypeVar("T", int, float)


@dataclass(frozen=True, slots=True)
class SubscriberSpec:
    host: str
    port: int
    path: str
    token: str
    count: int
    connect_timeout: float = 60.0
    lifetime: float = 600.0  # hard bound on the whole process
    coalesce: float = 0.0  # seconds to let data pile up between polls (fewer, bigger reads)


@dataclass
class SubscriberStats:
    """Totals over one process's subscribers (merged across processes by the script)."""

    wanted: int = 0
    connected: int = 0  # got the 200 head and the :ok preamble
    failed: Counter[str] = field(default_factory=Counter)  # never got connected, by reason
    lost: Counter[str] = field(default_factory=Counter)  # disconnected after connecting
    frames: int = 0  # event frames received, all subscribers
    first_frame_at: float | None = None  # time.monotonic() of the first frame
    last_frame_at: float | None = None
    gaps: int = 0  # reads whose ids did not follow on (loss, duplicate, reorder)
    broken_framing: int = 0  # checked subscribers whose chunked framing was broken
    complete: int = 0  # live subscribers that saw every id in the range asked for
    incomplete: int = 0  # live subscribers that missed some
    missing_events: int = 0  # sum over live subscribers of the events they lack
    per_subscriber_min: int | None = None
    per_subscriber_max: int | None = None

    def merge(self, other: SubscriberStats) -> None:
        self.wanted += other.wanted
        self.connected += other.connected
        self.failed.update(other.failed)
        self.lost.update(other.lost)
        self.frames += other.frames
        self.gaps += other.gaps
        self.broken_framing += other.broken_framing
        self.complete += other.complete
        self.incomplete += other.incomplete
        self.missing_events += other.missing_events
        self.first_frame_at = _pick(min, self.first_frame_at, other.first_frame_at)
        self.last_frame_at = _pick(max, self.last_frame_at, other.last_frame_at)
        self.per_subscriber_min = _pick(min, self.per_subscriber_min, other.per_subscriber_min)
        self.per_subscriber_max = _pick(max, self.per_subscriber_max, other.per_subscriber_max)

    @property
    def lost_count(self) -> int:
        return sum(self.lost.values())


def _pick(choose: Callable[[T, T], T], a: T | None, b: T | None) -> T | None:
    if a is None:
        return b
    if b is None:
        return a
    return choose(a, b)


class _ChunkCheck:
    """Follows a chunked body's framing without copying it; False once it is broken."""

    __slots__ = ("left", "pending")

    def __init__(self) -> None:
        self.left = 0  # bytes of the current chunk still to come, its CRLF included
        self.pending = b""  # an incomplete size line or CRLF

    def feed(self, data: bytes) -> bool:
        buf = self.pending + data
        pos, end, left = 0, len(buf), self.left
        while pos < end:
            if left > 2:
                step = min(left - 2, end - pos)
                pos += step
                left -= step
            elif left:
                if end - pos < 2:
                    break
                if buf[pos : pos + 2] != CRLF:
                    return False
                pos += 2
                left = 0
            else:
                nl = buf.find(CRLF, pos)
                if nl < 0:
                    break
                size = buf[pos:nl]
                if not size or size.strip(HEX):
                    return False
                left = int(size, 16) + 2
                pos = nl + 2
        self.left = left
        self.pending = buf[pos:]
        return True


class _Sub:
    __slots__ = (
        "buf",
        "check",
        "chunked",
        "first_id",
        "frames",
        "last_id",
        "request",
        "sock",
        "state",
    )

    def __init__(self, sock: socket.socket, request: bytes, check: bool) -> None:
        self.sock = sock
        self.request = request
        self.state = "connecting"  # -> "head" -> "preamble" -> "stream" | "closed"
        self.buf = b""
        self.chunked = False
        self.check = _ChunkCheck() if check else None
        self.frames = 0
        self.first_id: int | None = None
        self.last_id: int | None = None


def _id_at(buf: bytes, at: int) -> int:
    start = at + len(ID_LINE)
    return int(buf[start : buf.index(b"\n", start)])


class _Subscribers:
    """The selector loop and every subscriber's state."""

    def __init__(self, spec: SubscriberSpec, control: Connection) -> None:
        self.spec = spec
        self.control = control
        self.sel = selectors.DefaultSelector()
        self.sel.register(control.fileno(), selectors.EVENT_READ, None)
        self.stats = SubscriberStats(wanted=spec.count)
        self.subs: list[_Sub] = []
        self.opening = 0  # subscribers not yet streaming nor failed
        self.request = (
            f"GET {spec.path} HTTP/1.1\r\n"
            f"Host: {spec.host}:{spec.port}\r\n"
            f"Authorization: Bearer {spec.token}\r\n"
            "Accept: text/event-stream\r\n"
            "\r\n"
        ).encode("latin-1")
        self.drain_first: int | None = None
        self.drain_to: int | None = None
        self.drain_deadline = 0.0
        self.stopping = False

    # connection phase

    def _open_one(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sub = _Sub(sock, self.request, check=len(self.subs) % CHECK_EVERY == 0)
        self.subs.append(sub)
        self.opening += 1
        err = sock.connect_ex((self.spec.host, self.spec.port))
        if err not in (0, errno.EINPROGRESS):
            self._fail(sub, f"connect: {os.strerror(err)}")
            return
        self.sel.register(sock, selectors.EVENT_WRITE, sub)

    def _fail(self, sub: _Sub, why: str) -> None:
        if sub.state == "closed":
            return
        if sub.state == "stream":
            self.stats.lost[why] += 1
        else:
            self.stats.failed[why] += 1
            self.opening -= 1
        sub.state = "closed"
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(sub.sock)
        sub.sock.close()

    def connect_all(self) -> None:
        """Open every subscriber, CONNECT_BATCH at a time, until all are streaming or failed."""
        deadline = time.monotonic() + self.spec.connect_timeout
        opened = 0
        while time.monotonic() < deadline:
            while opened < self.spec.count and self.opening < CONNECT_BATCH:
                self._open_one()
                opened += 1
            if opened >= self.spec.count and self.opening == 0:
                break
            self._poll(0.05)
            if self.stopping:
                return
        for sub in self.subs:
            if sub.state in ("connecting", "head", "preamble"):
                self._fail(sub, "not connected before the timeout")
        if opened < self.spec.count:
            self.stats.failed["not opened before the timeout"] += self.spec.count - opened

    # the loop

    def _poll(self, timeout: float) -> int:
        """Handle what is ready; returns how many sockets were."""
        ready = self.sel.select(timeout)
        for key, _ in ready:
            sub = key.data
            if sub is None:
                self._command()
                continue
            if sub.state == "connecting":
                self._connected(sub)
                continue
            try:
                data = sub.sock.recv(RECEIVE_SIZE)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                self._fail(sub, f"recv: {exc.strerror or exc}")
                continue
            if not data:
                self._fail(sub, "closed by the server")
                continue
            if sub.check is not None and sub.state == "stream" and not sub.check.feed(data):
                self.stats.broken_framing += 1
                self._fail(sub, "broken chunked framing")
                continue
            if sub.state == "stream":
                self._frames(sub, sub.buf + data if sub.buf else data)
            else:
                self._opening(sub, sub.buf + data)
        return len(ready)

    def _connected(self, sub: _Sub) -> None:
        err = sub.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._fail(sub, f"connect: {os.strerror(err)}")
            return
        sub.state = "head"
        try:
            sub.sock.send(sub.request)  # a few hundred bytes: a fresh socket takes them
        except OSError as exc:
            self._fail(sub, f"send: {exc.strerror or exc}")
            return
        self.sel.modify(sub.sock, selectors.EVENT_READ, sub)

    def _opening(self, sub: _Sub, buf: bytes) -> None:
        if sub.state == "head":
            end = buf.find(HEAD_END)
            if end < 0:
                sub.buf = buf
                return
            status = buf[9:12]
            if status != b"200":
                self._fail(sub, f"status {status.decode('latin-1', 'replace')}")
                return
            sub.chunked = CHUNKED in buf[: end + 2].lower()
            buf = buf[end + 4 :]
            sub.state = "preamble"
        preamble = PREAMBLE_CHUNK if sub.chunked else PREAMBLE
        if len(buf) < len(preamble):
            sub.buf = buf
            return
        if not buf.startswith(preamble):
            self._fail(sub, f"no :ok preamble: {buf[:40]!r}")
            return
        if sub.check is not None and not (sub.chunked and sub.check.feed(buf)):
            self.stats.broken_framing += 1
            self._fail(sub, "not chunked" if not sub.chunked else "broken chunked framing")
            return
        sub.state = "stream"
        self.opening -= 1
        self.stats.connected += 1
        sub.buf = b""
        self._frames(sub, buf[len(preamble) :])

    def _frames(self, sub: _Sub, buf: bytes) -> None:
        end = buf.rfind(FRAME_END)
        if end < 0:
            sub.buf = buf
            return
        rest = buf[end + 2 :]
        # A read usually ends with its last chunk's CRLF: no need to copy the next read to it.
        sub.buf = b"" if rest == CRLF else rest
        n = buf.count(ID_LINE, 0, end + 1)
        if not n:
            return  # keepalive comments only
        stats = self.stats
        first = _id_at(buf, buf.find(ID_LINE, 0, end + 1))
        last = _id_at(buf, buf.rfind(ID_LINE, 0, end + 1)) if n > 1 else first
        if (sub.last_id is not None and first != sub.last_id + 1) or last - first + 1 != n:
            stats.gaps += 1
        if sub.first_id is None:
            sub.first_id = first
        sub.last_id = last
        sub.frames += n
        stats.frames += n
        now = time.monotonic()
        if stats.first_frame_at is None:
            stats.first_frame_at = now
        stats.last_frame_at = now

    def _command(self) -> None:
        try:
            message = self.control.recv()
        except EOFError:
            self.stopping = True
            return
        if message[0] == "drain":
            _, self.drain_first, self.drain_to, seconds = message
            self.drain_deadline = time.monotonic() + seconds
        else:
            self.stopping = True

    def _drained(self) -> bool:
        target = self.drain_to
        return target is not None and all(
            sub.last_id is not None and sub.last_id >= target
            for sub in self.subs
            if sub.state == "stream"
        )

    def serve(self, hard_deadline: float) -> None:
        """Read until told to stop, until drained, or until the hard deadline."""
        while not self.stopping and time.monotonic() < hard_deadline:
            draining = self.drain_to is not None
            if draining and (time.monotonic() >= self.drain_deadline or self._drained()):
                return
            if self._poll(0.1) and self.spec.coalesce:
                time.sleep(self.spec.coalesce)

    def finish(self, first_id: int | None, last_id: int | None) -> SubscriberStats:
        """Close every subscriber and judge completeness against ids first..last."""
        stats = self.stats
        for sub in self.subs:
            if sub.state == "stream":
                counts = sub.frames
                stats.per_subscriber_min = _pick(min, stats.per_subscriber_min, counts)
                stats.per_subscriber_max = _pick(max, stats.per_subscriber_max, counts)
                if first_id is not None and last_id is not None:
                    expected = last_id - first_id + 1
                    if sub.first_id == first_id and sub.last_id == last_id and counts == expected:
                        stats.complete += 1
                    else:
                        stats.incomplete += 1
                        stats.missing_events += max(0, expected - counts)
            if sub.state != "closed":
                sub.state = "closed"
                sub.sock.close()
        self.sel.close()
        return stats


def _worker(spec: SubscriberSpec, control: Connection) -> None:
    hard_deadline = time.monotonic() + spec.lifetime
    subs = _Subscribers(spec, control)
    subs.connect_all()
    control.send(("connected", subs.stats))
    subs.serve(hard_deadline)
    first_id = last_id = None
    if subs.drain_to is not None:
        first_id, last_id = subs.drain_first, subs.drain_to
    control.send(("result", subs.finish(first_id, last_id)))


class SubscriberPool:
    """Subscriber processes started, driven and reaped by the orchestrating script."""

    def __init__(self, spec: SubscriberSpec, procs: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._connect_timeout = spec.connect_timeout + 30
        procs = max(1, min(procs, spec.count))
        self._workers: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
        for i in range(procs):
            count = spec.count // procs + (1 if i < spec.count % procs else 0)
            parent, child = ctx.Pipe()
            share = replace(spec, count=count)
            process = ctx.Process(target=_worker, args=(share, child), daemon=True)
            process.start()
            child.close()
            self._workers.append((process, parent))

    @property
    def pids(self) -> list[int]:
        return [process.pid for process, _ in self._workers if process.pid is not None]

    def wait_connected(self) -> SubscriberStats:
        """Block (bounded) until every process has opened its subscribers."""
        merged = SubscriberStats()
        for process, control in self._workers:
            message = self._receive(process, control, "connected", self._connect_timeout)
            merged.merge(message)
        return merged

    def drain(self, first_id: int, last_id: int, seconds: float) -> SubscriberStats:
        """Ask every process to read until ids first..last arrived (or ``seconds``), merge."""
        for _, control in self._workers:
            control.send(("drain", first_id, last_id, seconds))
        return self._results(seconds + 30)

    def stop(self) -> SubscriberStats:
        for _, control in self._workers:
            control.send(("stop",))
        return self._results(30)

    def _results(self, timeout: float) -> SubscriberStats:
        merged = SubscriberStats()
        for process, control in self._workers:
            merged.merge(self._receive(process, control, "result", timeout))
        return merged

    def _receive(
        self,
        process: multiprocessing.process.BaseProcess,
        control: Connection,
        kind: str,
        timeout: float,
    ) -> SubscriberStats:
        try:
            if not control.poll(timeout):
                raise RuntimeError(f"subscriber process {process.pid} sent no {kind!r} in time")
            message = control.recv()
        except EOFError:
            process.join(1)
            raise RuntimeError(
                f"subscriber process {process.pid} died (exit code {process.exitcode})"
            ) from None
        if message[0] != kind:
            raise RuntimeError(f"subscriber process {process.pid} sent {message[0]!r}")
        stats: SubscriberStats = message[1]
        return stats

    def close(self) -> None:
        """Reap every process we started (terminate it if it does not exit by itself)."""
        for process, control in self._workers:
            control.close()
            process.join(10)
            if process.is_alive():
                process.terminate()
                process.join(5)
        self._workers.clear()
