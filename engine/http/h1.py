"""HTTP/1.1 server-side framing without I/O: bytes in, requests out; responses to bytes.

The parser is httptools (llhttp). A ``RequestReader`` is fed whatever the socket
gave and hands back complete requests in order, so pipelined requests come out one
by one. Anything the peer did wrong raises ``ProtocolError`` carrying the status a
server should answer with; after that the connection cannot be trusted and must close.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qsl

import httptools

MAX_HEADER_COUNT = 100
"""More header lines than any real client sends; bounds per-request work."""

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
"""The interim answer to ``Expect: 100-continue`` (RFC 9110 10.1.1)."""


class ProtocolError(Exception):
    """The remote side sent bytes that are not an acceptable HTTP/1.1 request."""

    def __init__(self, message: str, status_hint: int = 400) -> None:
        super().__init__(message)
        self.status_hint = status_hint


@dataclass(slots=True)
class Request:
    """One complete request as the peer sent it."""

    method: str
    target: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    keep_alive: bool
    http_version: str = "1.1"
    path: str = ""
    query_string: str = ""
    _query: dict[str, str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # The path stays percent-encoded: the router splits it before decoding.
        self.path, _, self.query_string = self.target.partition("?")

    @property
    def query(self) -> dict[str, str]:
        """Query parameters; the first value wins when a name repeats."""
        if self._query is None:
            parsed: dict[str, str] = {}
            for name, value in parse_qsl(self.query_string, keep_blank_values=True):
                parsed.setdefault(name, value)
            self._query = parsed
        return self._query

    def header(self, name: bytes) -> bytes | None:
        """The first value of a header; ``name`` must be lowercase."""
        return first_value(self.headers, name)


def first_value(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of header ``name`` (lowercase) in ``headers``, or None."""
    for key, value in headers:
        if key == name:
            return value
    return None


class RequestReader:
    """Turns a byte stream into ``Request`` objects; one per connection."""

    def __init__(self, max_header_bytes: int, max_body_bytes: int) -> None:
        self._max_header_bytes = max_header_bytes
        self._max_body_bytes = max_body_bytes
        self._parser = httptools.HttpRequestParser(self)
        self._ready: deque[Request] = deque()
        self._broken: ProtocolError | None = None
        self._closed_after: bool = False
        # Bytes fed while a head was incomplete. httptools hands a header over only when
        # its line ends, joining the pieces as it goes (copying them each time): a line
        # that never ends must be refused by counting what goes in, not what comes out.
        self._head_fed = 0
        self._in_head = True
        self._continue_wanted = False
        self._reset()

    def _reset(self) -> None:
        self._in_message = False
        self._url = bytearray()
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._rare_fields = False
        self._body = bytearray()

    @property
    def in_progress(self) -> bool:
        """True while a request has started arriving but is not complete."""
        return self._in_message

    @property
    def closed(self) -> bool:
        """True once a request said the connection ends after it (no more requests)."""
        return self._closed_after

    def interim_nowait(self) -> bytes | None:
        """``100 Continue`` once, when the request in progress waits for it; else None.

        A client that sent ``Expect: 100-continue`` may hold its body back until it gets
        this. Once the body has started arriving (or the request is complete) it is owed
        nothing more (RFC 9110 10.1.1).
        """
        if self._continue_wanted and self._in_message and not self._body:
            self._continue_wanted = False
            return CONTINUE
        self._continue_wanted = False
        return None

    def feed(self, data: bytes | bytearray) -> None:
        """Parse ``data``; completed requests become available from ``next_request``."""
        if self._broken is not None:
            raise self._broken
        if self._closed_after or not data:
            return
        if self._in_head:
            # At most one read too many: the head of a pipelined request that began in
            # this read is counted from the next read on.
            self._head_fed += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # We speak no other protocol: answer the request, then close.
            self._closed_after = True
            if self._ready:
                self._ready[-1].keep_alive = False
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            self._broken = (
                cause if isinstance(cause, ProtocolError) else ProtocolError("malformed request")
            )
            raise self._broken from None
        except httptools.HttpParserError as exc:
            if self._closed_after:
                return  # bytes after a request that closes the connection are not ours to read
            self._broken = ProtocolError(f"malformed request: {_describe(exc)}")
            raise self._broken from None
        if self._in_head and self._head_fed > self._max_header_bytes:
            self._broken = _head_too_large(self._max_header_bytes)
            raise self._broken

    def next_request(self) -> Request | None:
        """The oldest complete request not handed out yet, or None."""
        return self._ready.popleft() if self._ready else None

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._reset()
        self._in_message = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count_header_bytes(len(url), url_part=True)

    def on_header(self, name: bytes, value: bytes) -> None:
        # httptools joins split fields and values before this callback.
        self._count_header_bytes(len(name) + len(value) + 4)
        if len(self._headers) >= MAX_HEADER_COUNT:
            raise ProtocolError(
                f"too many header fields (limit {MAX_HEADER_COUNT})",
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
            )
        lowered = name.lower()
        if lowered in _RARE_FIELDS:
            self._rare_fields = True
        self._headers.append((lowered, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_fed = 0
        if self._rare_fields:
            _check_transfer_coding(self._headers)
            self._continue_wanted = _wants_continue(self._headers, self._parser)
        length = _content_length(self._headers)
        if length is not None and length > self._max_body_bytes:
            raise _body_too_large(self._max_body_bytes)

    def on_body(self, body: bytes) -> None:
        if len(self._body) + len(body) > self._max_body_bytes:
            raise _body_too_large(self._max_body_bytes)
        self._body += body

    def on_message_complete(self) -> None:
        keep_alive = self._parser.should_keep_alive()
        try:
            target = self._url.decode("ascii")
            method = self._parser.get_method().decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError("request target is not ASCII") from None
        version = self._parser.get_http_version()
        self._ready.append(
            Request(method, target, self._headers, bytes(self._body), keep_alive, version)
        )
        if not keep_alive:
            self._closed_after = True
        self._in_message = False
        self._in_head = True
        self._head_fed = 0
        self._continue_wanted = False

    def _count_header_bytes(self, n: int, *, url_part: bool = False) -> None:
        self._header_bytes += n
        if self._header_bytes > self._max_header_bytes:
            if url_part:
                raise ProtocolError(
                    f"request target longer than {self._max_header_bytes} bytes",
                    HTTPStatus.REQUEST_URI_TOO_LONG,
                )
            raise _head_too_large(self._max_header_bytes)


def _head_too_large(limit: int) -> ProtocolError:
    return ProtocolError(
        f"request head larger than {limit} bytes", HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
    )


_RARE_FIELDS = frozenset({b"transfer-encoding", b"expect"})
"""Fields that ask more of the server than most requests do; looked at only when present."""


def _wants_continue(
    headers: list[tuple[bytes, bytes]], parser: httptools.HttpRequestParser
) -> bool:
    """Whether the client waits for ``100 Continue``; 417 for an expectation we do not know."""
    expect = first_value(headers, b"expect")
    if expect is None:
        return False
    if expect.strip().lower() != b"100-continue":
        raise ProtocolError(
            f"unsupported expectation {expect[:64].decode('latin-1')!r}; "
            "only 100-continue is known",
            HTTPStatus.EXPECTATION_FAILED,
        )
    return bool(parser.get_http_version() == "1.1")


def _check_transfer_coding(headers: list[tuple[bytes, bytes]]) -> None:
    """Chunked is the one transfer coding we decode; a body in any other is refused."""
    codings = [
        coding.strip().lower()
        for name, value in headers
        if name == b"transfer-encoding"
        for coding in value.split(b",")
    ]
    if not codings or codings == [b"chunked"]:
        return
    if codings[-1] != b"chunked":
        # The body's length cannot be known (RFC 9112 6.3).
        raise ProtocolError("transfer-encoding of a request must end with chunked")
    unknown = ", ".join(c.decode("latin-1") for c in codings[:-1])
    raise ProtocolError(
        f"transfer coding {unknown[:64]} is not supported; send the body chunked only",
        HTTPStatus.NOT_IMPLEMENTED,
    )


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    value = first_value(headers, b"content-length")
    # llhttp has already refused non-numeric and conflicting values.
    return None if value is None else int(value)


def _body_too_large(limit: int) -> ProtocolError:
    return ProtocolError(
        f"request body larger than {limit} bytes", HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    )


def _describe(exc: Exception) -> str:
    text = str(exc)
    return text.removeprefix("HPE_").replace("_", " ").lower() if text else type(exc).__name__


_REASONS = {status.value: status.phrase for status in HTTPStatus}


def render_head(
    status: int,
    headers: list[tuple[str, str]],
    *,
    content_length: int | None,
    keep_alive: bool,
    chunked: bool = False,
) -> bytes:
    """The status line and headers of a response, ready to send."""
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    if content_length is not None:
        lines.append(f"content-length: {content_length}")
    elif chunked:
        lines.append("transfer-encoding: chunked")
    if not keep_alive:
        lines.append("connection: close")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


def render_response(
    status: int, headers: list[tuple[str, str]], body: bytes, *, keep_alive: bool
) -> bytes:
    """A whole response with a body of known length."""
    head = render_head(status, headers, content_length=len(body), keep_alive=keep_alive)
    return head + body


LAST_CHUNK = b"0\r\n\r\n"
"""Ends a chunked body (no trailer fields)."""


def frame_chunk(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked body; no bytes for no data (that would end it)."""
    return b"%x\r\n%b\r\n" % (len(data), data) if data else b""


@dataclass(frozen=True, slots=True)
class BodyFraming:
    """How a body of unknown length is delimited: in chunks, or by closing the connection."""

    chunked: bool

    def frame(self, data: bytes) -> bytes:
        """``data`` ready for the wire: one chunk, or the bytes as they are."""
        return frame_chunk(data) if self.chunked else data

    @property
    def end(self) -> bytes:
        """What ends the body before the connection closes."""
        return LAST_CHUNK if self.chunked else b""


CHUNKED = BodyFraming(chunked=True)
CLOSE_DELIMITED = BodyFraming(chunked=False)

_BEFORE_CHUNKED = frozenset({"0.9", "1.0"})
"""Versions that predate chunked coding: a server must not send it to them (RFC 9112 6.1)."""


def streamed_body_framing(request: Request) -> BodyFraming:
    """How to send a streamed response to this client: chunked unless it speaks HTTP/1.0."""
    return CLOSE_DELIMITED if request.http_version in _BEFORE_CHUNKED else CHUNKED
