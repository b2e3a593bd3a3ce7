"""TLS on the HTTP server: the context from a PEM pair, handshakes that fail or stall."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing
import trustme
from cryptography.hazmat.primitives import serialization

from engine.config.settings import LimitsConfig
from engine.http.h1 import Request
from engine.http.server import HttpServer, Response
from engine.http.tls import HTTP_ALPN, TlsError, server_context
from tests.helpers import wait_until
from tests.tls_pair import TlsFiles, write_tls_files

LIMITS = LimitsConfig(idle_timeout=60, request_timeout=10)


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return write_tls_files(tmp_path / "tls")


async def hello(request: Request) -> Response:
    await trio.lowlevel.checkpoint()
    return Response(
        200, f"{request.method} {request.target}".encode(), [("content-type", "text/plain")]
    )


# --- the context ---------------------------------------------------------------------------


def test_a_good_pair_gives_a_tls12_server_context(tls: TlsFiles) -> None:
    context = server_context(tls.cert, tls.key, alpn=HTTP_ALPN)
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE  # no client certificates asked


def test_a_key_of_another_certificate_names_both_files(tls: TlsFiles, tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    trustme.CA().issue_cert("127.0.0.1").private_key_pem.write_to_path(str(other))
    with pytest.raises(TlsError) as caught:
        server_context(tls.cert, other)
    assert caught.value.setting == "tls_key"
    assert str(caught.value) == f"{other} is not the private key of the certificate in {tls.cert}"


@pytest.mark.parametrize(
    ("which", "content", "setting", "says"),
    [
        ("cert", "hello\n", "tls_cert", "holds no PEM certificate"),
        ("cert", "", "tls_cert", "holds no PEM certificate"),
        ("key", "hello\n", "tls_key", "holds no PEM private key"),
        ("key", None, "tls_key", "holds no PEM private key"),  # the certificate, as the key
    ],
)
def test_a_file_that_is_not_what_it_should_be_is_named(
    tls: TlsFiles, which: str, content: str | None, setting: str, says: str
) -> None:
    path = tls.cert if which == "cert" else tls.key
    path.write_text(tls.cert.read_text() if content is None else content)
    with pytest.raises(TlsError) as caught:
        server_context(tls.cert, tls.key)
    assert (caught.value.setting, str(caught.value)) == (setting, f"{path} {says}")
    assert "\n" not in str(caught.value)


def test_an_encrypted_key_is_refused_without_a_prompt(tls: TlsFiles) -> None:
    key = serialization.load_pem_private_key(tls.key.read_bytes(), None)
    tls.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(TlsError, match="is encrypted: give the key without a passphrase"):
        server_context(tls.cert, tls.key)


def test_a_file_gone_since_the_config_was_read_is_named(tls: TlsFiles) -> None:
    tls.key.unlink()
    with pytest.raises(TlsError) as caught:
        server_context(tls.cert, tls.key)
    assert str(caught.value) == f"cannot read {tls.key}: No such file or directory"


# --- the server ----------------------------------------------------------------------------


@pytest.fixture
async def served(tls: TlsFiles, nursery: trio.Nursery) -> AsyncIterator[tuple[HttpServer, int]]:
    server = HttpServer(hello, LIMITS, tls=server_context(tls.cert, tls.key, alpn=HTTP_ALPN))
    [(_, port), *_] = await nursery.start(server.serve, "127.0.0.1", 0)
    yield server, port
    server.shutdown()


async def test_https_requests_are_answered_on_one_connection(
    served: tuple[HttpServer, int], tls: TlsFiles
) -> None:
    server, port = served
    assert server.scheme == "https"
    base = f"https://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, verify=tls.client_context()) as client:
        for path in ("/a", "/b"):
            response = await client.get(path)
            assert (response.status_code, response.text) == (200, f"GET {path}")
            assert response.http_version == "HTTP/1.1"
    await wait_until(lambda: repr(server) == "<HttpServer serving connections=0 tls_failures=0>")


async def test_plain_http_to_the_tls_port_gets_a_plain_400_and_others_are_served(
    served: tuple[HttpServer, int], tls: TlsFiles
) -> None:
    server, port = served
    async with httpx.AsyncClient() as plain:
        response = await plain.get(f"http://127.0.0.1:{port}/a")
    assert response.status_code == 400
    assert response.json()["error"] == "this port speaks HTTPS: use https://"
    assert server.tls_failures == 1
    async with httpx.AsyncClient(verify=tls.client_context()) as client:
        assert (await client.get(f"https://127.0.0.1:{port}/b")).text == "GET /b"


async def test_a_client_that_does_not_trust_the_certificate_is_turned_away_cleanly(
    served: tuple[HttpServer, int], tls: TlsFiles
) -> None:
    server, port = served
    async with httpx.AsyncClient(verify=ssl.create_default_context()) as stranger:
        with pytest.raises(httpx.ConnectError):
            await stranger.get(f"https://127.0.0.1:{port}/")
    await wait_until(lambda: server.tls_failures == 1)
    async with httpx.AsyncClient(verify=tls.client_context()) as client:
        assert (await client.get(f"https://127.0.0.1:{port}/c")).text == "GET /c"


@pytest.mark.parametrize("sent", [b"", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"])
async def test_a_handshake_that_never_ends_is_cut_at_the_request_timeout(
    tls: TlsFiles, autojump_clock: trio.testing.MockClock, sent: bytes
) -> None:
    server = HttpServer(hello, LIMITS, tls=server_context(tls.cert, tls.key))
    client, server_side = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_connection, server_side)
        await client.send_all(sent)  # nothing, or the start of a ClientHello, then silence
        await trio.testing.wait_all_tasks_blocked()
        assert repr(server) == "<HttpServer serving connections=1 tls_failures=0>"
        started = trio.current_time()
        assert await client.receive_some(1024) == b""  # closed by the server
        assert trio.current_time() - started == pytest.approx(LIMITS.request_timeout)
    assert repr(server) == "<HttpServer serving connections=0 tls_failures=1>"


async def test_shutdown_ends_a_handshake_in_progress_without_counting_it(tls: TlsFiles) -> None:
    server = HttpServer(hello, LIMITS, tls=server_context(tls.cert, tls.key))
    _client, server_side = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_connection, server_side)
        await trio.testing.wait_all_tasks_blocked()
        server.shutdown()
    assert repr(server) == "<HttpServer closing connections=0 tls_failures=0>"


async def test_without_tls_the_server_says_http() -> None:
    server = HttpServer(hello, LIMITS)
    assert (server.scheme, repr(server)) == ("http", "<HttpServer serving connections=0>")
