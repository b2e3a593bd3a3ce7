"""Readers for config values: types, units, env indirection and error collection.

Every reader turns one raw TOML/JSON value into a checked Python value or raises `Invalid`
with the text that follows the key path in the error (`expected ..., got ...`). `Table`
collects those problems instead of stopping at the first one, so one run of
`hookwire check` shows everything that is wrong with a file.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import difflib
import ipaddress
import json
import math
import re
import types
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from engine.templates.values import to_text

T = TypeVar("T")
D = TypeVar("D")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_SHOW_MAX = 60  # longer strings are cut in error messages: one problem stays one line

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_HINT = 'a duration (seconds, or a string such as "500ms", "30s", "5m", "1.5h", "7d")'

_EVENT_NAME_MAX = 64  # the events contract: names are 1 to 64 printable ASCII characters
DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SECRET_PREFIX = "whsec_"
_SECRET_MIN_BYTES = 24  # Standard Webhooks: keys of 24 to 64 bytes
_NODE_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
_HOST_NAME = re.compile(r"[A-Za-z0-9._-]+")
REDIS_SCHEMES = ("redis", "rediss")
REDIS_PORT = 6379
REDIS_URL_HINT = '"redis://HOST:PORT/DB" or "rediss://HOST:PORT/DB" (TLS)'
PARTICLE_OBJECT = "a JSON object (one Particle webhook)"


class Invalid(Exception):
    """A value is wrong; the message is what follows its key path in the error."""


class Reported(Exception):
    """A value is wrong and its problems are already recorded (e.g. per list element)."""


def show(value: object) -> str:
    """How a raw config value appears after `got` in an error: TOML spelling, one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        if len(value) > _SHOW_MAX:
            text = json.dumps(value[:_SHOW_MAX], ensure_ascii=False)[:-1] + '…"'
        return text
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping) and set(value) == {"env"}:
        return "{ env = ... } (only string values can come from the environment)"
    if isinstance(value, Mapping):
        return "a table" if value else "an empty table"
    if isinstance(value, list | tuple):
        return "an array" if value else "an empty array"
    if value is None:
        return "null"
    if isinstance(value, dt.date | dt.time):
        return f"a date/time ({value.isoformat()})"
    return type(value).__name__


def expected(what: str, value: object) -> Invalid:
    return Invalid(f"expected {what}, got {show(value)}")


def parse_duration(value: object) -> float:
    """Seconds from a number of seconds or a string with a unit: "500ms", "30s", "5m", "1.5h", "7d".

    Raises ValueError (`expected a duration ..., got ...`) for anything else, including
    negative, infinite and NaN values.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value.strip())):
        seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    elif isinstance(value, str) and value.strip().startswith("-"):
        raise ValueError(f"expected a duration of 0 or more, got {show(value)}")
    else:
        raise ValueError(f"expected {_DURATION_HINT}, got {show(value)}")
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"expected a finite duration, got {show(value)}")
    if seconds < 0:
        raise ValueError(f"expected a duration of 0 or more, got {show(value)}")
    return seconds


@dataclass(slots=True)
class Context:
    """Where problems go, and how `{ env = "NAME" }` values are looked up."""

    source: str  # "": problems are "<key path>: ..." (a document that came over HTTP)
    environ: Mapping[str, str] | None  # None: env indirection is off (Particle JSON documents)
    problems: list[str] = field(default_factory=list)

    def report(self, key_path: str, message: str) -> None:
        prefix = f"{self.source}: " if self.source else ""
        self.problems.append(f"{prefix}{key_path}: {message}")

    def resolve(self, value: object) -> object:
        """The value itself, or the environment variable a `{ env = "NAME" }` table names."""
        if self.environ is None or not isinstance(value, dict) or set(value) != {"env"}:
            return value
        name = value["env"]
        if not isinstance(name, str) or not name:
            raise Invalid(f"env: expected an environment variable name, got {show(name)}")
        if name not in self.environ:
            raise Invalid(f'environment variable "{name}" is not set')
        return self.environ[name]


Reader = Callable[[Context, object, str], T]
"""Turns (context, raw value, key path) into a checked value, or raises Invalid/Reported."""


def join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


class Table:
    """One TOML table or JSON object being read; unknown keys are reported by `finish`."""

    def __init__(self, ctx: Context, data: Mapping[str, Any], where: str) -> None:
        self.ctx = ctx
        self.data = data
        self.where = where
        self._known: list[str] = []
        self._ignored: set[str] = set()

    def key_path(self, name: str) -> str:
        return join(self.where, name)

    def has(self, *names: str) -> bool:
        return any(self.data.get(name) is not None for name in names)

    def ignore(self, *names: str) -> None:
        """Accept these keys without reading them (nor suggesting them for typos)."""
        self._ignored.update(names)

    def raw(self, *names: str) -> tuple[str, object] | None:
        """(spelling used, value) of the first alias present; JSON null counts as absent."""
        self._known.extend(names)
        present = [name for name in names if self.data.get(name) is not None]
        if len(present) > 1:
            self.ctx.report(self.where, f"expected only one of {', '.join(present)}, got both")
        return (present[0], self.data[present[0]]) if present else None

    def get(self, names: str | tuple[str, ...], read: Reader[T], default: D) -> T | D:
        found = self.raw(*((names,) if isinstance(names, str) else names))
        if found is None:
            return default
        spelling, value = found
        return self.read_value(value, self.key_path(spelling), read, default)

    def opt(self, names: str | tuple[str, ...], read: Reader[T]) -> T | None:
        return self.get(names, read, None)

    def need(self, names: str | tuple[str, ...], read: Reader[T], fallback: D) -> T | D:
        """A required key; `fallback` stands in after the problem is reported."""
        names = (names,) if isinstance(names, str) else names
        if not self.has(*names):
            self.raw(*names)
            self.ctx.report(self.key_path(names[0]), "required key is missing")
            return fallback
        return self.get(names, read, fallback)

    def read_value(self, value: object, key_path: str, read: Reader[T], default: D) -> T | D:
        try:
            return read(self.ctx, value, key_path)
        except Invalid as problem:
            self.ctx.report(key_path, str(problem))
        except Reported:
            pass
        return default

    def finish(self) -> None:
        """Report every key nobody asked for, with the nearest known name."""
        for key in self.data:
            if key in self._known or key in self._ignored:
                continue
            close = difflib.get_close_matches(key, self._known, n=1, cutoff=0.6)
            if close:
                hint = f'did you mean "{close[0]}"?'
            else:
                hint = f"known keys: {', '.join(dict.fromkeys(self._known))}"
            self.ctx.report(self.key_path(key), f"unknown key; {hint}")


def sub_table(ctx: Context, value: object, key_path: str) -> Table:
    if not isinstance(value, dict):
        raise expected("a table", value)
    return Table(ctx, value, key_path)


def tables(ctx: Context, value: object, key_path: str) -> list[Table]:
    """An array of tables (`[[name]]`); each element is checked to be a table."""
    if not isinstance(value, list):
        raise expected(f"an array of tables ([[{key_path}]])", value)
    out: list[Table] = []
    for i, item in enumerate(value):
        where = f"{key_path}[{i}]"
        if isinstance(item, dict):
            out.append(Table(ctx, item, where))
        else:
            ctx.report(where, str(expected("a table", item)))
    return out


# --- scalar readers ------------------------------------------------------------------------


def text(ctx: Context, value: object, key_path: str) -> str:
    value = ctx.resolve(value)
    if not isinstance(value, str):
        raise expected("a string", value)
    return value


def nonempty(ctx: Context, value: object, key_path: str) -> str:
    result = text(ctx, value, key_path)
    if not result:
        raise expected("a non-empty string", result)
    return result


def boolean(ctx: Context, value: object, key_path: str) -> bool:
    if not isinstance(value, bool):
        raise expected("true or false", value)
    return value


def integer(ctx: Context, value: object, key_path: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise expected("an integer", value)
    return value


def int_range(low: int, high: int | None = None) -> Reader[int]:
    if high is not None:
        what = f"an integer from {low} to {high}"
    else:
        what = "a positive integer" if low == 1 else f"an integer of {low} or more"

    def read(ctx: Context, value: object, key_path: str) -> int:
        number = integer(ctx, value, key_path)
        if number < low or (high is not None and number > high):
            raise expected(what, value)
        return number

    return read


positive_int = int_range(1)
count = int_range(0)
port = int_range(0, 65535)


def auto_or_count(high: int, low: int = 0) -> Reader[int | None]:
    """``"auto"`` (None: the program decides) or an integer from ``low`` to ``high``."""
    what = f'"auto" or an integer from {low} to {high:_}'

    def read(ctx: Context, value: object, key_path: str) -> int | None:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise expected(what, value)
        return value

    return read


def rate(ctx: Context, value: object, key_path: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise expected("a number", value)
    if not math.isfinite(value) or value < 0:
        raise expected("a number of 0 or more", value)
    return float(value)


def positive_rate(ctx: Context, value: object, key_path: str) -> float:
    result = rate(ctx, value, key_path)
    if result == 0:
        raise expected("a number greater than 0", value)
    return result


def duration(ctx: Context, value: object, key_path: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as problem:
        raise Invalid(str(problem)) from None


def positive_duration(ctx: Context, value: object, key_path: str) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as problem:
        if "0 or more" in str(problem):  # negative: say what is allowed here
            raise expected("a duration greater than 0", value) from None
        raise Invalid(str(problem)) from None
    if seconds == 0:
        raise expected("a duration greater than 0", value)
    return seconds


def one_of(*choices: str, upper: bool = False) -> Reader[str]:
    """A case-insensitive choice, stored lower case (or upper case)."""

    def read(ctx: Context, value: object, key_path: str) -> str:
        raw = text(ctx, value, key_path)
        folded = raw.upper() if upper else raw.lower()
        if folded not in choices:
            raise expected(f"one of {', '.join(choices)}", raw)
        return folded

    return read


def device_id(ctx: Context, value: object, key_path: str) -> str:
    raw = text(ctx, value, key_path)
    if not DEVICE_ID.fullmatch(raw):
        raise expected("a device id (1 to 64 of A-Z a-z 0-9 _ -)", raw)
    return raw


def device_filter(ctx: Context, value: object, key_path: str) -> str:
    """A hook's `deviceID`: a device id, or "" for any device (Particle's clients send "")."""
    raw = text(ctx, value, key_path)
    # No device registry here: a Particle device name cannot be turned into its id.
    if raw and not DEVICE_ID.fullmatch(raw):
        raise expected(
            'a device id (1 to 64 of A-Z a-z 0-9 _ -; names are not looked up) or "" (any device)',
            raw,
        )
    return raw


def scalar_text(ctx: Context, value: object, key_path: str) -> str:
    """A string, or a number or true/false as the text JavaScript's String() makes of it."""
    value = ctx.resolve(value)
    if not isinstance(value, str | int | float):  # bool is an int
        raise expected("a string, a number, true or false", value)
    return to_text(value)


def sha256_hex(ctx: Context, value: object, key_path: str) -> str:
    raw = text(ctx, value, key_path)
    # Never echo the value: a token pasted here by mistake must not land in logs.
    if raw.startswith("hw_"):
        raise Invalid("expected the token's sha256 (`hookwire token hash` prints it), got a token")
    if not _SHA256.fullmatch(raw.lower()):
        raise Invalid(
            "expected 64 hexadecimal characters (`hookwire token hash` prints them), "
            f"got a string of {len(raw)} characters"
        )
    return raw.lower()


def webhook_secret(ctx: Context, value: object, key_path: str) -> str:
    raw = text(ctx, value, key_path)
    key = raw.removeprefix(_SECRET_PREFIX)
    try:
        size = len(base64.b64decode(key, validate=True))
    except (binascii.Error, ValueError):
        size = -1
    if not raw.startswith(_SECRET_PREFIX) or size < _SECRET_MIN_BYTES:
        # Never echo a secret.
        raise Invalid(
            f'expected "{_SECRET_PREFIX}" followed by base64 of at least '
            f"{_SECRET_MIN_BYTES} bytes, got a string of {len(raw)} characters"
        )
    return raw


def network(ctx: Context, value: object, key_path: str) -> Network:
    raw = text(ctx, value, key_path)
    try:
        return ipaddress.ip_network(raw)
    except ValueError as problem:
        raise Invalid(
            f'expected a network such as "10.0.0.0/8" or "fd00::/8", got {show(raw)} ({problem})'
        ) from None


def seconds_text(seconds: float) -> str:
    """A number of seconds as messages write it: "20s", "25.001s" (to the millisecond)."""
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"


def auto_or_positive_duration(ctx: Context, value: object, key_path: str) -> float | None:
    """``"auto"`` (None: the program decides) or a duration greater than 0."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise expected(f'"auto" or {_DURATION_HINT}', value) from None
    if seconds == 0:
        raise expected('"auto" or a duration greater than 0', value)
    return seconds


def password(ctx: Context, value: object, key_path: str) -> str:
    """A non-empty string, never shown in an error (not even a number written by mistake)."""
    value = ctx.resolve(value)
    if not isinstance(value, str) or not value:
        kinds = {str: "an empty string", bool: "a boolean", dict: "a table", list: "an array"}
        kind = kinds.get(type(value), "a number" if isinstance(value, int | float) else "a value")
        raise Invalid(f'expected a non-empty string or {{ env = "NAME" }}, got {kind}')
    return value


def node_name(ctx: Context, value: object, key_path: str) -> str:
    raw = text(ctx, value, key_path)
    if not _NODE_NAME.fullmatch(raw):
        raise expected("a node name (1 to 128 of A-Z a-z 0-9 . _ -)", raw)
    return raw


@dataclass(frozen=True, slots=True)
class RedisUrl:
    """A checked Redis URL: ``url`` written out in full and without its password,
    ``password`` (percent-decoded) apart, so the URL can be shown and logged."""

    url: str
    password: str | None


def redis_url(ctx: Context, value: object, key_path: str) -> RedisUrl:
    """``redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]``, or ``rediss://`` for TLS.

    The port defaults to 6379 and the database to 0, as in every Redis client; IPv6 hosts
    are in brackets. No query string: the TLS options are not taken from the URL. Errors
    never show the password.
    """
    raw = text(ctx, value, key_path)
    got = _redacted(raw)
    scheme, sep, rest = raw.partition("://")
    if not sep or scheme.lower() not in REDIS_SCHEMES:
        raise Invalid(f"expected {REDIS_URL_HINT}, got {got}")
    scheme = scheme.lower()
    if "?" in rest or "#" in rest:
        raise Invalid(f"expected a URL without a query string or fragment, got {got}")
    netloc, _, path = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    username, colon, password = userinfo.partition(":")
    host, port_text = _split_host_port(hostport)
    if host is None:
        raise Invalid(
            f"expected a host name or address after {scheme}:// "
            f'(IPv6 in brackets: "{scheme}://[::1]:6379/0"), got {got}'
        )
    if port_text is not None and not (
        port_text.isascii() and port_text.isdigit() and 1 <= int(port_text) <= 65535
    ):
        raise Invalid(f"expected a port from 1 to 65535 after the host, got {show(port_text)}")
    if path and not (path.isascii() and path.isdigit()):
        raise Invalid(
            f"expected a database number (an integer of 0 or more) after the port, "
            f"got {show('/' + path)}"
        )
    port = int(port_text) if port_text is not None else REDIS_PORT
    user = f"{username}@" if at and username else ""
    shown_host = f"[{host}]" if ":" in host else host
    url = f"{scheme}://{user}{shown_host}:{port}/{int(path) if path else 0}"
    secret = urllib.parse.unquote(password) if colon and password else None
    return RedisUrl(url, secret)


def _split_host_port(hostport: str) -> tuple[str | None, str | None]:
    """(host, port text or None) of "host", "host:port", "[v6]" or "[v6]:port"; the host
    is None when it is missing or malformed."""
    if hostport.startswith("["):
        inside, bracket, after = hostport[1:].partition("]")
        try:
            ipaddress.IPv6Address(inside)
        except ValueError:
            return None, None
        if not bracket or (after and not after.startswith(":")):
            return None, None
        return inside, after[1:] if after else None
    host, colon, port_text = hostport.partition(":")
    if not _HOST_NAME.fullmatch(host) or ":" in port_text:
        return None, None
    return host, port_text if colon else None


def _redacted(raw: str) -> str:
    """How an unusable Redis URL is shown: its password as ***."""
    scheme, sep, rest = raw.partition("://")
    if not sep:
        return show(raw) if "@" not in raw else f"a string of {len(raw)} characters"
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    userinfo, at, hostport = rest[:end].rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.partition(":")[0] + ":***"
    return show(f"{scheme}{sep}{userinfo}{at}{hostport}{rest[end:]}")


def host_port(ctx: Context, value: object, key_path: str) -> tuple[str, int]:
    """ "host:port", with IPv6 hosts in brackets ("[::1]:7070")."""
    raw = text(ctx, value, key_path)
    host, sep, port_text = raw.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # an unbracketed IPv6 address: the port is ambiguous
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise expected('"host:port" (IPv6 as "[::1]:7070"), port 0 to 65535', raw)
    return host, int(port_text)


# --- compound readers ----------------------------------------------------------------------


def array_of(read: Reader[T]) -> Reader[tuple[T, ...]]:
    """An array whose elements are each checked, problems reported per index."""

    def read_all(ctx: Context, value: object, key_path: str) -> tuple[T, ...]:
        if not isinstance(value, list):
            raise expected("an array", value)
        out: list[T] = []
        bad = False
        for i, item in enumerate(value):
            try:
                out.append(read(ctx, item, f"{key_path}[{i}]"))
            except Invalid as problem:
                ctx.report(f"{key_path}[{i}]", str(problem))
                bad = True
            except Reported:
                bad = True
        if bad:
            raise Reported
        return tuple(out)

    return read_all


def table_of(read: Reader[str], what: str) -> Reader[Mapping[str, str]]:
    """A table whose values are each checked, problems reported per key, made read-only."""

    def read_all(ctx: Context, value: object, key_path: str) -> Mapping[str, str]:
        if not isinstance(value, dict):
            raise expected(what, value)
        out: dict[str, str] = {}
        bad = False
        for key, item in value.items():
            try:
                out[key] = read(ctx, item, join(key_path, key))
            except Invalid as problem:
                ctx.report(join(key_path, key), str(problem))
                bad = True
        if bad:
            raise Reported
        return types.MappingProxyType(out)

    return read_all


string_map = table_of(text, "a table of strings")
scalar_map = table_of(scalar_text, "a table of strings, numbers, true or false")


def json_data(ctx: Context, value: object, key_path: str) -> object:
    """A JSON template: a table, an array or a string, stored immutable.

    `{ env = ... }` is not looked up inside: a JSON template is data, and that table is valid
    JSON.
    """
    if not isinstance(value, dict | list | str):
        raise expected("a table, an array or a string (a JSON template)", value)
    return _freeze(ctx, value, key_path)


def _freeze(ctx: Context, value: object, key_path: str) -> object:
    if isinstance(value, dict):
        return types.MappingProxyType(
            {key: _freeze(ctx, item, join(key_path, key)) for key, item in value.items()}
        )
    if isinstance(value, list):
        return tuple(_freeze(ctx, item, f"{key_path}[{i}]") for i, item in enumerate(value))
    if isinstance(value, float) and not math.isfinite(value):
        ctx.report(key_path, f"expected a finite number (JSON has no inf or nan), got {value}")
        raise Reported
    if value is None or isinstance(value, str | int | float | bool):
        return value
    ctx.report(key_path, f"expected JSON data, got {show(value)}")
    raise Reported


def report_duplicates(
    ctx: Context, items: Iterable[tuple[str, object]], *, quiet: bool = False
) -> None:
    """Report every value already seen at an earlier key path (`quiet`: without the value)."""
    first: dict[object, str] = {}
    for key_path, value in items:
        if value not in first:
            first[value] = key_path
        elif quiet:
            ctx.report(key_path, f"same value as {first[value]}")
        else:
            ctx.report(key_path, f"{show(value)} is already used by {first[value]}")


# --- readers of particular values ----------------------------------------------------------


def slug(ctx: Context, value: object, key_path: str) -> str:
    raw = text(ctx, value, key_path)
    # All digits would be ambiguous with an id in `Config.product` and in URLs.
    if not DEVICE_ID.fullmatch(raw) or raw.isdigit():
        raise expected("a slug (1 to 64 of A-Z a-z 0-9 _ -, not only digits)", raw)
    return raw


def product_ref(slugs: Mapping[str, int], ids: Iterable[int]) -> Reader[int]:
    """A product id or slug; when products are configured, one of theirs."""
    known = tuple(dict.fromkeys(ids))

    def read(ctx: Context, value: object, key_path: str) -> int:
        value = ctx.resolve(value)
        if isinstance(value, str) and value.isascii() and value.isdigit():
            value = int(value)
        if isinstance(value, str):
            if value not in slugs:
                raise expected("a product id, or the slug of a configured product", value)
            return slugs[value]
        number = positive_int(ctx, value, key_path)
        if known and number not in known:
            raise expected(
                f"one of the configured product ids ({', '.join(map(str, known))})", value
            )
        return number

    return read


def path_under(base: Path) -> Reader[Path]:
    """A filesystem path; a relative one is relative to `base` (the config file's folder)."""

    def read(ctx: Context, value: object, key_path: str) -> Path:
        return base / Path(nonempty(ctx, value, key_path)).expanduser()

    return read


def partial_map(ctx: Context, value: object, key_path: str) -> Mapping[str, str]:
    partials = string_map(ctx, value, key_path)
    for name in partials:
        if not name or any(c.isspace() for c in name):
            ctx.report(join(key_path, json.dumps(name)), "expected a partial name without spaces")
            raise Reported
    return partials


def event_prefix(ctx: Context, value: object, key_path: str) -> str:
    raw = text(ctx, value, key_path)
    if not 1 <= len(raw) <= _EVENT_NAME_MAX or not all("!" <= c <= "~" for c in raw):
        raise expected("an event name prefix (1 to 64 printable ASCII, no spaces)", raw)
    return raw


def url(ctx: Context, value: object, key_path: str) -> str:
    raw = text(ctx, value, key_path)
    scheme, sep, rest = raw.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest:
        raise expected("an http:// or https:// URL (a template)", raw)
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    host = authority.rpartition("@")[2]
    if not host or host.startswith(":"):
        raise expected("a URL with a host after the scheme (http://host/path)", raw)
    if re.search(r"\s", re.sub(r"\{\{.*?\}\}", "", raw)):  # spaces in a tag are the tag's
        raise expected("a URL without spaces (write them %20 in a path or query)", raw)
    return raw


def optional_text(ctx: Context, value: object, key_path: str) -> str | None:
    """A template where "" means the default (Particle exports write "" for unset ones)."""
    return text(ctx, value, key_path) or None


def read_json_object(
    ctx: Context, key_path: str, path: Path, relative: str
) -> dict[str, Any] | None:
    """A Particle webhook document; problems are reported at `key_path`, naming `relative`."""
    name = show(relative)
    try:
        document = json.loads(path.read_bytes())
    except OSError as error:
        ctx.report(key_path, f"cannot read {name}: {error.strerror or error}")
        return None
    except UnicodeDecodeError as error:
        ctx.report(key_path, f"{name} is not UTF-8 text (byte {error.start})")
        return None
    except json.JSONDecodeError as error:
        where = f"line {error.lineno}, column {error.colno}"
        ctx.report(key_path, f"{name} is not valid JSON: {error.msg} ({where})")
        return None
    if not isinstance(document, dict):
        ctx.report(key_path, f"{name}: {expected(PARTICLE_OBJECT, document)}")
        return None
    return document
