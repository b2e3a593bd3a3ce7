"""The baselines: the engine's requests sent by httpx on trio and aiohttp on asyncio (what
most Python users would write), and by the engine's own HTTP client alone (trio streams and
httptools, nothing else: the ceiling a delivery engine on them can approach)."""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from urllib.parse import urlencode, urlsplit

from bench.harness.daemon import HOST
from bench.harness.delivery.publishers import FORM, USER_AGENT
from bench.harness.httpload import join, receive
from bench.harness.receiver import Receiver
from bench.harness.report import Report

READY_TIMEOUT = 30.0
"""Seconds a baseline client process gets to start."""


@dataclass(frozen=True, slots=True)
class BaselineSpec:
    """One baseline client process: ``concurrency`` tasks POSTing to ``url`` for a while."""

    kind: str  # "httpx", "aiohttp" or "raw"
    url: str
    body: bytes
    concurrency: int = 64
    duration: float = 3.0
    warmup: float = 0.5
    max_requests: int = 1_000_000


@dataclass
class BaselineResult:
    ok: int = 0  # 200 answers inside the window
    total_ok: int = 0  # 200 answers, warmup included
    errors: Counter[str] = field(default_factory=Counter)
    window: float = 0.0
    cpu: float = 0.0  # CPU seconds of the client process inside the window

    @property
    def per_second(self) -> float:
        return self.ok / self.window if self.window > 0 else 0.0


class _BaselineLoad:
    """The shared state of one baseline's tasks: a deadline, a budget, the counts."""

    def __init__(self, spec: BaselineSpec) -> None:
        self.spec = spec
        self.result = BaselineResult()
        now = time.monotonic()
        self.window_start = now + spec.warmup
        self.deadline = self.window_start + spec.duration
        self.budget = spec.max_requests
        self.sequence = 0
        self._cpu_start: float | None = None
        self._cpu_end: float | None = None

    def next_headers(self) -> dict[str, str] | None:
        """Headers of the next request, or None when the time or the budget is up."""
        now = time.monotonic()
        if self._cpu_start is None and now >= self.window_start:
            self._cpu_start = time.process_time()
        if now >= self.deadline or self.budget <= 0:
            if self._cpu_end is None:
                self._cpu_end = time.process_time()
            return None
        self.budget -= 1
        self.sequence += 1
        return {
            "User-Agent": USER_AGENT,
            "webhook-id": f"msg_{self.spec.kind}_{self.sequence:x}",
            "Content-Type": FORM,
        }

    def done(self, status: int | None, error: str | None = None) -> None:
        now = time.monotonic()
        if status == 200:
            self.result.total_ok += 1
            if self.window_start <= now < self.deadline:
                self.result.ok += 1
        else:
            self.result.errors[error or f"status {status}"] += 1

    def finish(self) -> BaselineResult:
        end = self._cpu_end if self._cpu_end is not None else time.process_time()
        self.result.cpu = end - (self._cpu_start if self._cpu_start is not None else end)
        self.result.window = self.spec.duration
        return self.result


async def _httpx_load(spec: BaselineSpec) -> BaselineResult:
    """``spec.concurrency`` trio tasks sharing one ``httpx.AsyncClient``."""
    import httpx
    import trio

    load = _BaselineLoad(spec)
    limits = httpx.Limits(
        max_connections=spec.concurrency, max_keepalive_connections=spec.concurrency
    )
    async with httpx.AsyncClient(limits=limits, timeout=10.0) as client:

        async def task() -> None:
            while (headers := load.next_headers()) is not None:
                try:
                    response = await client.post(spec.url, content=spec.body, headers=headers)
                except httpx.HTTPError as exc:
                    load.done(None, type(exc).__name__)
                    continue
                load.done(response.status_code)

        with trio.move_on_after(spec.warmup + spec.duration + 15):
            async with trio.open_nursery() as nursery:
                for _ in range(spec.concurrency):
                    nursery.start_soon(task)
    return load.finish()


async def _aiohttp_load(spec: BaselineSpec) -> BaselineResult:
    """``spec.concurrency`` asyncio tasks sharing one ``aiohttp.ClientSession``."""
    import aiohttp

    load = _BaselineLoad(spec)
    connector = aiohttp.TCPConnector(limit=spec.concurrency)
    timeout = aiohttp.ClientTimeout(total=10.0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def task() -> None:
            while (headers := load.next_headers()) is not None:
                try:
                    async with session.post(spec.url, data=spec.body, headers=headers) as response:
                        await response.read()
                        load.done(response.status)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    load.done(None, type(exc).__name__)

        tasks = [asyncio.create_task(task()) for _ in range(spec.concurrency)]
        await asyncio.wait(tasks, timeout=spec.warmup + spec.duration + 15)
        for pending in tasks:
            pending.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return load.finish()


async def _raw_load(spec: BaselineSpec) -> BaselineResult:
    """``spec.concurrency`` trio tasks sharing the engine's ConnectionPool: no journal, no
    templates, no queues; the same requests, the same keep-alive connections."""
    import trio

    from engine.http.client import ConnectionPool, HttpClientError, Origin

    load = _BaselineLoad(spec)
    url = urlsplit(spec.url)
    assert url.hostname is not None and url.port is not None
    pool = ConnectionPool(
        Origin("http", url.hostname, url.port),
        address=url.hostname,
        max_connections=spec.concurrency,
    )

    async def task() -> None:
        while (headers := load.next_headers()) is not None:
            try:
                response = await pool.request(
                    "POST", url.path, list(headers.items()), spec.body, timeout=10.0
                )
            except HttpClientError as exc:
                load.done(None, type(exc).__name__)
                continue
            load.done(response.status)

    with trio.move_on_after(spec.warmup + spec.duration + 15):
        async with trio.open_nursery() as nursery:
            for _ in range(spec.concurrency):
                nursery.start_soon(task)
    await pool.aclose()
    return load.finish()


def _baseline_worker(spec: BaselineSpec, control: Connection) -> None:
    """A baseline client process: run the load, report the result."""
    if spec.kind in ("httpx", "raw"):
        import trio

        result = trio.run(_httpx_load if spec.kind == "httpx" else _raw_load, spec)
    else:
        result = asyncio.run(_aiohttp_load(spec))
    control.send(("done", result))


def run_baseline(spec: BaselineSpec) -> BaselineResult:
    """One baseline in its own process, bounded in time."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_baseline_worker, args=(spec, child), daemon=True)
    process.start()
    child.close()
    try:
        result: BaselineResult = receive(
            process, parent, READY_TIMEOUT + spec.warmup + spec.duration + 30
        )[1]
        return result
    finally:
        join([(process, parent)])


def _baseline_body() -> bytes:
    """What the engine sends for one event with the default fields (one timestamp in data)."""
    return urlencode(
        {
            "event": "bench/0/x",
            "data": f"{time.monotonic():.6f}",
            "coreid": "api",
            "published_at": "2026-01-01T00:00:00.000Z",
        }
    ).encode()


def measure_baselines(
    args: argparse.Namespace, report: Report, receiver: Receiver, kinds: list[str]
) -> dict[str, float]:
    rates: dict[str, float] = {}
    url = f"http://{HOST}:{receiver.ports[0]}/d0/h0"
    for kind in kinds:
        spec = BaselineSpec(
            kind,
            url,
            _baseline_body(),
            concurrency=args.baseline_concurrency,
            duration=args.baseline_duration,
            warmup=args.warmup,
        )
        receiver.reset()
        try:
            result = run_baseline(spec)
        except (RuntimeError, OSError) as exc:
            report.note(f"baseline {kind} did not run: {exc}")
            continue
        received, unique, _ = receiver.count()
        title = {
            "httpx": f"baseline: httpx.AsyncClient on trio, {spec.concurrency} tasks",
            "aiohttp": f"baseline: aiohttp.ClientSession on asyncio, {spec.concurrency} tasks",
            "raw": f"ceiling: the engine's HTTP client alone (trio + httptools), "
            f"{spec.concurrency} tasks",
        }[kind]
        report.section(title)
        report.row("requests/s", result.per_second, "", key=f"baseline.{kind}.per_second")
        report.row("200 answers in window", result.ok, "", key=f"baseline.{kind}.ok")
        report.row("receiver got (warmup included)", f"{received:,} ({unique:,} unique ids)")
        report.row("errors", sum(result.errors.values()), "", key=f"baseline.{kind}.errors")
        for reason, count in sorted(result.errors.items()):
            report.row(f"  {reason}", count)
        if result.window > 0:
            report.row(
                "client CPU",
                100 * result.cpu / result.window,
                "% of a core",
                key=f"baseline.{kind}.client_cpu_pct",
            )
        rates[kind] = result.per_second
    return rates
