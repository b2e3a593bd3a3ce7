"""Client framing: requests rendered, responses read whole, byte by byte, and any bytes at all."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.http.h1 import RequestReader
from engine.http.h1client import (
    MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
    LocalProtocolError,
    RemoteProtocolError,
    ResponseReader,
    render_request,
)

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = (
    b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n"
)
CLOSE_DELIMITED = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"


Read = Callable[[bytes], ResponseReader]


def read(data: bytes, method: str = "POST", *, eof: bool = False) -> ResponseReader:
    reader = ResponseReader(method)
    reader.feed(data)
    if eof:
        reader.feed_eof()
    return reader


def read_bytewise(data: bytes, method: str = "POST") -> ResponseReader:
    reader = ResponseReader(method)
    for i in range(len(data)):
        reader.feed(data[i : i + 1])
    return reader


def feed_until_done(
    reader: ResponseReader, data: bytes, pieces: list[int]
) -> tuple[range, RemoteProtocolError | None]:
    """Feed ``data`` in pieces of these sizes, cycling, until the reader is complete or
    refuses a piece: that last piece's offsets in ``data``, and the refusal if any."""
    piece = range(0)
    while piece.stop < len(data) and not reader.complete:
        size, pieces = pieces[0], [*pieces[1:], pieces[0]]
        piece = range(piece.stop, min(piece.stop + size, len(data)))
        try:
            reader.feed(data[piece.start : piece.stop])
        except RemoteProtocolError as exc:
            return piece, exc
    return piece, None


def response_head(size: int, framing: bytes = b"content-length: 0\r\n") -> bytes:
    """A 200 head of ``size`` bytes, padded with a header (longer if ``size`` is too short)."""
    start = b"HTTP/1.1 200 OK\r\n" + framing + b"x-filler: "
    return start + b"f" * (size - len(start) - 4) + b"\r\n\r\n"


PATTERN = bytes(range(256))


def pattern(size: int) -> bytes:
    """``size`` body bytes that tell where they were cut: 0 to 255, again and again."""
    return PATTERN * (size // 256) + PATTERN[: size % 256]


CHUNK = 4000
"""Chunk size of the chunked bodies below: not a divisor of any limit."""


def framed_body(framing: str, size: int) -> tuple[bytes, bytes, Callable[[int], int]]:
    """(framing header, encoded body, where body byte ``i`` sits in the encoded body)."""
    body = pattern(size)
    if framing == "content-length":
        return b"content-length: %d\r\n" % size, body, lambda i: i
    if framing == "close":
        return b"", body, lambda i: i
    encoded = b"".join(
        b"%x\r\n%s\r\n" % (len(body[at : at + CHUNK]), body[at : at + CHUNK])
        for at in range(0, size, CHUNK)
    )
    full = len(b"%x\r\n" % CHUNK) + CHUNK + 2

    def where(i: int) -> int:
        start = i - i % CHUNK
        return (i // CHUNK) * full + len(b"%x\r\n" % min(CHUNK, size - start)) + i % CHUNK

    return b"transfer-encoding: chunked\r\n", encoded + b"0\r\n\r\n", where


# render_request


def test_request_has_host_first_and_content_length() -> None:
    data = render_request(
        "POST", "/hook?x=1", "api.example.com", [("content-type", "application/json")], b"{}"
    )
    assert data == (
        b"POST /hook?x=1 HTTP/1.1\r\nhost: api.example.com\r\n"
        b"content-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
    )


@pytest.mark.parametrize(
    ("method", "body", "length"),
    [("GET", b"", None), ("DELETE", b"", None), ("POST", b"", b"0"), ("PUT", b"", b"0"),
     ("PATCH", b"", b"0"), ("DELETE", b"abc", b"3")],
)  # fmt: skip
def test_content_length_when_there_is_a_body_or_the_method_wants_one(
    method: str, body: bytes, length: bytes | None
) -> None:
    reader = RequestReader(16384, 65536)
    reader.feed(render_request(method, "/", "h", [], body))
    request = reader.next_request()
    assert request is not None
    assert request.method == method
    assert request.header(b"content-length") == length
    assert request.body == body
    assert request.keep_alive
    assert request.header(b"connection") is None


@pytest.mark.parametrize(
    ("target", "headers", "blame"),
    [
        ("/a\r\nX-Injected: 1", [], "request target"),
        ("/a b", [], "request target"),
        ("/", [("x-sig", "abc\r\nX-Injected: 1")], "header 'x-sig'"),
        ("/", [("x-sig", "abc\n")], "header 'x-sig'"),
        ("/", [("x-sig", "abc\r")], "header 'x-sig'"),
        ("/", [("x-a\nb", "1")], "header 'x-a\\nb'"),
    ],
)
def test_line_breaks_cannot_smuggle_a_header(
    target: str, headers: list[tuple[str, str]], blame: str
) -> None:
    with pytest.raises(LocalProtocolError, match=re.escape(blame)):
        render_request("POST", target, "h", headers, b"")


@pytest.mark.parametrize("control", ["\x00", "\x01", "\x0b", "\x1b", "\x7f"])
def test_controls_other_than_htab_are_refused_in_a_head(control: str) -> None:
    with pytest.raises(LocalProtocolError, match=re.escape("header 'x-sig' contains a control")):
        render_request("POST", "/", "h", [("x-sig", f"a{control}b")], b"")
    with pytest.raises(LocalProtocolError, match=r"request target '/a.*' contains a control"):
        render_request("POST", f"/a{control}", "h", [], b"")
    assert b"a\tb" in render_request("POST", "/", "h", [("x-sig", "a\tb")], b"")


# ResponseReader: framing


@pytest.mark.parametrize("feed", [read, read_bytewise])
def test_content_length_response(feed: Read) -> None:
    reader = feed(OK)
    assert reader.complete
    assert reader.head_complete
    assert reader.status == 200
    assert reader.headers == [(b"content-type", b"text/plain"), (b"content-length", b"5")]
    assert reader.body == b"hello"
    assert reader.keep_alive
    assert not reader.truncated


@pytest.mark.parametrize("feed", [read, read_bytewise])
def test_chunked_response(feed: Read) -> None:
    reader = feed(CHUNKED)
    assert reader.complete
    assert reader.status == 201
    assert reader.body == b"hello world"
    assert reader.keep_alive


def test_head_then_body_arrive_separately() -> None:
    reader = ResponseReader("GET")
    reader.feed(OK[:-5])
    assert reader.head_complete
    assert not reader.complete
    assert reader.status == 200
    reader.feed(OK[-5:])
    assert reader.complete


def test_close_delimited_body_is_completed_by_eof() -> None:
    reader = read_bytewise(CLOSE_DELIMITED)
    assert reader.head_complete
    assert not reader.complete
    assert not reader.keep_alive
    reader.feed_eof()
    assert reader.complete
    assert reader.body == b"until the end"
    assert not reader.keep_alive


def test_a_final_coding_other_than_chunked_runs_to_eof() -> None:
    reader = read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzzz", eof=True)
    assert reader.complete
    assert reader.body == b"zzz"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"HTTP/1.1 200 OK\r\nContent-Len",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
    ],
)
def test_eof_before_the_response_is_complete_raises(data: bytes) -> None:
    reader = read(data)
    with pytest.raises(RemoteProtocolError, match="server closed the connection"):
        reader.feed_eof()
    with pytest.raises(RemoteProtocolError):
        reader.feed(b"more")  # the reader stays broken


def test_eof_after_a_complete_response_is_fine() -> None:
    reader = read(OK, eof=True)
    assert reader.complete
    assert reader.body == b"hello"


@pytest.mark.parametrize("framing", ["content-length", "chunked", "close"])
@pytest.mark.parametrize("piece", [1, 1000, 65536, 10**6])
@pytest.mark.parametrize("status", [200, 500])
def test_reading_stops_at_the_first_body_byte_past_the_limit(
    framing: str, piece: int, status: int
) -> None:
    header, body, where = framed_body(framing, 3 * MAX_BODY_BYTES + 7)
    head = b"HTTP/1.1 %d X\r\n%s\r\n" % (status, header)
    reader = ResponseReader("POST")
    last, error = feed_until_done(reader, head + body, [piece])
    assert error is None
    assert reader.complete
    # The piece that completed it held the first byte the body limit has no room for.
    assert len(head) + where(MAX_BODY_BYTES) in last
    assert (reader.status, reader.truncated) == (status, True)
    assert reader.body == pattern(MAX_BODY_BYTES)
    assert not reader.keep_alive  # left mid-body: the connection cannot be reused
    reader.feed(b"more of the body")
    reader.feed_eof()
    assert reader.body == pattern(MAX_BODY_BYTES)
    assert not reader.keep_alive


def test_body_of_exactly_the_limit_is_not_truncated() -> None:
    body = b"z" * MAX_BODY_BYTES
    reader = read(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    assert reader.body == body
    assert not reader.truncated


def test_response_to_head_has_no_body() -> None:
    reader = read(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", "HEAD")
    assert reader.complete
    assert reader.body == b""
    assert reader.keep_alive
    closing = read(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\n", "HEAD")
    assert closing.complete
    assert not closing.keep_alive


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(status: int) -> None:
    reader = read(b"HTTP/1.1 %d X\r\n\r\n" % status)
    assert reader.complete
    assert reader.status == status
    assert reader.body == b""
    assert reader.keep_alive


@pytest.mark.parametrize("feed", [read, read_bytewise])
def test_interim_responses_are_skipped(feed: Read) -> None:
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n" + OK
    )
    reader = feed(data)
    assert reader.complete
    assert reader.status == 200
    assert reader.headers == [(b"content-type", b"text/plain"), (b"content-length", b"5")]
    assert reader.body == b"hello"


def test_interim_response_alone_is_not_the_head() -> None:
    reader = read(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert not reader.head_complete
    assert reader.status == 0


# ResponseReader: keep-alive


@pytest.mark.parametrize(
    ("data", "keep_alive"),
    [
        (OK, True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", True),
        (CHUNKED, True),
    ],
)
def test_keep_alive(data: bytes, keep_alive: bool) -> None:
    reader = read(data)
    assert reader.complete
    assert reader.keep_alive is keep_alive


@pytest.mark.parametrize("extra", [OK, b"junk", b"\x00"])
def test_bytes_after_the_response_make_the_connection_unusable(extra: bytes) -> None:
    reader = read(OK + extra)
    assert reader.complete
    assert reader.body == b"hello"
    assert not reader.keep_alive
    late = read(OK)
    late.feed(extra)
    assert late.body == b"hello"
    assert not late.keep_alive


# ResponseReader: errors


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x01\x02garbage\r\n\r\n", "invalid response: expected HTTP/"),
        (b"GET / HTTP/1.1\r\n\r\n", "invalid response"),
        (b"HTTP/1.1 abc OK\r\n\r\n", "invalid status code"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "content-length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/2.0 200 OK\r\n\r\n", "unsupported version HTTP/2.0"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n",
         "no upgrade was asked for"),
    ],
)  # fmt: skip
def test_not_http_raises_remote_protocol_error(data: bytes, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=f"(?i){message}"):
        read(data)


@pytest.mark.parametrize("piece", [1, 1000, 65536, 10**6])
def test_head_limit_is_exact_whatever_the_pieces(piece: int) -> None:
    fits = ResponseReader("GET")
    # Bytes follow the head, so a big piece holds both: the head must end within it.
    _, error = feed_until_done(fits, response_head(MAX_HEAD_BYTES) + OK, [piece])
    assert error is None
    assert (fits.complete, fits.status) == (True, 200)
    over = ResponseReader("GET")
    last, error = feed_until_done(over, response_head(MAX_HEAD_BYTES + 1) + OK, [piece])
    assert error is not None
    assert str(error) == f"response head larger than {MAX_HEAD_BYTES} bytes"
    # Refused by the piece that brought the head's last allowed byte, not one read later.
    assert MAX_HEAD_BYTES - 1 in last


def test_a_100_kb_head_in_64_kb_reads_is_refused() -> None:
    head = response_head(100 * 1024)
    _, error = feed_until_done(ResponseReader("GET"), head, [65536])
    assert error is not None
    assert "head larger than" in str(error)
    with pytest.raises(RemoteProtocolError, match="head larger than"):
        read(head)


def test_head_size_is_limited() -> None:
    reader = ResponseReader("GET")
    reader.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(RemoteProtocolError, match="head larger than"):
        for _ in range(MAX_HEAD_BYTES // 1000 + 1):
            reader.feed(b"x-filler: " + b"f" * 988 + b"\r\n")


def test_endless_interim_responses_are_limited() -> None:
    reader = ResponseReader("GET")
    with pytest.raises(RemoteProtocolError, match="head larger than"):
        for _ in range(MAX_HEAD_BYTES // 25 + 1):
            reader.feed(b"HTTP/1.1 100 Continue\r\n\r\n")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 50), st.booleans())
def test_any_bytes_either_parse_or_raise_remote_protocol_error(
    data: bytes, step: int, eof: bool
) -> None:
    reader = ResponseReader("GET")
    try:
        for i in range(0, len(data), step):
            reader.feed(data[i : i + step])
        if eof:
            reader.feed_eof()
    except RemoteProtocolError:
        return
    if reader.complete:
        assert 200 <= reader.status <= 999
        assert len(reader.body) <= MAX_BODY_BYTES


@settings(max_examples=200, deadline=None)
@given(
    st.integers(40, 2 * MAX_HEAD_BYTES),
    st.booleans(),
    st.sampled_from(["content-length", "chunked", "close"]),
    st.integers(0, 2 * MAX_BODY_BYTES),
    st.lists(st.integers(1, 3 * 65536), min_size=1, max_size=8),
)
def test_heads_of_any_length_and_bodies_past_the_limit(
    head_size: int, interim: bool, framing: str, body_size: int, pieces: list[int]
) -> None:
    """The two limits, exactly, whatever the sizes and the pieces the bytes come in."""
    header, body, where = framed_body(framing, body_size)
    prefix = b"HTTP/1.1 100 Continue\r\n\r\n" if interim else b""
    head = prefix + response_head(head_size - len(prefix), header)  # no filler if too short
    # The pieces drawn, then 64 KB reads, as from a socket.
    sizes = [*pieces, *[65536] * (len(head + body) // 65536 + 1)]
    reader = ResponseReader("GET")
    last, error = feed_until_done(reader, head + body, sizes)
    if len(head) > MAX_HEAD_BYTES:
        assert error is not None
        assert "head larger than" in str(error)
        assert MAX_HEAD_BYTES - 1 in last
        return
    assert error is None
    if body_size > MAX_BODY_BYTES:
        assert reader.complete
        assert reader.truncated
        assert not reader.keep_alive
        assert len(head) + where(MAX_BODY_BYTES) in last
        assert reader.body == pattern(MAX_BODY_BYTES)
        return
    if framing == "close":
        assert not reader.complete
        reader.feed_eof()
    assert reader.complete
    assert not reader.truncated
    assert reader.keep_alive is (framing != "close")
    assert reader.body == pattern(body_size)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([OK, CHUNKED, CLOSE_DELIMITED]),
    st.integers(0, 200),
    st.binary(min_size=1, max_size=8),
)
def test_corrupting_a_response_parses_or_raises(original: bytes, at: int, noise: bytes) -> None:
    at = min(at, len(original))
    data = original[:at] + noise + original[at:]
    reader = ResponseReader("GET")
    try:
        reader.feed(data)
        reader.feed_eof()
    except RemoteProtocolError:
        return
    assert reader.complete
