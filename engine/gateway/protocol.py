"""The gateway channel's wire format, without I/O: msgpack frames in, typed frames out.

A connection carries a stream of msgpack maps each way, each with an ``op``. The decoder
splits the byte stream into frames and enforces the size limit; ``parse_frame`` turns a
map from the gateway into a typed frame or raises ``FrameError`` saying what is wrong.
The encoders build what the engine sends. docs/gateway-protocol.md is the reference.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgpack

from engine.core.events import (
    EventRejected,
    check_data,
    check_device_id,
    check_name,
    check_private,
    check_ttl,
    shown,
    utc_now_iso,
)
from engine.core.model import EventDraft

PROTOCOL_VERSION = 1

KNOWN_OPS = frozenset({"hello", "pub", "down-ack", "ping"})
"""What a gateway may send."""

MAX_KEY_LENGTH = 128
"""A publish's key is a row of the journal's dedupe table for the window: a short id."""
MAX_GATEWAY_NAME = 64
"""The gateway's name goes into logs, metrics and dedupe keys (name#seq)."""
_PUBLISHED_AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")


class FrameError(Exception):
    """A frame the engine cannot take. ``fatal``: the stream can no longer be trusted."""

    def __init__(self, code: str, message: str, *, fatal: bool = False, seq: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.fatal = fatal
        self.seq = seq


# frames from the gateway


@dataclass(frozen=True, slots=True)
class Hello:
    token: str
    version: int
    name: str  # the gateway's name, for logs and metrics


class Pub(NamedTuple):
    """A publish (a tuple: one is made for every event)."""

    seq: int
    draft: EventDraft
    key: str | None  # the device's own id for this publish: retransmissions share it


@dataclass(frozen=True, slots=True)
class DownAck:
    ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Ping:
    pass


ClientFrame = Hello | Pub | DownAck | Ping


class FrameDecoder:
    """Splits bytes into msgpack maps, refusing any frame over ``max_frame`` bytes."""

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        # Room for one incomplete frame plus one read of at most max_frame bytes.
        self._unpacker = msgpack.Unpacker(
            raw=False, max_buffer_size=3 * max_frame, strict_map_key=False
        )
        self._fed = 0
        self._taken = 0

    def feed(self, data: bytes | bytearray) -> list[dict[Any, Any]]:
        """The complete frames ``data`` finishes; raises a fatal FrameError on bad bytes."""
        frames: list[dict[Any, Any]] = []
        view = memoryview(data)
        for start in range(0, len(view), self.max_frame):
            self._feed_piece(view[start : start + self.max_frame], frames)
        return frames

    def _feed_piece(self, piece: memoryview, frames: list[dict[Any, Any]]) -> None:
        unpacker = self._unpacker
        unpacker.feed(piece)
        self._fed += len(piece)
        while True:
            try:
                frame = unpacker.unpack()
            except msgpack.OutOfData:
                break
            except Exception as exc:  # msgpack's advice: unpack may raise any Exception
                raise _undecodable(exc) from None
            end = unpacker.tell()
            size, self._taken = end - self._taken, end
            self._check_size(size)
            if not isinstance(frame, dict):
                kind = type(frame).__name__
                raise FrameError(
                    "malformed", f"a frame must be a msgpack map, got {kind}", fatal=True
                )
            frames.append(frame)
        self._check_size(self._fed - self._taken)

    def _check_size(self, size: int) -> None:
        if size > self.max_frame:
            raise FrameError(
                "frame-too-large",
                f"a frame is over the limit of {self.max_frame} bytes",
                fatal=True,
            )


def _undecodable(exc: Exception) -> FrameError:
    """Why msgpack stopped mid-frame; fatal, as its unpacker is left in an unknown state."""
    if isinstance(exc, TypeError):  # unhashable: strict_map_key=False lets any type be a key
        why = "a map key was an array or a map; keys must be strings or other scalars"
    elif isinstance(exc, UnicodeDecodeError):
        why = f"a str is not valid UTF-8 ({exc.reason}); binary data goes in a bin"
    elif isinstance(exc, msgpack.StackError):
        why = "arrays and maps are nested too deeply"
    elif isinstance(exc, msgpack.FormatError):
        why = "the bytes are not valid msgpack"
    else:  # e.g. a negative ext type that is not a valid timestamp, a length over a limit
        why = f"the bytes are not valid msgpack: {str(exc) or type(exc).__name__}"
    return FrameError("malformed", why, fatal=True)


class Valid:
    """Event names and device ids a connection has already seen pass (bounded).

    A gateway sends the same few names and devices again and again; checking each once
    makes parsing a publish cheaper. Forgets everything when a set reaches ``limit``.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self.names: set[str] = set()
        self.devices: set[str] = set()

    def name(self, value: object) -> str:
        if type(value) is str and value in self.names:
            return value
        return _remember(self.names, check_name(value), self.limit)

    def device(self, value: object) -> str:
        if type(value) is str and value in self.devices:
            return value
        return _remember(self.devices, check_device_id(value), self.limit)


def _remember(known: set[str], value: str, limit: int) -> str:
    if len(known) >= limit:
        known.clear()
    known.add(value)
    return value


def op_label(frame: dict[Any, Any]) -> str:
    """The frame's op as the frames-in metric counts it: a known op, else "bad"."""
    op = frame.get("op")
    return op if isinstance(op, str) and op in KNOWN_OPS else "bad"


def parse_hello(frame: dict[Any, Any]) -> Hello:
    """A connection's first frame, which must be a hello; any FrameError is fatal."""
    if frame.get("op") != "hello":
        raise FrameError("hello-required", "the first frame must be a hello", fatal=True)
    return _hello(frame)


def parse_frame(
    frame: dict[Any, Any],
    *,
    max_data_bytes: int,
    received_at: str | None = None,
    valid: Valid | None = None,
) -> ClientFrame:
    """A map from the gateway as a typed frame; FrameError says what is wrong with it.

    ``received_at`` (ISO 8601) stands in for a pub's missing ``published_at``; ``valid``
    remembers names and devices that passed before.
    """
    op = frame.get("op")
    if op == "pub":
        return _pub(frame, max_data_bytes, received_at or utc_now_iso(), valid or Valid())
    if op == "down-ack":
        return DownAck(tuple(_id_list(frame.get("ids"), "down-ack", "ids")))
    if op == "hello":
        return _hello(frame)
    if op == "ping":
        return Ping()
    if not isinstance(op, str):
        raise FrameError("bad-frame", f"op: expected a string, got {_kind(op)}")
    raise FrameError("unknown-op", f'unknown op "{op[:32]}"; expected pub, down-ack or ping')


def _hello(frame: dict[Any, Any]) -> Hello:
    token = frame.get("token")
    version = frame.get("version")
    name = frame.get("name", "gateway")
    if not isinstance(token, str) or not token:
        raise FrameError("bad-hello", "hello.token: expected a non-empty string", fatal=True)
    if not isinstance(version, int) or isinstance(version, bool):
        raise FrameError("bad-hello", "hello.version: expected an integer", fatal=True)
    if not isinstance(name, str) or not 0 < len(name) <= MAX_GATEWAY_NAME:
        raise FrameError(
            "bad-hello",
            f"hello.name: expected a string of 1 to {MAX_GATEWAY_NAME} characters",
            fatal=True,
        )
    return Hello(token, version, name)


def _pub(frame: dict[Any, Any], max_data_bytes: int, received_at: str, valid: Valid) -> Pub:
    seq = frame.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise FrameError("bad-frame", f"pub.seq: expected an integer >= 0, got {_kind(seq)}")
    try:
        device = valid.device(frame.get("device"))
        draft = EventDraft(
            name=valid.name(frame.get("name")),
            data=check_data(frame.get("data"), max_data_bytes),
            ttl=check_ttl(frame.get("ttl")),
            private=_private(frame.get("private")),
            published_at=_published_at(frame.get("published_at"), received_at),
            device_id=device,
            product_id=_product(frame.get("product")),
        )
    except EventRejected as exc:
        raise FrameError("invalid-event", str(exc), seq=seq) from None
    key = frame.get("key")
    if key is not None and (
        isinstance(key, bool)
        or not isinstance(key, str | int)
        or len(str(key)) > MAX_KEY_LENGTH  # (an int from msgpack has at most 20 digits)
    ):
        raise FrameError(
            "invalid-event", f"key: expected a string or an integer, got {_kind(key)}", seq=seq
        )
    return Pub(seq, draft, None if key is None else str(key))


def _private(value: object) -> bool:
    # nil is "not said", like a missing field: a device event stays private (not public).
    return True if value is None else check_private(value)


def _published_at(value: object, received_at: str) -> str:
    if value is None:
        return received_at
    if not isinstance(value, str) or not _PUBLISHED_AT.fullmatch(value):
        raise EventRejected(
            f"published_at: expected ISO 8601 UTC like 2026-11-29T10:00:00.000Z, got {shown(value)}"
        )
    return value


def _product(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise EventRejected(f"product: expected a positive integer, got {shown(value)}")
    return value


def _id_list(value: object, op: str, field: str) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in value
    ):
        raise FrameError("bad-frame", f"{op}.{field}: expected an array of integers")
    return value


def _kind(value: object) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {shown(value)}"


# frames to the gateway


def _pack(frame: dict[str, Any]) -> bytes:
    packed: bytes = msgpack.packb(frame)
    return packed


def welcome(engine_version: str, max_frame: int, max_unacked: int) -> bytes:
    return _pack(
        {
            "op": "welcome",
            "version": PROTOCOL_VERSION,
            "engine": engine_version,
            "max_frame": max_frame,
            "max_unacked": max_unacked,
        }
    )


def ack(seqs: Iterable[int]) -> bytes:
    """Acknowledge publishes, as ranges ``[first, last]`` of consecutive sequence numbers."""
    return _pack({"op": "ack", "ranges": ranges(seqs)})


def ranges(seqs: Iterable[int]) -> list[list[int]]:
    """[1, 2, 3, 7, 9, 10] -> [[1, 3], [7, 7], [9, 10]] (input in any order)."""
    out: list[list[int]] = []
    for seq in sorted(set(seqs)):
        if out and out[-1][1] == seq - 1:
            out[-1][1] = seq
        else:
            out.append([seq, seq])
    return out


def nack(seq: int, code: str, message: str) -> bytes:
    return _pack({"op": "nack", "seq": seq, "error": code, "message": message})


def error(code: str, message: str) -> bytes:
    return _pack({"op": "error", "error": code, "message": message})


def pong() -> bytes:
    return _pack({"op": "pong"})


def down(downlink_id: int, device: str, name: str, data: str, published_at: str) -> bytes:
    return _pack(
        {
            "op": "down",
            "id": downlink_id,
            "device": device,
            "name": name,
            "data": data,
            "published_at": published_at,
        }
    )
