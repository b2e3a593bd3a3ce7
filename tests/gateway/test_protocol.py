"""The gateway wire format without sockets: framing, limits, frame validation, ack ranges."""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.gateway import protocol as wire
from tests.gateway._msgpack import (
    DEEP,
    Map,
    Raw,
    ext,
    frame,
    nested,
    pack,
    scalars,
    values,
    wire_values,
)

DEVICE = "0123456789abcdef01234567"


def pub(**fields: Any) -> dict[str, Any]:
    return {"op": "pub", "seq": 1, "device": DEVICE, "name": "temp", "data": "21.5", **fields}


SHORT = 160
"""Characters an error message may take: a refused value is quoted, not echoed."""


def parse(frame: dict[str, Any]) -> wire.ClientFrame:
    return wire.parse_frame(frame, max_data_bytes=1024)


frames = st.dictionaries(st.text(max_size=8) | scalars, values, max_size=6)


@given(st.lists(frames, min_size=1, max_size=8), st.data())
def test_frames_come_out_whole_however_the_bytes_are_cut(
    sent: list[dict[str, Any]], data: st.DataObject
) -> None:
    stream = b"".join(msgpack.packb(frame) for frame in sent)
    decoder = wire.FrameDecoder(4096)
    got: list[dict[str, Any]] = []
    position = 0
    while position < len(stream):
        size = data.draw(st.integers(1, 64))
        got += decoder.feed(stream[position : position + size])
        position += size
    assert [msgpack.packb(f) for f in got] == [msgpack.packb(f) for f in sent]  # NaN != NaN


def test_a_frame_over_the_limit_is_refused_whole_or_in_pieces() -> None:
    big = msgpack.packb(pub(data="x" * 300))
    with pytest.raises(wire.FrameError, match="over the limit of 200 bytes") as whole:
        wire.FrameDecoder(200).feed(big)
    assert whole.value.fatal and whole.value.code == "frame-too-large"
    decoder = wire.FrameDecoder(200)
    decoder.feed(big[:150])
    with pytest.raises(wire.FrameError, match="over the limit"):
        decoder.feed(big[150:])


def test_a_header_announcing_a_huge_frame_is_refused_before_it_arrives() -> None:
    decoder = wire.FrameDecoder(1000)
    decoder.feed(b"\xdb\xff\xff\xff\xff")  # str32 of 4 GiB
    with pytest.raises(wire.FrameError, match="over the limit"):
        for _ in range(2):
            decoder.feed(b"x" * 1000)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xc1", "^the bytes are not valid msgpack$"),
        (msgpack.packb([1, 2]), "must be a msgpack map, got list"),
        (frame(op="ping", name=Raw(b"\xa2\xff\xfe")), "a str is not valid UTF-8"),
        (frame(op="ping", at=Raw(b"\xd4\xff\x01")), "not valid msgpack: invalid timestamp"),
        (frame(op="ping", at=ext(-2, b"x")), "^the bytes are not valid msgpack: "),
        (frame(op="ping", deep=nested(1030)), "nested too deeply"),
    ],
)
def test_bytes_that_are_not_frames_break_the_stream(data: bytes, message: str) -> None:
    with pytest.raises(wire.FrameError, match=message) as caught:
        wire.FrameDecoder(2000).feed(data)
    assert caught.value.fatal and caught.value.code == "malformed"


@pytest.mark.parametrize(
    "data",
    [
        b"\x81\x91\x01\x01",  # {[1]: 1}
        b"\x81\x81\x01\x01\x01",  # {{1: 1}: 1}
        frame(op="pub", seq=1, data=Map((([1], 2),))),  # deeper down
    ],
)
def test_a_map_key_that_is_an_array_or_a_map_breaks_the_stream(data: bytes) -> None:
    """msgpack cannot make it a dict key, and stops mid-frame: the stream is lost."""
    decoder = wire.FrameDecoder(1000)
    with pytest.raises(wire.FrameError, match=r"^a map key was an array or a map") as caught:
        for byte in range(len(data)):  # one byte at a time too
            decoder.feed(data[byte : byte + 1])
    assert caught.value.fatal and caught.value.code == "malformed"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


OPS = [
    [1, 2],
    {"a": 1},
    {1: [3]},
    b"pub",
    1,
    -(2**63),
    2**64 - 1,
    1.5,
    float("nan"),
    None,
    True,
    msgpack.ExtType(5, b"pub"),
    msgpack.Timestamp(1, 2),
]
"""An op of every msgpack type but str."""


@pytest.mark.parametrize("op", [*OPS, nested()], ids=lambda op: f"{op!r:.20}")
def test_an_op_of_any_type_is_a_bad_frame_counted_as_bad(op: object) -> None:
    [got] = wire.FrameDecoder(2000).feed(frame(op=op, seq=1))
    with pytest.raises(wire.FrameError, match=r"^op: expected a string, got ") as caught:
        parse(got)
    error = caught.value
    assert (error.code, error.fatal, error.seq) == ("bad-frame", False, None)
    assert len(error.message) <= SHORT
    assert wire.op_label(got) == "bad"
    with pytest.raises(wire.FrameError, match=r"^the first frame must be a hello$") as first:
        wire.parse_hello(got)
    assert first.value.fatal and first.value.code == "hello-required"


@pytest.mark.parametrize(
    "field", ["op", "seq", "device", "ttl", "private", "product", "published_at", "key"]
)
def test_a_value_nested_deeper_than_python_recurses_is_refused_in_a_short_message(
    field: str,
) -> None:
    fields = {**pub(), field: nested(DEEP)}
    [got] = wire.FrameDecoder(2000).feed(frame(**fields))
    with pytest.raises(wire.FrameError) as caught:
        parse(got)
    assert not caught.value.fatal and len(caught.value.message) <= SHORT


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"device": "d" * 5000}, "device id must be"),
        ({"ttl": "soon" * 1000}, "ttl must be a whole number"),
        ({"private": "maybe" * 1000}, "private must be true or false"),
        ({"published_at": "2026" * 1000}, "published_at: expected ISO 8601"),
        ({"product": [1001] * 1000}, "product: expected a positive integer"),
    ],
)
def test_a_refused_value_is_quoted_cut_short(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(wire.FrameError, match=message) as caught:
        parse(pub(**fields))
    assert len(caught.value.message) <= SHORT


def test_a_pub_becomes_a_draft() -> None:
    frame = parse(
        pub(
            seq=7,
            ttl=30,
            private=False,
            product=1001,
            published_at="2026-11-29T10:00:00.123Z",
            key=42,
        )
    )
    assert isinstance(frame, wire.Pub)
    assert frame.seq == 7 and frame.key == "42"
    draft = frame.draft
    assert (draft.name, draft.data, draft.ttl, draft.private) == ("temp", "21.5", 30, False)
    assert (draft.device_id, draft.product_id) == (DEVICE, 1001)
    assert draft.published_at == "2026-11-29T10:00:00.123Z"
    defaults = parse(pub())
    assert isinstance(defaults, wire.Pub)
    assert defaults.draft.private and defaults.draft.ttl == 60 and defaults.key is None


def test_a_nil_private_is_private_like_a_missing_one() -> None:
    frame = parse(pub(private=None))
    assert isinstance(frame, wire.Pub)
    assert frame.draft.private


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "hook-response/x"}, 'may not start with "hook-"'),
        ({"data": 5}, "data must be a string, got a number"),
        ({"data": "x" * 2000}, "data is 2000 bytes; the limit is 1024 bytes"),
        ({"device": "not a device!"}, "device id must be"),
        ({"ttl": "soon"}, "ttl must be a whole number of seconds"),
        ({"product": "1001"}, "product: expected a positive integer"),
        ({"published_at": "yesterday"}, "published_at: expected ISO 8601"),
        ({"key": [1]}, "key: expected a string or an integer"),
        ({"key": True}, "key: expected a string or an integer, got bool True"),
        ({"key": "k" * 129}, "key: expected a string or an integer, got str 'kkk"),
    ],
)
def test_an_invalid_pub_is_refused_with_its_seq_and_a_reason(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(wire.FrameError, match=message) as caught:
        parse(pub(seq=9, **fields))
    assert caught.value.seq == 9 and not caught.value.fatal


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ({"op": "pub", "seq": "1"}, "pub.seq: expected an integer >= 0"),
        ({"op": "pub"}, "pub.seq: expected an integer >= 0, got nothing"),
        ({"op": "launch"}, 'unknown op "launch"'),
        ({"seq": 1}, "op: expected a string, got nothing"),
        ({"op": "down-ack", "ids": "1"}, "down-ack.ids: expected an array of integers"),
        ({"op": "hello", "version": 1}, "hello.token: expected a non-empty string"),
        ({"op": "hello", "token": "t", "version": "1"}, "hello.version: expected an integer"),
    ],
)
def test_frames_with_wrong_fields_say_which(frame: dict[str, Any], message: str) -> None:
    with pytest.raises(wire.FrameError, match=message) as caught:
        parse(frame)
    assert caught.value.seq is None


@pytest.mark.parametrize(
    "fields",
    [
        {"token": "t", "version": 1, "name": 5},
        {"token": "t", "version": 1, "name": ""},
        {"token": "t", "version": 1, "name": "g" * 65},
        {"token": "t", "version": True},
        {"token": b"t", "version": 1},
    ],
)
def test_every_mistake_in_a_hello_is_fatal(fields: dict[str, Any]) -> None:
    """Also in a second hello, which parse_frame reads: the connection closes either way."""
    for parse_hello in (parse, wire.parse_hello):
        with pytest.raises(wire.FrameError, match=r"^hello[.]") as caught:
            parse_hello({"op": "hello", **fields})
        assert caught.value.fatal and caught.value.code == "bad-hello"


GOOD = {
    "hello": {"token": st.just("t"), "version": st.just(1), "name": st.just("gw")},
    "pub": {
        "seq": st.integers(0, 2**64 - 1),
        "device": st.just(DEVICE),
        "name": st.just("temp"),
        "data": st.text(max_size=8),
        "ttl": st.integers(0, 60),
        "private": st.booleans(),
        "product": st.just(1001),
        "published_at": st.just("2026-11-29T10:00:00.123Z"),
        "key": st.text(max_size=8) | st.integers(0, 2**64 - 1),
    },
    "down-ack": {"ids": st.lists(st.integers(0, 2**63 - 1), max_size=4)},
    "ping": {},
}
"""Each op's fields, with a valid value for each."""


@st.composite
def any_frame(draw: st.DrawFn) -> Map:
    """A frame of some op, with a few of its fields absent or of any type, and extra keys.

    Half of them hold somewhere (as a value or a key) a value no dict can hold or packb
    would not write: an array or map as a key, a str that is not UTF-8, deep nesting...
    """
    op = draw(st.sampled_from(sorted(GOOD)))
    fields = ["op", *GOOD[op]]
    spoilt = draw(st.sets(st.sampled_from(fields), max_size=3))
    absent = draw(st.sets(st.sampled_from(fields), max_size=3))
    pairs: list[tuple[object, object]] = []
    for field in fields:
        if field in spoilt:
            pairs.append((field, draw(values)))
        elif field not in absent:
            pairs.append((field, op if field == "op" else draw(GOOD[op][field])))
    pairs += draw(st.lists(st.tuples(scalars, values), max_size=2))  # keys of other types
    if pairs and draw(st.booleans()):
        at = draw(st.integers(0, len(pairs) - 1))
        key, value = pairs[at]
        pairs[at] = (draw(wire_values), value) if draw(st.booleans()) else (key, draw(wire_values))
    return Map(tuple(draw(st.permutations(pairs))))


@given(any_frame())
def test_any_msgpack_anywhere_in_a_frame_parses_or_is_refused(sent: Map) -> None:
    """The one rule: a typed frame or a FrameError; whole frames do not end the stream."""
    decoder = wire.FrameDecoder(1 << 16)
    try:
        frames = decoder.feed(pack(sent) + msgpack.packb({"op": "ping"}))
    except wire.FrameError as exc:  # msgpack stopped mid-frame
        assert (exc.code, exc.fatal) == ("malformed", True)
        return
    [got, ping] = frames
    assert isinstance(wire.parse_frame(ping, max_data_bytes=1024), wire.Ping)
    assert wire.op_label(got) in {*wire.KNOWN_OPS, "bad"}
    try:
        parsed = wire.parse_frame(got, max_data_bytes=1024, valid=wire.Valid())
    except wire.FrameError as exc:
        if got.get("op") == "hello":
            assert (exc.code, exc.fatal) == ("bad-hello", True)
        else:
            assert exc.code in {"bad-frame", "unknown-op", "invalid-event"} and not exc.fatal
        assert exc.seq is None or exc.seq == got["seq"]
        assert len(exc.message) <= SHORT
        if exc.seq is None:  # the answer can be sent
            wire.error(exc.code, exc.message)
        else:
            wire.nack(exc.seq, exc.code, exc.message)
    else:
        assert isinstance(parsed, wire.Hello | wire.Pub | wire.DownAck | wire.Ping)
        assert got.get("op") == type(parsed).__name__.lower().replace("downack", "down-ack")


@given(st.binary(max_size=64), st.binary(max_size=64))
def test_any_bytes_parse_or_are_refused(first: bytes, then: bytes) -> None:
    decoder = wire.FrameDecoder(1 << 16)
    try:
        got = decoder.feed(first) + decoder.feed(then)
    except wire.FrameError as exc:
        assert exc.fatal
        return
    for each in got:
        with contextlib.suppress(wire.FrameError):
            wire.parse_frame(each, max_data_bytes=1024)


@given(st.sets(st.integers(0, 200)))
def test_ack_ranges_cover_exactly_the_seqs(seqs: set[int]) -> None:
    ranges = wire.ranges(seqs)
    covered = [s for first, last in ranges for s in range(first, last + 1)]
    assert covered == sorted(seqs)
    assert all(b[0] > a[1] + 1 for a, b in itertools.pairwise(ranges))  # maximal runs


def test_engine_frames_are_msgpack_maps() -> None:
    assert msgpack.unpackb(wire.ack([3, 1, 2, 9])) == {"op": "ack", "ranges": [[1, 3], [9, 9]]}
    assert msgpack.unpackb(wire.nack(4, "invalid-event", "why")) == {
        "op": "nack",
        "seq": 4,
        "error": "invalid-event",
        "message": "why",
    }
    assert msgpack.unpackb(wire.down(12, DEVICE, "hook-response/t/0", "ok", "2026"))["id"] == 12


def test_remembered_names_and_devices_never_let_a_bad_one_through() -> None:
    valid = wire.Valid(limit=2)
    assert isinstance(wire.parse_frame(pub(), max_data_bytes=1024, valid=valid), wire.Pub)
    assert valid.names == {"temp"} and valid.devices == {DEVICE}
    for fields, message in [
        ({"name": "hook-x"}, "reserved for the engine"),
        ({"name": ["temp"]}, "name must be a string, got an array"),
        ({"device": [DEVICE]}, "device id must be"),
        ({"device": DEVICE + "!"}, "device id must be"),
    ]:
        with pytest.raises(wire.FrameError, match=message):
            wire.parse_frame(pub(**fields), max_data_bytes=1024, valid=valid)
    for name in ("a", "b", "c"):  # past the limit: forgotten, then learnt again
        wire.parse_frame(pub(name=name), max_data_bytes=1024, valid=valid)
    assert len(valid.names) <= 2
