"""The delivery scheduler under random outcomes (hypothesis, on trio's MockClock).

A fake transport answers each attempt from a drawn script (a status or a timeout, after
a drawn latency) while the real dispatcher, destinations, breaker and retry schedule run.
Invariants checked on every run:
- no delivery is lost: each ends delivered or dead, after at most the schedule's attempts;
- nothing is sent while the breaker is open (a half-open probe is allowed);
- at most ``max_in_flight`` attempts are in flight at once;
- an ordered hook sends one at a time per device, in publish order.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config.settings import load_config
from engine.core.model import EventDraft
from engine.daemon import Engine
from engine.delivery.breaker import BreakerState
from engine.http.client import Origin, ReadTimeout, Response
from tests.conftest import in_process

RETRIES = 3


@dataclass
class Script:
    outcomes: list[int | None]  # a status, or None for a timeout
    latencies: list[float]
    capacity: int
    ordered: bool
    devices: int
    events: int


@dataclass
class FakeTransport:
    """Answers from the script; records what the invariants need."""

    script: Script
    engine: Engine | None = None
    address: str = "127.0.0.1"
    calls: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    sent_while_open: int = 0
    log: list[tuple[str, str, float, float, int | None]] = field(default_factory=list)

    async def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes = b"",
        *,
        timeout: float,  # noqa: ASYNC109
        on_sent: Callable[[], object] | None = None,
    ) -> Response:
        assert self.engine is not None
        if on_sent is not None:
            on_sent()
        [destination] = self.engine.dispatcher.destinations
        if destination.breaker.state is BreakerState.OPEN:
            self.sent_while_open += 1
        n = self.calls
        self.calls += 1
        outcome = self.script.outcomes[n % len(self.script.outcomes)]
        latency = self.script.latencies[n % len(self.script.latencies)]
        started = trio.current_time()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await trio.sleep(min(latency, timeout))
        finally:
            self.in_flight -= 1
        headers_map = dict(headers)
        device = target.rsplit("/", 1)[-1]
        self.log.append((headers_map["webhook-id"], device, started, trio.current_time(), outcome))
        if outcome is None:
            raise ReadTimeout(f"timeout after {timeout:g} s")
        return Response(outcome, [], b"", False)

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def config_text(script: Script) -> str:
    retry = ", ".join('"1s"' for _ in range(RETRIES))
    return f"""
[server]
port = 0
[journal]
backend = "memory"
[delivery]
allow_networks = ["127.0.0.0/8"]
[[hooks]]
name = "h"
event = "temp"
url = "http://127.0.0.1:9/d/{{{{{{TRACKLE_DEVICE_ID}}}}}}"
max_in_flight = {script.capacity}
ordered = {"true" if script.ordered else "false"}
retry = [{retry}]
timeout = "2s"
"""


def run(script: Script, folder: Path) -> tuple[FakeTransport, Engine]:
    path = folder / "engine.toml"
    path.write_text(config_text(script))
    transport = FakeTransport(script)

    def open_transport(origin: Origin, address: str, capacity: int, verify: bool) -> FakeTransport:
        return transport

    engine = Engine(in_process(load_config(path)))
    engine.dispatcher._open_transport = open_transport
    engine.dispatcher._rng = random.Random(0)
    transport.engine = engine

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(engine.run)
            for n in range(script.events):
                device = f"dev{n % script.devices}"
                draft = EventDraft("temp", str(n), 60, False, "t", device, None)
                await engine.journal.append(draft)
            # Everything settles within the schedule and breaker cooldowns (virtual time).
            with trio.move_on_after(24 * 3600):
                # (virtual seconds: the MockClock jumps while everything waits)
                while len(finished(engine)) < script.events:  # noqa: ASYNC110
                    await trio.sleep(1)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return transport, engine


def finished(engine: Engine) -> dict[str, str]:
    states: dict[str, str] = {}
    for attempt in engine.journal.attempts:  # type: ignore[attr-defined]
        states[attempt.delivery_id] = attempt.reason
    done = {d.id for d in engine.journal.dead_letters}  # type: ignore[attr-defined]
    for attempt in engine.journal.attempts:  # type: ignore[attr-defined]
        if attempt.status is not None and 200 <= attempt.status < 300:
            done.add(attempt.delivery_id)
    return {k: v for k, v in states.items() if k in done}


scripts = st.builds(
    Script,
    outcomes=st.lists(
        st.sampled_from([200, 200, 200, 500, 503, 429, 404, None]), min_size=1, max_size=12
    ),
    latencies=st.lists(st.sampled_from([0.001, 0.01, 0.5, 3.0]), min_size=1, max_size=5),
    capacity=st.integers(1, 4),
    ordered=st.booleans(),
    devices=st.integers(1, 3),
    events=st.integers(1, 15),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scripts)
def test_scheduler_invariants(tmp_path_factory, script: Script) -> None:  # type: ignore[no-untyped-def]
    transport, engine = run(script, tmp_path_factory.mktemp("sched"))
    # No delivery lost: every event's delivery finished.
    assert len(finished(engine)) == script.events
    attempts = Counter(a.delivery_id for a in engine.journal.attempts)  # type: ignore[attr-defined]
    assert max(attempts.values()) <= RETRIES + 1
    assert transport.sent_while_open == 0
    assert transport.max_in_flight <= script.capacity
    if script.ordered:
        by_device: dict[str, list[tuple[str, float, float]]] = {}
        for delivery_id, device, start, end, _ in transport.log:
            by_device.setdefault(device, []).append((delivery_id, start, end))
        for sends in by_device.values():
            sends.sort(key=lambda s: s[1])
            # One at a time: each send starts after the previous one ended.
            for before, after in itertools.pairwise(sends):
                assert after[1] >= before[2]
            # In publish order: a delivery never comes back after a later one started.
            order = [delivery_id for delivery_id, _, _ in sends]
            firsts = list(dict.fromkeys(order))
            assert order == sorted(order, key=firsts.index)
            assert firsts == sorted(firsts, key=lambda i: int(i.split("_")[2], 16))
