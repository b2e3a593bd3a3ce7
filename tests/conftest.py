"""Shared fixtures: a config with known tokens, an engine served on a loopback port, and a
real redis-server (tests/redis_server.py: ``redis_server``, ``redis_url``, ``redis_db``)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from engine.config.settings import Config
from engine.daemon import Engine
from engine.hooks import load_config
from tests.redis_server import redis_db, redis_server, redis_url  # noqa: F401  (fixtures)

ADMIN = "hw_test_admin_token_0123456789"
PUBLISHER = "hw_test_publisher_token_0123456789"
SUBSCRIBER = "hw_test_subscriber_token_0123456789"
PRODUCT_ONLY = "hw_test_product_token_0123456789"
DEVICE_ONLY = "hw_test_device_token_0123456789"

PRODUCT_ID = 1001
OTHER_PRODUCT_ID = 2002


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


BASE_CONFIG = f"""
[server]
host = "127.0.0.1"
port = 0

[log]
level = "warning"

[[auth.tokens]]
name = "admin"
sha256 = "{sha(ADMIN)}"
scopes = ["publish", "subscribe", "admin"]

[[auth.tokens]]
name = "publisher"
sha256 = "{sha(PUBLISHER)}"
scopes = ["publish"]

[[auth.tokens]]
name = "subscriber"
sha256 = "{sha(SUBSCRIBER)}"
scopes = ["subscribe"]

[[auth.tokens]]
name = "product-only"
sha256 = "{sha(PRODUCT_ONLY)}"
scopes = ["publish", "subscribe"]
products = [{PRODUCT_ID}]

[[auth.tokens]]
name = "device-only"
sha256 = "{sha(DEVICE_ONLY)}"
scopes = ["subscribe"]
devices = ["0123456789abcdef01234567"]

[[products]]
id = {PRODUCT_ID}
slug = "thermostat"

[[products]]
id = {OTHER_PRODUCT_ID}

[journal]
backend = "memory"
"""

WriteConfig = Callable[..., Config]


def in_process(config: Config) -> Config:
    """``config`` with deliveries in the test's own process (``[delivery] workers = 0``), so
    tests can look inside the dispatcher and run it under trio's MockClock; tests of the
    worker processes say ``workers`` in their config."""
    delivery = dataclasses.replace(config.delivery, workers=0)
    return dataclasses.replace(config, delivery=delivery)


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    """Write BASE_CONFIG plus extra TOML to a file and load it."""

    def write(extra: str = "", *, replace: dict[str, str] | None = None) -> Config:
        text = BASE_CONFIG
        for old, new in (replace or {}).items():
            assert old in text
            text = text.replace(old, new)
        path = tmp_path / "engine.toml"
        path.write_text(text + extra)
        return in_process(load_config(path)) if "workers" not in extra else load_config(path)

    return write


@pytest.fixture
def config(write_config: WriteConfig) -> Config:
    return write_config()


@dataclass
class Served:
    engine: Engine
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@pytest.fixture
async def served(config: Config, nursery: trio.Nursery) -> AsyncIterator[Served]:
    """An engine serving the API on a free loopback port."""
    engine = Engine(config)
    [(host, port), *_] = await nursery.start(engine.run)
    yield Served(engine, host, port)
    nursery.cancel_scope.cancel()
