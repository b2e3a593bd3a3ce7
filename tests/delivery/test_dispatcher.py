"""Deliveries end to end against real loopback servers: the contract's outcomes, one by one."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import pytest
import trio
from standardwebhooks.webhooks import Webhook

from engine.config.settings import Config
from engine.core.model import Event
from engine.daemon import Engine
from tests.conftest import WriteConfig
from tests.helpers import publish_direct, wait_until
from tests.http.sink import Reply, Sink

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
DEVICE = "0123456789abcdef01234567"


@dataclass
class Setup:
    engine: Engine
    sink: Sink

    @property
    def journal(self):  # type: ignore[no-untyped-def]
        return self.engine.journal

    def internal(self, prefix: str) -> list[Event]:
        return [e for e in self.journal.recent() if e.name.startswith(prefix)]


def hook_config(url: str, extra: str = "", allow: str = '"127.0.0.0/8"') -> str:
    return (
        f"\n[delivery]\nallow_networks = [{allow}]\n"
        f'\n[[hooks]]\nname = "main"\nevent = "temp"\nurl = "{url}"\n{extra}\n'
    )


@pytest.fixture
async def start(write_config: WriteConfig, nursery: trio.Nursery) -> AsyncIterator[object]:
    async def start(
        extra: str = "", sink: Sink | None = None, url: str | None = None, allow: str | None = None
    ) -> Setup:
        sink = sink or Sink()
        await nursery.start(sink.serve)
        config: Config = write_config(
            hook_config(
                url or sink.url + "/hook", extra, allow if allow is not None else '"127.0.0.0/8"'
            )
        )
        engine = Engine(config)
        await nursery.start(engine.run)
        return Setup(engine, sink)

    yield start
    nursery.cancel_scope.cancel()


async def test_a_delivery_its_request_and_the_response_back_to_the_device(start) -> None:
    setup = await start(
        f'json = {{ value = "{{{{{{temp}}}}}}" }}\ntyped_json = true\nsecret = "{SECRET}"',
        Sink(Reply(200, b'{"ok":true,"n":1}')),
    )
    event = await publish_direct(setup.engine, "temp", '{"temp":21.5}', device=DEVICE)
    await wait_until(lambda: len(setup.internal("hook-response/")) == 1)
    [request] = setup.sink.requests
    assert request.method == "POST" and request.target == "/hook"
    body = orjson.loads(request.body)
    assert body == {
        "event": "temp",
        "data": '{"temp":21.5}',
        "coreid": DEVICE,
        "published_at": event.published_at,
        "value": 21.5,
    }
    headers = {k.decode(): v.decode() for k, v in request.headers}
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("Hookwire/")
    # The reference implementation accepts our signature.
    Webhook(SECRET).verify(request.body, headers)
    [response] = setup.internal("hook-response/")
    assert (response.name, response.data) == ("hook-response/temp/0", '{"ok":true,"n":1}')
    assert response.device_id == "trackle-internal"
    assert [e.name for e in setup.internal("hook-sent/")] == ["hook-sent/temp"]
    assert [(d, e.name) for d, e in setup.engine.downlink.sent] == [
        (DEVICE, "hook-response/temp/0")
    ]
    [attempt] = setup.journal.attempts
    assert (attempt.status, attempt.reason, attempt.number) == (200, "200", 1)


async def test_a_signed_request_carries_each_webhook_header_once(start) -> None:
    setup = await start(f'secret = "{SECRET}"')
    await publish_direct(setup.engine, "temp", "21.5", device=DEVICE)
    await wait_until(lambda: len(setup.sink.requests) == 1)
    names = [name for name, _ in setup.sink.requests[0].headers]
    for name in (b"webhook-id", b"webhook-timestamp", b"webhook-signature"):
        assert names.count(name) == 1, names


async def test_big_responses_go_back_in_512_byte_chunks(start) -> None:
    body = json.dumps({"text": "é" * 700}).encode()
    setup = await start('responseTemplate = "{{{text}}}"', Sink(Reply(200, body)))
    await publish_direct(setup.engine, "temp", "", device=DEVICE)
    await wait_until(lambda: len(setup.internal("hook-response/")) == 3)
    chunks = setup.internal("hook-response/")
    assert [c.name for c in chunks] == [f"hook-response/temp/{i}" for i in range(3)]
    assert "".join(c.data for c in chunks) == "é" * 700
    assert all(len(c.data.encode()) <= 512 for c in chunks)


async def test_the_same_webhook_id_on_every_attempt(
    start, autojump_clock: trio.testing.MockClock
) -> None:
    setup = await start('retry = ["1s", "1s"]')
    setup.sink.script(Reply(500), Reply(503))
    await publish_direct(setup.engine, "temp", "", device=DEVICE)
    await wait_until(lambda: len(setup.sink.requests) == 3, within=30)
    ids = {r.header(b"webhook-id") for r in setup.sink.requests}
    assert len(ids) == 1
    await wait_until(
        lambda: len(setup.internal("hook-response/")) == 0 and len(setup.journal.attempts) == 3
    )
    assert [a.status for a in setup.journal.attempts] == [500, 503, 200]


def refused_port() -> int:
    """A loopback port with nobody listening."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("behaviour", "extra", "reason"),
    [
        ("reset", "", "from 127.0.0.1"),
        ("garbage", "", "from 127.0.0.1"),
        ("endless", 'timeout = "5s"', "timeout after 5 s from 127.0.0.1"),
        ("silent", 'timeout = "5s"', "timeout after 5 s from 127.0.0.1"),
        (Reply(500), "", "error status 500 from 127.0.0.1"),
        (Reply(404), "", "error status 404 from 127.0.0.1"),
        (Reply(302, headers=(("location", "/x"),)), "", "error status 302 from 127.0.0.1"),
    ],
)
async def test_failures_end_as_the_contract_says(
    start, autojump_clock: trio.testing.MockClock, behaviour, extra: str, reason: str
) -> None:
    setup = await start(f"retry = []\n{extra}", Sink(behaviour))
    await publish_direct(setup.engine, "temp", "", device=DEVICE)
    await wait_until(lambda: len(setup.internal("hook-error/")) == 1, within=60)
    [attempt] = setup.journal.attempts
    assert reason in attempt.reason
    [error] = setup.internal("hook-error/")
    assert error.name == "hook-error/temp/0"
    assert reason in error.data
    assert [d for d, _ in setup.engine.downlink.sent] == [DEVICE]
    assert [d.state for d in setup.journal.dead_letters] == ["dead"]
    # The request was written in every case here: hook-sent says so, answer or not.
    assert [e.name for e in setup.internal("hook-sent/")] == ["hook-sent/temp"]


async def test_connection_refused(start, autojump_clock: trio.testing.MockClock) -> None:
    setup = await start("retry = []", url=f"http://127.0.0.1:{refused_port()}/hook")
    await publish_direct(setup.engine, "temp", "", device=DEVICE)
    await wait_until(lambda: len(setup.internal("hook-error/")) == 1, within=60)
    [attempt] = setup.journal.attempts
    assert attempt.status is None
    assert "refused" in attempt.reason.lower()
    assert setup.internal("hook-sent/") == []  # nothing was sent


async def test_retry_after_is_honoured(start, autojump_clock: trio.testing.MockClock) -> None:
    setup = await start('retry = ["1s", "1s"]')
    setup.sink.script(Reply(429, headers=(("retry-after", "120"),)))
    await publish_direct(setup.engine, "temp", "", device=DEVICE)
    started = trio.current_time()
    await wait_until(lambda: len(setup.sink.requests) == 2, within=300)
    assert trio.current_time() - started >= 120
    await wait_until(
        lambda: len(setup.internal("hook-response/")) == 0 and len(setup.journal.attempts) == 2
    )
    assert [a.status for a in setup.journal.attempts] == [429, 200]


async def test_410_disables_the_hook(start, autojump_clock: trio.testing.MockClock) -> None:
    setup = await start("", Sink(Reply(410)))
    await publish_direct(setup.engine, "temp", "", device=DEVICE)
    await wait_until(lambda: len(setup.internal("hook-error/")) == 1, within=60)
    assert setup.engine.dispatcher.hooks.is_disabled("main")
    await publish_direct(setup.engine, "temp", "", device=DEVICE)
    await trio.sleep(10)
    assert len(setup.sink.requests) == 1


@pytest.mark.parametrize(
    ("extra", "data", "reason"),
    [
        ("json = '{\"v\": {{{v}}}}'", '{"v":"not json"}', "rendered json is not valid JSON"),
        ('headers = { "X-V" = "{{{v}}}" }', '{"v":"a\\r\\nInjected: 1"}', 'variable "v"'),
    ],
)
async def test_requests_that_cannot_be_built_are_permanent_failures(
    start, extra: str, data: str, reason: str
) -> None:
    setup = await start(extra)
    await publish_direct(setup.engine, "temp", data, device=DEVICE)
    await wait_until(lambda: len(setup.internal("hook-error/")) == 1)
    [attempt] = setup.journal.attempts
    assert reason in attempt.reason
    assert setup.sink.requests == []


async def test_private_address_is_refused(start) -> None:
    setup = await start("", allow="")
    await publish_direct(setup.engine, "temp", "", device=DEVICE)
    await wait_until(lambda: len(setup.internal("hook-error/")) == 1)
    [attempt] = setup.journal.attempts
    assert "127.0.0.1" in attempt.reason and "allow_networks" in attempt.reason
    assert setup.sink.requests == []


async def test_unresolvable_name(start, autojump_clock: trio.testing.MockClock) -> None:
    setup = await start("retry = []", url="http://no-such-host.invalid/hook")
    await publish_direct(setup.engine, "temp", "", device=DEVICE)
    await wait_until(lambda: len(setup.internal("hook-error/")) == 1, within=60)
    [attempt] = setup.journal.attempts
    assert "cannot resolve no-such-host.invalid" in attempt.reason


@pytest.fixture(scope="module")
def certificate_authority():  # type: ignore[no-untyped-def]
    import trustme

    return trustme.CA()


def tls_sink(ca, name: str) -> Sink:  # type: ignore[no-untyped-def]
    import ssl

    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(server_context)
    return Sink(Reply(200, b"secure"), ssl_context=server_context)


@pytest.mark.parametrize(
    ("name", "extra", "ok"),
    [
        ("127.0.0.1", "", True),
        ("other.example", "retry = []", False),
        ("other.example", "rejectUnauthorized = false", True),
    ],
)
async def test_tls_certificates_are_checked_unless_told_not_to(
    write_config: WriteConfig, nursery: trio.Nursery, certificate_authority, name, extra, ok
) -> None:
    import ssl

    sink = tls_sink(certificate_authority, name)
    await nursery.start(sink.serve)
    client_context = ssl.create_default_context()
    certificate_authority.configure_trust(client_context)
    engine = Engine(
        write_config(hook_config(sink.url + "/hook", extra)), ssl_context=client_context
    )
    await nursery.start(engine.run)
    setup = Setup(engine, sink)
    await publish_direct(engine, "temp", "", device=DEVICE)
    if ok:
        await wait_until(lambda: len(setup.internal("hook-response/")) == 1)
        assert setup.internal("hook-response/")[0].data == "secure"
    else:
        await wait_until(lambda: len(setup.internal("hook-error/")) == 1)
        [attempt] = setup.journal.attempts
        assert "certificate" in attempt.reason
    nursery.cancel_scope.cancel()


async def test_a_dead_destination_does_not_hold_up_a_healthy_one(
    write_config: WriteConfig, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    healthy, dead = Sink(), Sink("silent")
    for sink in (healthy, dead):
        await nursery.start(sink.serve)
    config = write_config(
        '\n[delivery]\nallow_networks = ["127.0.0.0/8"]\n'
        f'\n[[hooks]]\nname = "dead"\nevent = "temp"\nurl = "{dead.url}/"\ntimeout = "20s"\n'
        f'\n[[hooks]]\nname = "healthy"\nevent = "temp"\nurl = "{healthy.url}/"\n'
    )
    engine = Engine(config)
    await nursery.start(engine.run)
    started = trio.current_time()
    for n in range(50):
        await publish_direct(engine, "temp", str(n), device=DEVICE)
    await wait_until(lambda: len(healthy.requests) == 50, within=5)
    assert trio.current_time() - started < 1  # virtual time: no waiting on the dead one
    assert dead.max_in_flight <= 16
    nursery.cancel_scope.cancel()


async def test_ordered_hooks_deliver_one_at_a_time_in_order(
    start, autojump_clock: trio.testing.MockClock
) -> None:
    setup = await start('ordered = true\nretry = ["1s", "1s", "1s"]')
    setup.sink.script(Reply(503), Reply(503))  # the first event needs three attempts
    for n in range(5):
        await publish_direct(setup.engine, "temp", str(n), device=DEVICE)
    await wait_until(lambda: len(setup.sink.requests) == 7, within=60)
    sent = [
        dict(kv.split("=") for kv in r.body.decode().split("&"))["data"]
        for r in setup.sink.requests
    ]
    assert sent == ["0", "0", "0", "1", "2", "3", "4"]
    assert setup.sink.max_in_flight == 1


async def test_breaker_opens_waits_and_probes(
    start, autojump_clock: trio.testing.MockClock
) -> None:
    setup = await start(
        'retry = ["1s", "1s", "1s", "1s", "1s", "1s", "1s", "1s"]', Sink(Reply(500))
    )
    for n in range(5):
        await publish_direct(setup.engine, "temp", str(n), device=DEVICE)
    await wait_until(
        lambda: any("Sleeping" in e.data for e in setup.internal("hook-error/")), within=60
    )
    destination = setup.engine.dispatcher.destinations[0]
    assert destination.breaker.state.name == "OPEN"
    seen = len(setup.sink.requests)
    await trio.sleep(4)  # within the 5 s cooldown: nothing is sent
    assert len(setup.sink.requests) == seen
    setup.sink.behaviour = Reply(200)
    await wait_until(
        lambda: len([a for a in setup.journal.attempts if a.status == 200]) == 5, within=120
    )
    assert destination.breaker.state.name == "CLOSED"
    sleeping = [e for e in setup.internal("hook-error/") if "Sleeping" in e.data]
    assert len(sleeping) == 1


async def test_metrics_report_deliveries_attempts_and_destinations(start) -> None:
    setup = await start("")
    await publish_direct(setup.engine, "temp", "", device=DEVICE)
    await wait_until(
        lambda: len(setup.internal("hook-response/")) + len(setup.journal.attempts) >= 1
    )
    await wait_until(lambda: len(setup.journal.attempts) == 1)
    text = setup.engine.metrics.render().decode()
    assert 'hookwire_deliveries_total{hook="main",outcome="delivered"} 1.0' in text
    assert 'hookwire_delivery_attempts_total{status_class="2xx"} 1.0' in text
    assert "hookwire_delivery_latency_seconds_count 1.0" in text
    destination = f'destination="http://127.0.0.1:{setup.sink.port}"'
    assert f"hookwire_destination_queue_depth{{{destination}}} 0.0" in text
    assert f"hookwire_destination_in_flight{{{destination}}} 0.0" in text
    assert f"hookwire_destination_breaker_state{{{destination}}} 0.0" in text


async def test_a_hooks_rate_limits_its_requests(
    start, autojump_clock: trio.testing.MockClock
) -> None:
    times: list[float] = []

    def answer(request):  # type: ignore[no-untyped-def]
        times.append(trio.current_time())
        return Reply(200)

    setup = await start("rate = 2\nburst = 1", Sink(answer))
    for n in range(5):
        await publish_direct(setup.engine, "temp", str(n), device=DEVICE)
    await wait_until(lambda: len(times) == 5, within=60)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(gap >= 0.49 for gap in gaps), gaps


async def test_released_hooks_queued_deliveries_are_dropped_unsent(
    start, autojump_clock: trio.testing.MockClock
) -> None:
    # Cluster mode: a node that gives up a partition drops that hook's queued deliveries
    # (another node sends them); the attempt in flight ends as it may, recorded.
    setup = await start("ordered = true")
    setup.sink.script(Reply(200, delay=5))
    for n in range(4):
        await publish_direct(setup.engine, "temp", str(n), device=DEVICE)
    await wait_until(lambda: setup.sink.in_flight == 1, within=10)
    sender = setup.engine.deliveries.sender
    await sender.release({"main"})
    await trio.sleep(30)
    assert [r.body.decode().split("data=")[1].split("&")[0] for r in setup.sink.requests] == ["0"]
    assert sender.drop({"main"}) == []  # nothing left to drop
