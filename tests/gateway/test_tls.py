"""The gateway channel over TLS: ``[gateway] tls`` on the TCP listener, the client's cafile."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from engine.config.settings import ConfigError
from engine.daemon import Engine
from engine.gateway.client import GatewayRefused, open_gateway
from engine.gateway.hub import HELLO_TIMEOUT, GatewayHub
from tests.conftest import WriteConfig
from tests.gateway.test_hub import DEVICE, GATEWAY, GATEWAY_TOKEN
from tests.helpers import wait_until
from tests.tls_pair import TlsFiles, write_tls_files

Start = Callable[..., Awaitable[tuple[Engine, GatewayHub]]]


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return write_tls_files(tmp_path / "tls")


def gateway_config(tmp_path: Path, tls: TlsFiles) -> tuple[str, dict[str, str]]:
    extra = f"""
{GATEWAY_TOKEN}
[gateway]
tcp = "127.0.0.1:0"
tls = true
unix = "{tmp_path / "gw.sock"}"
"""
    return extra, {"port = 0\n": f"port = 0\n{tls.toml()}"}


@pytest.fixture
async def start(
    write_config: WriteConfig, tmp_path: Path, tls: TlsFiles, nursery: trio.Nursery
) -> AsyncIterator[Start]:
    async def start() -> tuple[Engine, GatewayHub]:
        extra, replace = gateway_config(tmp_path, tls)
        engine = Engine(write_config(extra, replace=replace))
        await nursery.start(engine.run)
        assert engine.gateway is not None
        return engine, engine.gateway

    yield start
    nursery.cancel_scope.cancel()


async def test_a_gateway_publishes_over_tls_with_the_ca_file(start: Start, tls: TlsFiles) -> None:
    engine, hub = await start()
    [tcp] = hub.tcp_addresses
    async with open_gateway(GATEWAY, tcp=tcp, cafile=tls.ca) as gateway:
        seq = await gateway.publish(DEVICE, "temp", "21.5")
        await gateway.wait_acked(seq)
    assert engine.journal.last_id() == 1
    await wait_until(lambda: repr(hub) == "<GatewayHub connections=0 tls_failures=0>")


async def test_the_unix_socket_stays_plain(start: Start, tmp_path: Path) -> None:
    engine, _ = await start()
    async with open_gateway(GATEWAY, unix=tmp_path / "gw.sock") as gateway:
        await gateway.wait_acked(await gateway.publish(DEVICE, "temp", "1"))
    assert engine.journal.last_id() == 1


async def test_a_plain_gateway_or_an_untrusting_one_is_turned_away_and_others_go_on(
    start: Start, tls: TlsFiles
) -> None:
    _, hub = await start()
    [tcp] = hub.tcp_addresses
    with pytest.raises(GatewayRefused, match="closed the connection before welcoming"):
        async with open_gateway(GATEWAY, tcp=tcp, connect_timeout=5):
            pass
    with pytest.raises(trio.BrokenResourceError) as caught:
        async with open_gateway(GATEWAY, tcp=tcp, ssl_context=ssl.create_default_context()):
            pass
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
    await wait_until(lambda: hub.tls_failures == 2)
    async with open_gateway(GATEWAY, tcp=tcp, cafile=tls.ca) as gateway:
        await gateway.wait_acked(await gateway.publish(DEVICE, "temp", "2"))


async def test_a_handshake_that_never_ends_is_cut_at_the_hello_timeout(
    write_config: WriteConfig, tmp_path: Path, tls: TlsFiles, autojump_clock: trio.testing.MockClock
) -> None:
    extra, replace = gateway_config(tmp_path, tls)
    engine = Engine(write_config(extra, replace=replace))
    hub = engine.gateway
    assert hub is not None
    client, server_side = trio.testing.memory_stream_pair()
    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub._handle_tls, server_side)
        assert await client.receive_some(1024) == b""  # the hub closed it
    assert trio.current_time() - started == pytest.approx(HELLO_TIMEOUT)
    assert hub.tls_failures == 1


def test_tls_options_need_the_tcp_listener() -> None:
    async def connect() -> None:
        async with open_gateway(GATEWAY, unix="/nowhere.sock", cafile="ca.pem"):
            pass

    with pytest.raises(ValueError, match="the Unix socket never serves it"):
        trio.run(connect)


async def test_a_bad_key_refuses_the_engine_with_one_line(
    write_config: WriteConfig, tmp_path: Path, tls: TlsFiles
) -> None:
    extra, replace = gateway_config(tmp_path, tls)
    config = write_config(extra, replace=replace)
    tls.key.write_text("not a key\n")
    with pytest.raises(ConfigError) as caught:
        Engine(config)
    assert caught.value.problems == [
        f"{config.path}: server.tls_key: {tls.key} holds no PEM private key"
    ]
