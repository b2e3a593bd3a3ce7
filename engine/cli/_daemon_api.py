"""Talking to the running daemon's API from the command line: where it is, one request to
it (the engine's own HTTP client, every wait bounded), and its answer or refusal as the
sentences ``hookwire`` prints."""

from __future__ import annotations

import argparse
import ipaddress
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import trio

from engine.cli._text import one_line
from engine.config.settings import ServerConfig
from engine.http.client import (
    ConnectError,
    ConnectionPool,
    ConnectTimeout,
    HttpClientError,
    LocalProtocolError,
    Origin,
    ReadTimeout,
    Response,
    TLSError,
)

MAX_ANSWER_BYTES = 64 * 1024 * 1024
"""The longest answer read: a list of 10,000 webhooks is about 5 MB."""

DEFAULT_URL = "http://127.0.0.1:8080"
"""The daemon's address when neither --url nor the config's [server] gives one."""

TIMEOUT = 30.0
"""Seconds for a whole command, name lookup included: a delete waits for the hook's
deliveries in flight, which take at most the delivery timeout (20 s by default)."""

EXCERPT_CHARS = 200
"""Characters shown of an answer that is not the daemon's JSON (a proxy's error page)."""

_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}
"""A daemon listening on every address is reached on loopback."""


class Stop(Exception):
    """The command ends here: ``message`` goes to stderr, ``status`` is the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Daemon:
    """Where the daemon answers, and where that address came from (for the error message)."""

    url: str
    origin: Origin
    base: str
    """The URL's path, without its trailing slash: the API's prefix behind a proxy."""
    source: str
    """Where the address came from, said in the error when the daemon is not there."""


# Where to ask


def find_daemon(url: str | None, config: str) -> Daemon:
    """The daemon's address: --url, else the config's [server], else ``DEFAULT_URL``."""
    if url is not None:
        source = "the address given by --url"
    else:
        url = _configured_url(config)
        source = f"the [server] address in {config}; --url gives another"
        if url is None:
            source = f"the default: {config} names no [server] address; --url gives another"
            url = DEFAULT_URL
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Stop(f"hookwire: --url: {exc}: {url}", 2) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Stop(
            f"hookwire: --url: expected http://HOST[:PORT] or https://HOST[:PORT], got {url}", 2
        )
    if parts.query or parts.fragment or parts.username is not None:
        raise Stop(f"hookwire: --url: expected no user, query or fragment, got {url}", 2)
    origin = Origin(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80))
    return Daemon(url.rstrip("/"), origin, parts.path.rstrip("/"), source)


def _configured_url(path: str) -> str | None:
    """``http://host:port`` of the config's [server] (``https`` with ``tls_cert``), or None
    when it gives none.

    Only [server] is read: the rest of the file may be broken, and that is when ``reload``
    must still reach the daemon, to show the problems.
    """
    try:
        with Path(path).open("rb") as file:
            data = tomllib.load(file)
    except (OSError, ValueError):  # missing, not UTF-8, not TOML
        return None
    server = data.get("server", {})
    if not isinstance(server, dict):
        return None
    defaults = ServerConfig()
    host = _setting(server.get("host", defaults.host))
    port = _setting(server.get("port", defaults.port))
    if isinstance(port, str) and port.isdecimal():
        port = int(port)
    if not isinstance(host, str) or not host or not isinstance(port, int) or not 0 < port < 65536:
        return None  # port 0: a free port, which only the daemon's log tells
    host = _WILDCARDS.get(host, host)
    scheme = "https" if server.get("tls_cert") else "http"  # TLS on the API: its URL too
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def _setting(value: object) -> object:
    """A config value, or the environment variable its ``{ env = "NAME" }`` names."""
    if isinstance(value, dict) and set(value) == {"env"} and isinstance(value["env"], str):
        return os.environ.get(value["env"])
    return value


async def _addresses(daemon: Daemon) -> list[str]:
    """The daemon host's IP addresses, in the resolver's order."""
    host = daemon.origin.host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [host]
    try:
        found = await trio.socket.getaddrinfo(
            host, daemon.origin.port, type=trio.socket.SOCK_STREAM
        )
    except OSError as exc:
        raise Stop(
            f"hookwire: cannot reach the daemon at {daemon.url}: cannot resolve {host}: "
            f"{exc.strerror or exc}; check the host name ({daemon.source})"
        ) from None
    addresses = list(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in found))
    if not addresses:
        raise Stop(f"hookwire: cannot reach the daemon at {daemon.url}: {host} has no address")
    return addresses


# Asking


async def send(
    daemon: Daemon, method: str, target: str, token: str, body: bytes, args: argparse.Namespace
) -> Response:
    """One request, all within ``args.timeout``: to the host's addresses in turn while
    connecting fails (nothing was sent then: ``localhost`` may be ::1, then 127.0.0.1)."""
    headers = [("authorization", f"Bearer {token}"), ("accept", "application/json")]
    if body:
        headers.append(("content-type", "application/json"))
    deadline = trio.current_time() + args.timeout
    addresses: list[str] = []
    with trio.move_on_after(args.timeout) as lookup:
        addresses = await _addresses(daemon)
    if lookup.cancelled_caught:
        raise _no_answer(daemon, args.timeout)
    refused: ConnectError | None = None
    for address in addresses:
        pool = ConnectionPool(daemon.origin, address=address, verify_tls=not args.insecure)
        try:
            return await pool.request(
                method,
                target,
                headers,
                body,
                timeout=max(deadline - trio.current_time(), 0.0),
                max_body=MAX_ANSWER_BYTES,
            )
        except ConnectError as exc:
            refused = exc
        except (ConnectTimeout, ReadTimeout):
            raise _no_answer(daemon, args.timeout) from None
        except TLSError as exc:
            check = "" if args.insecure else "; --insecure skips the check"
            raise Stop(f"hookwire: cannot reach the daemon at {daemon.url}: {exc}{check}") from None
        except LocalProtocolError:
            raise Stop(
                "hookwire: the token or the URL holds characters a request cannot carry", 2
            ) from None
        except HttpClientError as exc:
            raise Stop(f"hookwire: the daemon at {daemon.url}: {exc}") from None
        finally:
            await pool.aclose()
    assert refused is not None
    raise Stop(
        f"hookwire: cannot reach the daemon at {daemon.url}: {_reason(refused)}; check that "
        f"it runs (hookwire run) and listens there ({daemon.source})"
    )


def _no_answer(daemon: Daemon, timeout: float) -> Stop:
    return Stop(
        f"hookwire: no answer from the daemon at {daemon.url} within {timeout:g} s; "
        "--timeout waits longer"
    )


def _reason(exc: ConnectError) -> str:
    """Why connecting failed, in words: "connection refused"."""
    cause = exc.__cause__
    if isinstance(cause, OSError) and cause.errno:
        text = os.strerror(cause.errno)
        return text[0].lower() + text[1:]
    return str(exc)


# The answer


def answer_of(daemon: Daemon, response: Response) -> object:
    """The answer's JSON, or ``Stop`` with the daemon's sentence when it refused."""
    if response.truncated:
        raise Stop(
            f"hookwire: the answer from {daemon.url} is longer than the {MAX_ANSWER_BYTES} "
            "bytes this client reads"
        )
    try:
        answer: object = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        answer = None
    refused = isinstance(answer, dict) and answer.get("ok") is False
    if 200 <= response.status < 300 and not refused:
        if answer is None:
            raise Stop(
                f"hookwire: {response.status}: the answer from {daemon.url} is not JSON "
                f"(is the daemon there?): {excerpt(response.body)}"
            )
        return answer
    raise Stop("\n".join(_refusal(response.status, answer, response.body)))


def _refusal(status: int, answer: object, body: bytes) -> list[str]:
    """``hookwire: <status>: <sentence>``, then any further lines the answer gives."""
    if not isinstance(answer, dict):
        return [f"hookwire: {status}: {excerpt(body) or 'no description'}"]
    sentence = str(answer.get("error_description") or answer.get("error") or "no description")
    problems = answer.get("problems")
    if isinstance(problems, list) and problems:
        # A sentence that ends with the problems it lists: they are shown a line each.
        items = [str(p) for p in problems]
        joined = "; ".join(items)
        if sentence.endswith(joined):
            sentence = sentence[: -len(joined)].rstrip(": ") or "problems"
        return [f"hookwire: {status}: {sentence}:", *(f"  {item}" for item in items)]
    lines = sentence.splitlines() or [""]
    return [f"hookwire: {status}: {lines[0]}", *(f"  {line}" for line in lines[1:])]


def excerpt(body: bytes) -> str:
    return one_line(body.decode("utf-8", "replace").strip(), EXCERPT_CHARS)
