"""A cheap webhook receiver: one process, many loopback ports, keep-alive, answers a bare 200.

``Receiver`` starts it as a separate process (spawn) and talks to it over a pipe. It listens
on ``ports`` healthy ports, which answer every complete request with
``HTTP/1.1 200 OK`` and an empty body on the same connection, and on ``silent_ports``
ports that accept connections and read requests but never answer (a dead destination).

It costs as little as possible per request, so the engine, not the receiver, sets the
pace: raw non-blocking sockets and one ``epoll`` loop, requests split by hand (head end,
``content-length``), answers written in one ``send`` per read. For each request it
records:

- the receipt time (``time.monotonic()``, CLOCK_MONOTONIC: the same clock in every
  process of the machine);
- the ``webhook-id`` header, to count unique deliveries and duplicates;
- if the form body has ``data=<float>``, that float (else NaN): a sender that puts its own
  ``time.monotonic()`` in the event's data gets end-to-end latency (receipt - stamp);
- the port it came in on.

``reset()`` clears everything; ``count()`` is a cheap progress check, ``stats()`` a
full ``ReceiverStats`` snapshot and ``ids()`` the distinct webhook-ids themselves. Every loop
is bounded: the process exits when told to, when the pipe closes, or after ``lifetime``.
"""

from __future__ import annotations

import multiprocessing
import select
import socket
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

HOST = "127.0.0.1"
RECEIVE_SIZE = 262144
RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
HEAD_END = b"\r\n\r\n"
LENGTH = b"content-length:"
WEBHOOK_ID = b"\r\nwebhook-id:"
DATA_FIELD = b"data="
NAN = float("nan")
START_TIMEOUT = 30.0
"""Seconds the receiver process gets to bind its ports and say so."""

COMMAND_TIMEOUT = 30.0
"""Seconds a command to the receiver process may take to be answered."""


@dataclass
class ReceiverStats:
    """What the receiver saw since the last reset."""

    requests: int = 0  # complete requests answered 200 (healthy ports)
    unique_ids: int = 0  # distinct webhook-id values among them
    missing_id: int = 0  # requests without a webhook-id header
    silent_requests: int = 0  # requests read on silent ports (never answered)
    connections: int = 0  # connections accepted (all ports)
    bad_requests: int = 0  # connections closed because the bytes were not a request
    per_port: dict[int, int] = field(default_factory=dict)  # healthy port -> requests
    times: array[float] = field(default_factory=lambda: array("d"))  # receipt times
    stamps: array[float] = field(default_factory=lambda: array("d"))  # data= floats, or NaN
    cpu: float = 0.0  # CPU seconds the receiver used since the reset

    @property
    def duplicates(self) -> int:
        """Requests whose webhook-id had been seen before (since the reset)."""
        return self.requests - self.missing_id - self.unique_ids

    def received_between(self, begin: float, end: float) -> int:
        """Requests received in [begin, end) (monotonic seconds)."""
        return sum(1 for t in self.times if begin <= t < end)

    def latencies(self, stamped_after: float = float("-inf")) -> list[float]:
        """Receipt - stamp, in seconds, of the requests stamped after a given time."""
        return [t - s for t, s in zip(self.times, self.stamps, strict=True) if s >= stamped_after]


class _Conn:
    __slots__ = ("buf", "port", "silent", "sock")

    def __init__(self, sock: socket.socket, port: int, silent: bool) -> None:
        self.sock = sock
        self.port = port
        self.silent = silent
        self.buf = b""


class _State:
    """Counters of the serving loop (reset by command)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.ids: set[bytes] = set()
        self.missing_id = 0
        self.silent_requests = 0
        self.connections = 0
        self.bad_requests = 0
        self.per_port: Counter[int] = Counter()
        self.times: array[float] = array("d")
        self.stamps: array[float] = array("d")
        self.cpu_at_reset = time.process_time()

    def snapshot(self) -> ReceiverStats:
        return ReceiverStats(
            requests=self.requests,
            unique_ids=len(self.ids),
            missing_id=self.missing_id,
            silent_requests=self.silent_requests,
            connections=self.connections,
            bad_requests=self.bad_requests,
            per_port=dict(self.per_port),
            times=self.times,
            stamps=self.stamps,
            cpu=time.process_time() - self.cpu_at_reset,
        )


def _split(buf: bytes, conn: _Conn, state: _State, now: float) -> int:
    """Count the complete requests in ``buf``; keep the rest; -1 if it is not HTTP."""
    pos = 0
    done = 0
    size = len(buf)
    silent = conn.silent
    while True:
        head_end = buf.find(HEAD_END, pos)
        if head_end < 0:
            if size - pos > 65536:
                return -1
            break
        at = buf.find(LENGTH, pos, head_end)
        if at < 0:
            lower = buf[pos:head_end].lower()
            rel = lower.find(LENGTH)
            at = -1 if rel < 0 else pos + rel
        length = 0
        if at >= 0:
            line_end = buf.find(b"\r\n", at, head_end + 2)
            try:
                length = int(buf[at + len(LENGTH) : line_end])
            except ValueError:
                return -1
        end = head_end + 4 + length
        if end > size:
            break
        done += 1
        if silent:
            state.silent_requests += 1
            pos = end
            continue
        i = buf.find(WEBHOOK_ID, pos, head_end)
        if i < 0:
            rel = buf[pos:head_end].lower().find(WEBHOOK_ID)
            i = -1 if rel < 0 else pos + rel
        if i >= 0:
            j = i + len(WEBHOOK_ID)
            k = buf.find(b"\r", j, head_end + 2)
            state.ids.add(buf[j:k].strip())
        else:
            state.missing_id += 1
        stamp = NAN
        d = buf.find(DATA_FIELD, head_end + 4, end) if length else -1
        if d >= 0 and (d == head_end + 4 or buf[d - 1] == 38):  # 38: "&"
            v = d + len(DATA_FIELD)
            amp = buf.find(b"&", v, end)
            try:
                stamp = float(buf[v : amp if amp >= 0 else end])
            except ValueError:
                stamp = NAN
        state.times.append(now)
        state.stamps.append(stamp)
        pos = end
    conn.buf = buf[pos:] if pos < size else b""
    if not silent:
        state.requests += done
        state.per_port[conn.port] += done
    return done


def _serve(ports: int, silent_ports: int, lifetime: float, control: Connection) -> None:
    """The receiver process: bind, report the ports, serve until told to stop."""
    listeners: dict[int, tuple[socket.socket, int, bool]] = {}
    healthy: list[int] = []
    silent: list[int] = []
    for i in range(ports + silent_ports):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        sock.listen(1024)
        sock.setblocking(False)
        port = sock.getsockname()[1]
        is_silent = i >= ports
        (silent if is_silent else healthy).append(port)
        listeners[sock.fileno()] = (sock, port, is_silent)
    poller = select.epoll()
    for fd in listeners:
        poller.register(fd, select.EPOLLIN)
    control_fd = control.fileno()
    poller.register(control_fd, select.EPOLLIN)
    control.send(("ready", healthy, silent))
    conns: dict[int, _Conn] = {}
    state = _State()
    clock = time.monotonic
    deadline = clock() + lifetime

    def close(fd: int) -> None:
        conn = conns.pop(fd)
        poller.unregister(fd)
        conn.sock.close()

    try:
        while clock() < deadline:
            for fd, _ in poller.poll(1.0):
                conn = conns.get(fd)
                if conn is not None:
                    try:
                        data = conn.sock.recv(RECEIVE_SIZE)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        close(fd)
                        continue
                    if not data:
                        close(fd)
                        continue
                    now = clock()
                    count = _split(conn.buf + data if conn.buf else data, conn, state, now)
                    if count < 0:
                        state.bad_requests += 1
                        close(fd)
                    elif count and not conn.silent:
                        try:
                            # A bare 200 is 38 bytes: the socket buffer always takes it.
                            conn.sock.send(RESPONSE * count)
                        except OSError:
                            close(fd)
                    continue
                listener = listeners.get(fd)
                if listener is not None:
                    _accept(listener, conns, poller, state)
                    continue
                if fd == control_fd and not _command(control, state):
                    return
    finally:
        for conn in conns.values():
            conn.sock.close()
        for sock, _, _ in listeners.values():
            sock.close()
        poller.close()


def _accept(
    listener: tuple[socket.socket, int, bool],
    conns: dict[int, _Conn],
    poller: select.epoll,
    state: _State,
) -> None:
    sock, port, silent = listener
    for _ in range(256):  # bounded: the rest wait for the next poll
        try:
            client, _ = sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        client.setblocking(False)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns[client.fileno()] = _Conn(client, port, silent)
        poller.register(client.fileno(), select.EPOLLIN)
        state.connections += 1


def _command(control: Connection, state: _State) -> bool:
    """Answer one command from the parent; False when the receiver must stop."""
    try:
        message = control.recv()
    except EOFError:
        return False
    if message == "reset":
        state.reset()
        control.send(("ok",))
    elif message == "count":
        control.send(("count", state.requests, len(state.ids), state.silent_requests))
    elif message == "ids":
        control.send(("ids", state.ids))
    elif message == "stats":
        control.send(("stats", state.snapshot()))
    elif message == "stop":
        control.send(("ok",))
        return False
    return True


class Receiver:
    """The receiver process, seen from the benchmark; a context manager."""

    def __init__(self, ports: int, silent_ports: int = 0, lifetime: float = 3600.0) -> None:
        self._ports = ports
        self._silent_ports = silent_ports
        self._lifetime = lifetime
        self._process: multiprocessing.process.BaseProcess | None = None
        self._control: Connection | None = None
        self.ports: list[int] = []
        """The healthy ports, in order."""
        self.silent_ports: list[int] = []

    @property
    def pid(self) -> int:
        assert self._process is not None and self._process.pid is not None
        return self._process.pid

    def start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        process = ctx.Process(
            target=_serve,
            args=(self._ports, self._silent_ports, self._lifetime, child),
            daemon=True,
            name="hookwire-bench-receiver",
        )
        process.start()
        child.close()
        self._process, self._control = process, parent
        _, self.ports, self.silent_ports = self._ask(None, START_TIMEOUT)

    def reset(self) -> None:
        """Forget every request seen so far."""
        self._ask("reset")

    def count(self) -> tuple[int, int, int]:
        """(requests answered, unique webhook-ids, requests on silent ports) since the reset."""
        _, requests, unique, silent = self._ask("count")
        return requests, unique, silent

    def ids(self) -> set[bytes]:
        """Every distinct webhook-id received since the reset."""
        ids: set[bytes] = self._ask("ids")[1]
        return ids

    def stats(self) -> ReceiverStats:
        stats: ReceiverStats = self._ask("stats")[1]
        return stats

    def stop(self) -> None:
        process, control = self._process, self._control
        if process is None or control is None:
            return
        try:
            if process.is_alive():
                self._ask("stop", 5.0)
        except RuntimeError:
            pass
        finally:
            control.close()
            process.join(5)
            if process.is_alive():
                process.terminate()
                process.join(5)
            self._process = self._control = None

    def _ask(self, message: str | None, timeout: float = COMMAND_TIMEOUT) -> tuple[Any, ...]:
        process, control = self._process, self._control
        assert process is not None and control is not None
        if message is not None:
            control.send(message)
        try:
            if control.poll(timeout):
                answer: tuple[Any, ...] = control.recv()
                return answer
        except EOFError:
            pass
        raise RuntimeError(
            f"the receiver process {process.pid} did not answer {message or 'start'!r} "
            f"(alive: {process.is_alive()}, exit code {process.exitcode})"
        )

    def __enter__(self) -> Receiver:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
