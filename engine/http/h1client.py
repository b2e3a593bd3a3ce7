"""HTTP/1.1 client-side framing without I/O: requests to bytes; bytes in, one response out.

``render_request`` serializes a request in one string operation. A ``ResponseReader``
is fed whatever the socket gave and says when the head has arrived and when reading is
over: the whole response arrived, or the first ``MAX_BODY_BYTES`` of a longer body did
(nothing more is wanted; the rest stays unread and the connection cannot be reused).
The parser is httptools (llhttp). A reader serves one response: the client sends one
request at a time on a connection (no pipelining), so bytes after the response only
mean that the connection cannot be reused.

Errors form the base of the client's exception family (``HttpClientError``); the
framing ones say whose fault they are: ``LocalProtocolError`` (we were asked to send
something that is not HTTP) or ``RemoteProtocolError`` (the server sent it).
"""

from __future__ import annotations

import httptools

MAX_HEAD_BYTES = 64 * 1024
"""Status line plus headers (interim 1xx heads included); real servers send a few KB.
Counted exactly, whatever the pieces the bytes come in."""

MAX_BODY_BYTES = 100 * 1024
"""Response body read and kept for the hook-response (docs/webhooks.md); reading stops
at the first byte past it, so an endless body costs 100 KB, not the hook's timeout."""

_HEAD_BYTES = b"\t\r\n" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))
"""What a request head may hold (RFC 9110 5.5): visible ASCII, space, obs-text, HTAB, and
CR LF (counted apart); deleting these leaves only the forbidden controls, NUL to DEL."""

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
"""Methods whose request always carries Content-Length, even for an empty body."""


class HttpClientError(Exception):
    """Any failure of an outbound HTTP request; ``str()`` is fit for an attempt record."""


class HttpProtocolError(HttpClientError):
    """Bytes that are not HTTP/1.1; after one the connection cannot be trusted."""


class LocalProtocolError(HttpProtocolError):
    """We were asked to send something that cannot be written as an HTTP/1.1 request."""


class RemoteProtocolError(HttpProtocolError):
    """The server sent bytes that are not an acceptable HTTP/1.1 response."""


def render_request(
    method: str,
    target: str,
    host_header: str,
    headers: list[tuple[str, str]],
    body: bytes,
) -> bytes:
    """A whole HTTP/1.1 request, ready for one ``send_all``.

    Host comes first; Content-Length is added when there is a body or the method
    is POST/PUT/PATCH. ``headers`` must not carry Host, Content-Length or
    Transfer-Encoding. No Connection header: keep-alive is HTTP/1.1's default.
    Text is sent as UTF-8 (ASCII for any well-formed target and header).
    """
    fields = "".join([f"{name}: {value}\r\n" for name, value in headers])
    if body or method in _BODY_METHODS:
        head = (
            f"{method} {target} HTTP/1.1\r\nhost: {host_header}\r\n{fields}"
            f"content-length: {len(body)}\r\n\r\n"
        )
        lines = len(headers) + 4
    else:
        head = f"{method} {target} HTTP/1.1\r\nhost: {host_header}\r\n{fields}\r\n"
        lines = len(headers) + 3
    data = head.encode()
    # One scan each instead of a check per field: any CR or LF beyond the framing
    # ones would let a value start a header (or a request) of its own, and a NUL or
    # other control is read differently by different servers (RFC 9110 5.5).
    if head.count("\n") != lines or head.count("\r") != lines or " " in target or _controls(data):
        raise LocalProtocolError(_explain_bad_request(method, target, host_header, headers))
    return data + body if body else data


def _controls(data: bytes) -> bytes:
    """The control bytes in ``data`` that no request head may hold (empty if none)."""
    return data.translate(None, _HEAD_BYTES)


def _explain_bad_request(
    method: str, target: str, host_header: str, headers: list[tuple[str, str]]
) -> str:
    for what, text in [("method", method), ("request target", target), ("host", host_header)]:
        if "\r" in text or "\n" in text or " " in text:
            return f"the {what} {text!r} contains a space or line break"
        if _controls(text.encode()):
            return f"the {what} {text!r} contains a control character"
    for name, value in headers:
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            return f"header {name!r} contains a line break"
        if _controls(f"{name}{value}".encode()):
            return f"header {name!r} contains a control character"
    return "request cannot be written as HTTP/1.1"


class _Stop(Exception):
    """Raised inside a parser callback to stop llhttp once our response is complete."""


class ResponseReader:
    """Turns the bytes of one response into status, headers and (at most 100 KB of) body.

    Feed it every chunk the socket gives (``feed``) and ``feed_eof()`` at end of
    stream, until ``complete``. ``method`` is the request's: a response to HEAD has
    no body whatever its Content-Length says. Interim 1xx responses are skipped.
    A body longer than ``max_body`` (default ``MAX_BODY_BYTES``) completes the reader at
    its first byte past the limit (``truncated``, and ``keep_alive`` False: the rest is
    never read).
    """

    __slots__ = (
        "_chunks",
        "_error",
        "_head_bytes",
        "_interim",
        "_is_head",
        "_kept",
        "_max_body",
        "_parser",
        "complete",
        "head_complete",
        "headers",
        "keep_alive",
        "status",
        "truncated",
    )

    def __init__(self, method: str = "GET", max_body: int = MAX_BODY_BYTES) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._max_body = max_body
        self._is_head = method == "HEAD"
        self._chunks: list[bytes] = []
        self._kept = 0
        self._head_bytes = 0
        self._interim = False
        self._error: RemoteProtocolError | None = None
        self.head_complete = False
        """True once the final (non-1xx) status line and headers have arrived."""
        self.complete = False
        """True once nothing more is to be read: the whole response arrived, or the
        first ``MAX_BODY_BYTES`` of a longer body did (``truncated``)."""
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        """Header fields in order; names lowercase."""
        self.keep_alive = False
        """Whether the connection may carry another request; final once ``complete``."""
        self.truncated = False
        """True when the body was longer than ``MAX_BODY_BYTES``; the rest was not read."""

    @property
    def body(self) -> bytes:
        """The body received so far, at most ``MAX_BODY_BYTES``."""
        chunks = self._chunks
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Parse the next bytes from the server; raises ``RemoteProtocolError``."""
        if self._error is not None:
            raise self._error
        if not self.head_complete and not self.complete:
            # Until the head is complete the parser gets no more than the head may still
            # take, so a head is refused as soon as it passes the limit, whatever the
            # pieces its bytes come in (and one that completes within it is accepted).
            room = MAX_HEAD_BYTES - self._head_bytes
            head = data if len(data) <= room else memoryview(data)[:room]
            self._parse(head)
            if not self.head_complete:
                self._head_bytes += len(head)
                if self._head_bytes >= MAX_HEAD_BYTES:
                    # The parser has had the whole allowance, and the head goes on.
                    raise self._broken(f"response head larger than {MAX_HEAD_BYTES} bytes")
                return
            if len(head) == len(data):
                return
            data = memoryview(data)[room:]  # the body's first bytes, after the head
        if self.complete:
            # Past the end of the response (or of all we read of it): the server sent
            # more than one response, or a body we stopped reading. Out of step either way.
            self.keep_alive = self.keep_alive and not data
            return
        self._parse(data)

    def _parse(self, data: bytes | bytearray | memoryview) -> None:
        """Hand ``data`` to llhttp; its errors become ours, our ``_Stop`` ends the feed."""
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise self._broken("101 Switching Protocols, but no upgrade was asked for") from None
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, RemoteProtocolError):
                raise self._broken(str(cause)) from None
            if not isinstance(cause, _Stop):
                raise  # a bug of ours, not the server's
        except httptools.HttpParserError as exc:
            if not self.complete:
                raise self._broken(f"invalid response: {_describe(exc)}") from None
            self.keep_alive = False  # junk after a complete response

    def feed_eof(self) -> None:
        """The server closed the connection; completes a body delimited by the close."""
        if self.complete:
            return
        if self._error is not None:
            raise self._error
        if not self.head_complete:
            if self._head_bytes:
                raise self._broken(
                    "server closed the connection in the middle of the response head"
                )
            raise self._broken("server closed the connection before any response")
        if not self._close_delimited():
            raise self._broken("server closed the connection in the middle of the response body")
        self.complete = True
        self.keep_alive = False

    def _close_delimited(self) -> bool:
        """True if the body runs until the server closes (RFC 9112, section 6.3)."""
        chunked = has_length = False
        for name, value in self.headers:
            if name == b"transfer-encoding":
                # Only a final "chunked" coding delimits the body; any other runs to EOF.
                chunked = value.rstrip().lower().endswith(b"chunked")
            elif name == b"content-length":
                has_length = True
        return not chunked and not has_length

    def _broken(self, message: str) -> RemoteProtocolError:
        """Remember the first error: every later call raises it again."""
        self._error = RemoteProtocolError(message)
        return self._error

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.complete:
            self.keep_alive = False  # a second response nobody asked for: out of step
            raise _Stop

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            raise RemoteProtocolError(f"unsupported version HTTP/{version}")
        if status < 200:
            self._interim = True
            return
        self.status = status
        self.head_complete = True
        if self._is_head:
            # llhttp does not know the request method: stop it before it waits for a body.
            self.keep_alive = _persists(version, self.headers)
            self.complete = True
            raise _Stop

    def on_body(self, body: bytes) -> None:
        room = self._max_body - self._kept
        if len(body) <= room:
            self._chunks.append(body)
            self._kept += len(body)
            return
        if room:
            self._chunks.append(body[:room])
            self._kept = self._max_body
        # All we keep has arrived and more is coming: reading the rest would only cost
        # time (an endless body would hold the attempt until its timeout). The server is
        # left mid-body, so the connection cannot carry another request.
        self.truncated = True
        self.keep_alive = False
        self.complete = True
        raise _Stop

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            self.headers = []
            return
        self.keep_alive = self._parser.should_keep_alive()
        self.complete = True


def _persists(version: str, headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a connection stays open after a response, judged by its head alone."""
    tokens = b",".join(value for name, value in headers if name == b"connection").lower()
    options = {token.strip() for token in tokens.split(b",")}
    if version == "1.0":
        return b"keep-alive" in options
    return b"close" not in options


def _describe(exc: Exception) -> str:
    text = str(exc)
    return text[0].lower() + text[1:] if text else type(exc).__name__
