"""msgpack values of every type for the gateway's tests, including ones no dict can hold."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import msgpack
from hypothesis import strategies as st

DEEP = 1000
"""Deeper than Python's recursion limit (repr() of it fails), within msgpack's 1024."""

_PACKER = msgpack.Packer()


@dataclass(frozen=True)
class Map:
    """A msgpack map as its pairs: keys of any type, even arrays and maps."""

    pairs: tuple[tuple[object, object], ...]


@dataclass(frozen=True)
class Raw:
    """Bytes sent as they are: what packb would not write (a str that is not UTF-8)."""

    data: bytes


def pack(value: object) -> bytes:
    """The msgpack bytes of a value that may hold Map and Raw anywhere."""
    if isinstance(value, Map):
        pairs = (pack(key) + pack(item) for key, item in value.pairs)
        return _PACKER.pack_map_header(len(value.pairs)) + b"".join(pairs)
    if isinstance(value, list):
        return _PACKER.pack_array_header(len(value)) + b"".join(pack(item) for item in value)
    if isinstance(value, Raw):
        return value.data
    packed: bytes = msgpack.packb(value)
    return packed


def frame(**fields: object) -> bytes:
    """A frame's bytes; a field's value may be a Map or a Raw."""
    return pack(Map(tuple(fields.items())))


def nested(depth: int = DEEP) -> Raw:
    """Arrays in arrays ``depth`` deep around a nil (packb refuses to nest that deep)."""
    return Raw(b"\x91" * depth + b"\xc0")


def ext(code: int, data: bytes) -> Raw:
    """An ext of any type, also the negative ones msgpack reserves (-1: a timestamp)."""
    return Raw(b"\xc7" + struct.pack(">Bb", len(data), code) + data)


INTEGERS = [-(2**63), -(2**31) - 1, -1, 0, 2**31, 2**63 - 1, 2**64 - 1]
"""The extremes of msgpack's int formats."""

integers = st.integers(-(2**63), 2**64 - 1) | st.sampled_from(INTEGERS)
timestamps = st.builds(
    msgpack.Timestamp, st.integers(-(2**63), 2**63 - 1), st.integers(0, 999_999_999)
)
scalars = (
    st.none()
    | st.booleans()
    | integers
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8))
    | timestamps
)
"""Every msgpack type but arrays and maps, as they decode back (negative exts are msgpack's)."""

values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(scalars, inner, max_size=4),
    max_leaves=10,
)
"""Any value a dict can hold: what decodes back equal (as bytes) to what was packed."""

odd_bytes = (
    st.binary(max_size=8).map(lambda b: Raw(msgpack.packb(b, use_bin_type=False)))  # str
    | st.floats(width=32).map(lambda f: Raw(b"\xca" + struct.pack(">f", f)))
    | st.builds(ext, st.integers(-128, -1), st.binary(max_size=13))
    | st.integers(DEEP - 2, 1030).map(nested)
)
"""Encodings packb would not make: a str of any bytes, a float32, negative exts, deep nesting."""

wire_values = st.recursive(
    scalars | odd_bytes,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(st.tuples(inner, inner), max_size=4).map(lambda p: Map(tuple(p)))
    ),
    max_leaves=12,
)
"""Any msgpack value, with map keys of any type too (arrays and maps among them)."""
