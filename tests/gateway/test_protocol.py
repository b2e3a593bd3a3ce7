"""The gateway wire format without sockets: framing, limits, frame validation, ack ranges."""

from __future__ import annotations

import itertools
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import gateway_protocol as wire

DEVICE = "0123456789abcdef01234567"


def pub(**fields: Any) -> dict[str, Any]:
    return {"op": "pub", "seq": 1, "device": DEVICE, "name": "temp", "data": "21.5", **fields}


def parse(frame: dict[str, Any]) -> wire.ClientFrame:
    return wire.parse_frame(frame, max_data_bytes=1024)


values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
frames = st.dictionaries(st.text(max_size=8), values, max_size=6)


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
    assert got == sent


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
    [(b"\xc1", "not valid msgpack"), (msgpack.packb([1, 2]), "must be a msgpack map, got list")],
)
def test_bytes_that_are_not_frames_break_the_stream(data: bytes, message: str) -> None:
    with pytest.raises(wire.FrameError, match=message) as caught:
        wire.FrameDecoder(1000).feed(data)
    assert caught.value.fatal


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


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "hook-response/x"}, 'may not start with "hook-"'),
        ({"data": 5}, "data must be a string, got int"),
        ({"data": "x" * 2000}, "data is 2000 bytes; the limit is 1024 bytes"),
        ({"device": "not a device!"}, "device id must be"),
        ({"ttl": "soon"}, "ttl must be a whole number of seconds"),
        ({"product": "1001"}, "product: expected a positive integer"),
        ({"published_at": "yesterday"}, "published_at: expected ISO 8601"),
        ({"key": [1]}, "key: expected a string or an integer"),
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
        ({"name": ["temp"]}, "name must be a string, got list"),
        ({"device": [DEVICE]}, "device id must be"),
        ({"device": DEVICE + "!"}, "device id must be"),
    ]:
        with pytest.raises(wire.FrameError, match=message):
            wire.parse_frame(pub(**fields), max_data_bytes=1024, valid=valid)
    for name in ("a", "b", "c"):  # past the limit: forgotten, then learnt again
        wire.parse_frame(pub(name=name), max_data_bytes=1024, valid=valid)
    assert len(valid.names) <= 2
