"""The server side of TLS: an ``ssl.SSLContext`` from a PEM certificate chain and its key.

The API and the gateway's TCP listener serve TLS with ``[server] tls_cert`` and ``tls_key``
(trio's ``SSLStream`` over each accepted connection). A pair that cannot serve is refused
before anything listens, with one line that names the file at fault and what is wrong with
it (``TlsError``: the daemon turns it into a config problem). Handshakes are bounded in
time by their callers: a peer that never finishes one holds nothing for long.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "HTTP_ALPN",
    "MINIMUM_VERSION",
    "PLAIN_HTTP",
    "TlsError",
    "failure_reason",
    "server_context",
]

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
"""TLS 1.0 and 1.1 are deprecated (RFC 8996); every client still in use speaks 1.2."""

PLAIN_HTTP = "HTTP_REQUEST"
"""OpenSSL's reason when a TLS port receives a plain HTTP request instead of a handshake."""

HTTP_ALPN = ("http/1.1",)
"""What the API offers in ALPN: HTTP/1.1 only, so a client never expects HTTP/2 of it."""


class TlsError(Exception):
    """A certificate or key that cannot serve TLS; ``setting`` is the one at fault
    (``tls_cert`` or ``tls_key``) and ``str()`` is one line naming its file."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


class _Encrypted(Exception):
    """Raised by the password callback: a key under a passphrase is not supported (the
    daemon must start unattended, and OpenSSL would otherwise prompt on the terminal)."""


def _no_passphrase() -> bytes:
    raise _Encrypted


def server_context(cert: Path, key: Path, *, alpn: Sequence[str] = ()) -> ssl.SSLContext:
    """A server context for the pair: TLS 1.2 or later, Python's default secure ciphers,
    no client certificates; ``alpn``: the protocols offered. Raises TlsError."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = max(context.minimum_version, MINIMUM_VERSION)
    _check_certificate(cert)
    try:
        context.load_cert_chain(cert, key, password=_no_passphrase)
    except _Encrypted:
        raise TlsError(
            "tls_key", f"{key} is encrypted: give the key without a passphrase"
        ) from None
    except OSError as exc:
        if not isinstance(exc, ssl.SSLError):
            raise TlsError("tls_key", _unreadable(key, exc)) from None
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TlsError(
                "tls_key", f"{key} is not the private key of the certificate in {cert}"
            ) from None
        raise TlsError("tls_key", f"{key} holds no PEM private key") from None
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def _check_certificate(cert: Path) -> None:
    """Whether ``cert`` holds a PEM certificate: load_cert_chain's own error ("PEM lib")
    does not say which of the two files it could not read."""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        probe.load_verify_locations(cafile=cert)
    except ssl.SSLError:
        raise TlsError("tls_cert", f"{cert} holds no PEM certificate") from None
    except OSError as exc:
        raise TlsError("tls_cert", _unreadable(cert, exc)) from None


def _unreadable(path: Path, exc: OSError) -> str:
    return f"cannot read {os.fspath(path)}: {exc.strerror or exc}"


def failure_reason(exc: BaseException) -> str:
    """Why a handshake failed (trio's BrokenResourceError, caused by an SSLError): OpenSSL's
    reason code when it gives one (``PLAIN_HTTP``...), else the error's text."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    if isinstance(cause, ssl.SSLError) and cause.reason:
        return cause.reason
    return str(cause) or type(cause).__name__
