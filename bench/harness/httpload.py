"""A cheap HTTP/1.1 load generator: raw non-blocking sockets, keep-alive, pre-rendered requests.

Each worker process drives several connections from one ``selectors`` loop. A connection
keeps at most ``pipeline`` requests in flight; when responses arrive, the same number of
requests leave in one ``send`` of pre-rendered bytes. Responses are split by hand
(head end, ``content-length``), which costs far less than any real parser, so the server,
not this client, is what a run measures. Every loop is bounded by a deadline and a count.

``run_load`` splits one spec among workers (separate processes), starts them together, and
merges their results; ``run_loads`` runs several specs (one process each) side by side.

With ``rate`` 0 the load is a closed loop: each connection sends as soon as it is answered,
and a latency runs from the moment a request is sent. With a ``rate`` it is an open model:
request ``i`` of a worker is due at ``start + i / rate`` (``pacing.Pacer``) whatever the
server did with the earlier ones, and its latency runs from that scheduled time, not from
when it was actually sent. A stalled server then shows as long latencies for every request
that was due during the stall, instead of as a pause in sending (coordinated omission).
A request that finds every connection's ``pipeline`` full waits for a free slot: that wait
is part of its latency (in an open model, queueing is the server's doing) and it also
counts in ``LoadResult.send_lag_max`` and ``late_sends``, which say how far behind schedule
the generator sent. The loop's timer waits whole milliseconds (epoll's granularity), so a
send up to 1 ms behind schedule is the timer, not the generator falling behind.
"""

from __future__ import annotations

import multiprocessing
import selectors
import socket
import time
from array import array
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from typing import Any

from bench.harness.daemon import machine_cpu_seconds, tree_cpu_seconds
from bench.harness.pacing import Pacer

RECEIVE_SIZE = 262144
"""Bytes per recv: with pipelining, one read may hold many responses."""

READY_TIMEOUT = 30.0
"""Seconds a worker gets to open its connections."""

DRAIN_TIMEOUT = 5.0
"""Seconds after the deadline that in-flight requests get to be answered."""

LATE_SEND = 0.002
"""Seconds behind schedule that make a send late.

The loop's timer (epoll) rounds its waits up to whole milliseconds, so a send routinely
leaves up to 1 ms after it was due, and that is in every open-model latency. Beyond 2 ms it
waited for something else: every connection busy, or the generator's own CPU.
"""

HEAD_END = b"\r\n\r\n"
LENGTH = b"content-length:"
ID_FIELD = b'"id":'

Render = Callable[[Sequence[float]], bytes]
"""``render(stamps)``: the bytes of the next ``len(stamps)`` requests, each with its own stamp.

A stamp is the request's scheduled send time with a ``rate`` (open model), the time it is
sent without one (closed loop); ``time.monotonic()`` seconds either way.
"""


def post_head(host: str, port: int, path: str, token: str, content_type: str) -> bytes:
    """A keep-alive POST request's head up to ``Content-Length: `` (the length comes next)."""
    return (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\n"
        f"Content-Type: {content_type}\r\n"
        "Content-Length: "
    ).encode("latin-1")


def render_post(
    host: str, port: int, path: str, token: str, body: bytes, content_type: str
) -> bytes:
    """One complete keep-alive POST request, ready to be sent many times."""
    return b"%s%d\r\n\r\n%s" % (post_head(host, port, path, token, content_type), len(body), body)


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """What one run of the load generator does (split among workers by ``run_load``)."""

    host: str
    port: int
    request: bytes = b""  # sent as is, ``count`` times over, unless ``renderer`` is set
    connections: int = 32
    pipeline: int = 1
    duration: float = 5.0
    warmup: float = 0.5
    max_requests: int = 2_000_000
    rate: float = 0.0  # requests/s for the whole run; 0 = as fast as answered
    track_ids: bool = False  # read "id" from each 200 body (publish answers)
    keep_ids: bool = False  # with track_ids: keep every id in ``LoadResult.ids``, not only min/max
    # Called once in each worker (so it must pickle: a module-level function or a partial of
    # one); the ``Render`` it returns makes every request instead of ``request`` (requests
    # that differ, e.g. stamped with the time they are due).
    renderer: Callable[[], Render] | None = None
    # Answers that arrive after the deadline (in the drain) still count in ``ok`` and the
    # latencies, and the client CPU runs to the last one: for runs where every acknowledged
    # request matters. ``window`` (hence ``per_second``) still ends at the deadline.
    count_drain: bool = False


@dataclass
class LoadResult:
    """What the workers saw; counts cover the measured window unless named otherwise."""

    ok: int = 0  # 200 answers completed inside the window
    window: float = 0.0  # seconds measured (after the warmup)
    sent: int = 0  # requests sent in total, warmup included
    answered: int = 0  # responses received in total, any status, warmup included
    errors: Counter[str] = field(default_factory=Counter)
    latencies: array[float] = field(default_factory=lambda: array("d"))
    client_cpu: float = 0.0  # CPU seconds the workers used inside the window
    connections: int = 0
    min_id: int | None = None
    max_id: int | None = None
    ids: array[int] = field(default_factory=lambda: array("q"))  # every id, with keep_ids
    workers: int = 0
    # How far behind schedule the generator sent (open model only; sends in the window):
    send_lag_max: float = 0.0  # seconds, the most any request was sent after it was due
    late_sends: int = 0  # requests sent more than LATE_SEND (2 ms) after they were due

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def per_second(self) -> float:
        return self.ok / self.window if self.window > 0 else 0.0

    def merge(self, other: LoadResult) -> None:
        self.ok += other.ok
        self.window = max(self.window, other.window)
        self.sent += other.sent
        self.answered += other.answered
        self.errors.update(other.errors)
        self.latencies.extend(other.latencies)
        self.client_cpu += other.client_cpu
        self.connections += other.connections
        self.workers += other.workers
        self.ids.extend(other.ids)
        self.send_lag_max = max(self.send_lag_max, other.send_lag_max)
        self.late_sends += other.late_sends
        for value in (other.min_id, other.max_id):
            if value is None:
                continue
            self.min_id = value if self.min_id is None else min(self.min_id, value)
            self.max_id = value if self.max_id is None else max(self.max_id, value)


class _Conn:
    __slots__ = ("buf", "in_flight", "pending", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.in_flight: deque[float] = deque()  # each request's stamp: when it was due
        self.pending = b""  # request bytes the socket did not take yet


def _split_responses(
    buf: bytes,
    conn: _Conn,
    now: float,
    counted: bool,
    result: LoadResult,
    track_ids: bool,
    keep_ids: bool = False,
) -> int:
    """Consume complete responses from ``buf``; returns how many; leaves the rest in ``conn``."""
    pos = 0
    done = 0
    size = len(buf)
    in_flight = conn.in_flight
    latencies = result.latencies
    while True:
        head_end = buf.find(HEAD_END, pos)
        if head_end < 0:
            break
        at = buf.find(LENGTH, pos, head_end)
        if at < 0:  # another case: lower this head only, not every response after it
            rel = buf[pos:head_end].lower().find(LENGTH)
            at = -1 if rel < 0 else pos + rel
        if at < 0:
            length = 0  # no body (or close-delimited, which keep-alive answers never are)
        else:
            line_end = buf.find(b"\r\n", at, head_end + 2)
            length = int(buf[at + len(LENGTH) : line_end])
        end = head_end + 4 + length
        if end > size:
            break
        status = buf[pos + 9 : pos + 12]
        due_at = in_flight.popleft() if in_flight else now
        if status == b"200":
            if counted:
                result.ok += 1
                latencies.append(now - due_at)
            if track_ids:
                i = buf.find(ID_FIELD, head_end, end)
                if i >= 0:
                    j = i + len(ID_FIELD)
                    k = j
                    while k < end and 48 <= buf[k] <= 57:
                        k += 1
                    if k > j:
                        event_id = int(buf[j:k])
                        if result.min_id is None or event_id < result.min_id:
                            result.min_id = event_id
                        if result.max_id is None or event_id > result.max_id:
                            result.max_id = event_id
                        if keep_ids:
                            result.ids.append(event_id)
        else:
            result.errors[f"status {status.decode('latin-1', 'replace')}"] += 1
        pos = end
        done += 1
    conn.buf = buf[pos:] if pos < size else b""
    result.answered += done
    return done


def _worker(spec: LoadSpec, control: Connection) -> None:
    """One worker process: connect, report ready, wait for "go", load, report results."""
    result = LoadResult(workers=1)
    sel = selectors.DefaultSelector()
    conns: list[_Conn] = []
    for _ in range(spec.connections):
        try:
            sock = socket.create_connection((spec.host, spec.port), timeout=READY_TIMEOUT)
        except OSError as exc:
            result.errors[f"connect: {exc.strerror or exc}"] += 1
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        conn = _Conn(sock)
        conns.append(conn)
        sel.register(sock, selectors.EVENT_READ, conn)
    result.connections = len(conns)
    control.send(("ready", len(conns)))
    if not control.poll(READY_TIMEOUT):
        return
    message = control.recv()
    if message[0] != "go":
        return
    start: float = message[1]
    while time.monotonic() < start:
        time.sleep(min(0.01, max(0.0, start - time.monotonic())))
    try:
        _drive(spec, sel, conns, start, result)
    finally:
        for conn in conns:
            conn.sock.close()
        sel.close()
    control.send(("done", result))


def _drive(
    spec: LoadSpec,
    sel: selectors.BaseSelector,
    conns: list[_Conn],
    start: float,
    result: LoadResult,
) -> None:
    request = spec.request
    render = spec.renderer() if spec.renderer is not None else None
    pipeline = spec.pipeline
    track_ids = spec.track_ids
    keep_ids = spec.keep_ids
    window_start = start + spec.warmup
    deadline = window_start + spec.duration
    window_end = hard_deadline = deadline + DRAIN_TIMEOUT
    if not spec.count_drain:
        window_end = deadline  # answers (and CPU) counted up to here
    budget = spec.max_requests
    pacer = Pacer(spec.rate, start) if spec.rate > 0 else None
    live: set[_Conn] = set(conns)
    clock = time.monotonic
    cpu_at_start: float | None = None
    cpu_at_end: float | None = None
    finished = deadline

    def lost(conn: _Conn, why: str) -> None:
        result.errors[why] += 1
        if conn.in_flight:
            result.errors["no answer (connection lost)"] += len(conn.in_flight)
            conn.in_flight.clear()
        sel.unregister(conn.sock)
        conn.sock.close()
        live.discard(conn)

    def send(conn: _Conn, count: int, now: float) -> None:
        nonlocal budget
        count = min(count, budget)
        if count <= 0:
            return
        budget -= count
        if pacer is None:
            stamps = [now] * count
        else:
            first = result.sent
            stamps = [pacer.scheduled(i) for i in range(first, first + count)]
            if window_start <= now:
                # Stamps increase: the first is the most behind, and bisect finds the late.
                result.send_lag_max = max(result.send_lag_max, now - stamps[0])
                result.late_sends += bisect_left(stamps, now - LATE_SEND)
        result.sent += count
        conn.in_flight.extend(stamps)
        data = request * count if render is None else render(stamps)
        if conn.pending:
            conn.pending += data
            return
        try:
            written = conn.sock.send(data)
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError as exc:
            lost(conn, f"send: {exc.strerror or exc}")
            return
        if written < len(data):
            conn.pending = data[written:]
            sel.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)

    now = clock()
    if now >= window_start:
        cpu_at_start = time.process_time()
    if pacer is None:
        for conn in conns:
            send(conn, pipeline, now)
    while live:
        now = clock()
        if cpu_at_start is None and now >= window_start:
            cpu_at_start = time.process_time()
        if cpu_at_end is None and now >= window_end:
            cpu_at_end = time.process_time()
        sending = now < deadline and budget > 0
        if not sending and not any(conn.in_flight for conn in live):
            finished = min(now, deadline)
            break
        if now >= hard_deadline:
            stuck = sum(len(conn.in_flight) for conn in live)
            if stuck:
                result.errors["no answer before the drain timeout"] += stuck
            break
        if sending and pacer is not None:
            # Open model: start what the schedule made due on connections with room.
            quota = pacer.due(now, result.sent)
            for conn in list(live):
                room = min(pipeline - len(conn.in_flight), quota)
                if room > 0:
                    send(conn, room, now)
                    quota -= room
            # Wake when the next request is due; with no room left (an answer makes some) or
            # nothing left to send, on an answer.
            idle = quota > 0 or budget <= 0
            wake = now + 0.1 if idle else pacer.scheduled(result.sent)
            timeout = max(0.0, min(wake, deadline) - now)
        else:
            timeout = max(0.0, min(0.1, (deadline if sending else hard_deadline) - now))
        for key, mask in sel.select(timeout):
            conn = key.data
            if mask & selectors.EVENT_WRITE and conn.pending:
                try:
                    written = conn.sock.send(conn.pending)
                except (BlockingIOError, InterruptedError):
                    written = 0
                except OSError as exc:
                    lost(conn, f"send: {exc.strerror or exc}")
                    continue
                conn.pending = conn.pending[written:]
                if not conn.pending:
                    sel.modify(conn.sock, selectors.EVENT_READ, conn)
            if not mask & selectors.EVENT_READ:
                continue
            try:
                data = conn.sock.recv(RECEIVE_SIZE)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                lost(conn, f"recv: {exc.strerror or exc}")
                continue
            if not data:
                lost(conn, "closed by the server")
                continue
            now = clock()
            buf = conn.buf + data if conn.buf else data
            counted = window_start <= now < window_end
            done = _split_responses(buf, conn, now, counted, result, track_ids, keep_ids)
            if done and pacer is None and now < deadline:
                send(conn, done, now)
    result.window = max(0.0, finished - window_start)
    end_cpu = cpu_at_end if cpu_at_end is not None else time.process_time()
    result.client_cpu = end_cpu - (cpu_at_start if cpu_at_start is not None else end_cpu)


@dataclass
class LoadRun:
    """What a run did: merged results, plus the server's CPU use in the window."""

    result: LoadResult  # every worker's result, merged
    server_cpu: float | None  # CPU seconds of server_pid and its children during the window
    machine_cpu: float | None  # CPU seconds of every process on the machine, same window
    results: list[LoadResult] = field(default_factory=list)  # each worker's, in spec order
    start: float = 0.0  # monotonic: when the workers started, together
    server_children_cpu: float | None = None  # of server_cpu, what its child processes used

    def others_cpu(self, *clients: float) -> float | None:
        """CPU seconds in the window used by neither the server nor the given clients."""
        if self.server_cpu is None or self.machine_cpu is None:
            return None
        return max(0.0, self.machine_cpu - self.server_cpu - sum(clients))


def run_load(spec: LoadSpec, procs: int = 1, server_pid: int | None = None) -> LoadRun:
    """Run ``spec`` split over ``procs`` worker processes; wait (bounded) for all of them."""
    procs = max(1, min(procs, spec.connections))
    shares = [
        replace(
            spec,
            connections=_share(spec.connections, procs, i),
            max_requests=_share(spec.max_requests, procs, i),
            rate=spec.rate / procs,
        )
        for i in range(procs)
    ]
    return run_loads(shares, server_pid)


def run_loads(
    specs: Sequence[LoadSpec],
    server_pid: int | None = None,
    midway: Callable[[], None] | None = None,
    on_start: Callable[[float], None] | None = None,
) -> LoadRun:
    """Run each spec in its own worker process, all starting together; wait (bounded).

    The window (for the CPU figures) runs from the end of the longest warmup to the last
    deadline. ``midway``, with a ``server_pid``, is called once halfway through it.
    ``on_start`` is called with the (monotonic) instant the workers start, once they are
    told it: to schedule something during the load (e.g. a crash).
    """
    ctx = multiprocessing.get_context("spawn")
    workers: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
    try:
        for spec in specs:
            parent, child = ctx.Pipe()
            process = ctx.Process(target=_worker, args=(spec, child), daemon=True)
            process.start()
            child.close()
            workers.append((process, parent))
        for process, control in workers:
            receive(process, control, READY_TIMEOUT + 30)
        start = time.monotonic() + 0.2
        for _, control in workers:
            control.send(("go", start))
        if on_start is not None:
            on_start(start)
        end = start + max(spec.warmup + spec.duration for spec in specs)
        server_cpu = machine_cpu = children_cpu = None
        if server_pid is not None:
            begin = start + max(spec.warmup for spec in specs)
            server_cpu, children_cpu, machine_cpu = _window_cpu(server_pid, begin, end, midway)
        timeout = end - start + DRAIN_TIMEOUT + 30
        results: list[LoadResult] = [receive(p, c, timeout)[1] for p, c in workers]
        merged = LoadResult()
        for result in results:
            merged.merge(result)
        return LoadRun(merged, server_cpu, machine_cpu, results, start, children_cpu)
    finally:
        join(workers)


def receive(
    process: multiprocessing.process.BaseProcess, control: Connection, timeout: float
) -> tuple[Any, ...]:
    """A worker process's next message; a clear error if it died or went quiet."""
    try:
        if control.poll(timeout):
            message: tuple[Any, ...] = control.recv()
            return message
    except EOFError:
        process.join(1)
        raise RuntimeError(
            f"load worker {process.pid} died (exit code {process.exitcode})"
        ) from None
    raise RuntimeError(f"load worker {process.pid} sent nothing for {timeout:.0f}s")


def join(workers: Sequence[tuple[multiprocessing.process.BaseProcess, Connection]]) -> None:
    """Close the workers' pipes and wait (bounded) for them to exit; terminate stragglers."""
    for process, control in workers:
        control.close()
        process.join(5)
        if process.is_alive():
            process.terminate()
            process.join(5)


def _share(total: int, parts: int, index: int) -> int:
    return total // parts + (1 if index < total % parts else 0)


def _window_cpu(
    pid: int, begin: float, end: float, midway: Callable[[], None] | None = None
) -> tuple[float | None, float | None, float | None]:
    """CPU seconds of ``pid`` with its children, of the children alone, and of the whole
    machine, between two monotonic instants (a child started meanwhile counts from 0).

    Calls ``midway`` (if given) once halfway between them.
    """
    try:
        time.sleep(max(0.0, begin - time.monotonic()))
        server, machine = tree_cpu_seconds(pid), machine_cpu_seconds()
        if midway is not None:
            time.sleep(max(0.0, (begin + end) / 2 - time.monotonic()))
            midway()
        time.sleep(max(0.0, end - time.monotonic()))
        after, machine_after = tree_cpu_seconds(pid), machine_cpu_seconds()
    except OSError:
        return None, None, None
    used = {child: seconds - server.get(child, 0.0) for child, seconds in after.items()}
    children = sum(seconds for child, seconds in used.items() if child != pid)
    return sum(used.values()), children, machine_after - machine
