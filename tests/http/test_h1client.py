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


def test_big_body_is_truncated_and_read_to_the_end() -> None:
    size = 3 * MAX_BODY_BYTES + 7
    reader = ResponseReader("GET")
    reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
    for _ in range(size // 1000):
        reader.feed(b"y" * 1000)
    assert not reader.complete
    reader.feed(b"y" * (size % 1000))
    assert reader.complete
    assert reader.truncated
    assert reader.body == b"y" * MAX_BODY_BYTES
    assert reader.keep_alive  # read completely: the connection can be reused


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
