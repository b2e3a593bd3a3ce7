"""The config file: TOML (and Particle webhook JSON) into validated, frozen dataclasses.

`load_config` reads the whole file, collects every problem it finds (unknown keys with the
nearest known name, wrong types, bad values, missing environment variables) and raises one
`ConfigError` listing them all, one per line, each as `<file>: <key path>: <what is wrong>`.
The key names are the user interface: see docs/config.md.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import socket
import tomllib
import types
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.config import _fields as f
from engine.config._fields import Network, parse_duration
from engine.core.fdlimit import connection_share
from engine.core.retry import DEFAULT_DELAYS
from engine.templates import LANGUAGES

__all__ = [
    "ApiConfig",
    "AuthConfig",
    "AuthPair",
    "BearerToken",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "DeliveryConfig",
    "GatewayConfig",
    "HookConfig",
    "JournalConfig",
    "LimitsConfig",
    "LogConfig",
    "ProductConfig",
    "ServerConfig",
    "SseConfig",
    "TokenConfig",
    "load_config",
    "parse_duration",
    "read_particle_webhook",
]

SCOPES = ("publish", "subscribe", "admin", "gateway", "hooks", "metrics")
LOG_LEVELS = ("debug", "info", "warning", "error")
JOURNAL_BACKENDS = ("memory", "sqlite", "redis")
REQUEST_TYPES = ("GET", "POST", "PUT", "PATCH", "DELETE")
_BACKEND = f.one_of(*JOURNAL_BACKENDS)
_REQUEST_TYPE = f.one_of(*REQUEST_TYPES, upper=True)
_LANGUAGE = f.one_of(*LANGUAGES)
DEFAULT_RETRY = DEFAULT_DELAYS  # 5s 5m 30m 2h 5h 10h 10h
MAX_WORKERS = 64
MAX_CONNECTIONS = 1_000_000
DEFAULT_JOURNAL_PATH = Path("var/hookwire.db")  # relative to the config file's folder
DEFAULT_TIMEOUT = 20.0  # [delivery] timeout
LEASE_MARGIN = 5.0  # a lease must exceed the longest hook timeout by more than this
AUTO_LEASE_EXTRA = 5.0  # lease = "auto": the longest timeout + LEASE_MARGIN + this

# Fields of an exported Particle webhook that describe the record, not the delivery.
PARTICLE_METADATA = ("integration_type", "id", "created_at", "counters", "logs", "errors")
# The spellings of `auth`: HTTP Basic (Hookwire's and Particle's), or a bearer token.
AUTH_FORMS: tuple[tuple[str, ...], ...] = (("username", "password"), ("user", "pass"), ("bearer",))
AUTH_FORMS_TEXT = "{ username, password }, { user, pass } or { bearer }"
# `[api] cors_origins`: origins as browsers write them in `Origin`, or "*" alone.
ANY_ORIGIN = "*"
ORIGIN_PORTS = {"http": 80, "https": 443}  # the schemes, and the port an origin leaves out
ORIGIN_HINT = (
    'an origin, "scheme://host[:port]" with scheme http or https and nothing after '
    '(such as "https://example.com" or "http://127.0.0.1:8081"), or "*" for any origin'
)
_ORIGIN_HOST = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?")


class ConfigError(Exception):
    """All problems found in one config file; str() is one problem per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Where the HTTP API listens; port 0 picks a free port."""

    host: str = "127.0.0.1"
    port: int = 8080
    tls_cert: Path | None = None  # PEM certificate chain: the API (and the gateway, when
    tls_key: Path | None = None  # [gateway] tls) serve TLS with this pair


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """``[api]``: the origins whose browser pages may use the API (CORS).

    ``cors_origins`` holds origins as browsers write them (lower case, no default port),
    or ``"*"`` alone (every origin); empty: none.
    """

    cors_origins: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Logging: level is debug, info, warning or error."""

    level: str = "info"
    format: str = "text"  # text | json (one object per line)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """/metrics: open to anyone who reaches the port, or behind the ``metrics`` scope."""

    require_token: bool = False


@dataclass(frozen=True, slots=True)
class TokenConfig:
    """A bearer token, known by its sha256, with what it may do and see."""

    name: str
    sha256: str
    scopes: frozenset[str]
    products: frozenset[int] = frozenset()  # empty: every product
    devices: frozenset[str] = frozenset()  # empty: every device


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """The API's bearer tokens."""

    tokens: tuple[TokenConfig, ...] = ()


@dataclass(frozen=True, slots=True)
class ProductConfig:
    """A product devices belong to, addressable by id or slug."""

    id: int
    slug: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Sizes and times the API accepts from its clients."""

    max_data_bytes: int = 1024
    max_body_bytes: int = 65536
    max_header_bytes: int = 16384
    idle_timeout: float = 60.0
    request_timeout: float = 10.0
    publish_rate: float = 0.0  # events/s per token; 0 = unlimited
    publish_burst: int = 0  # 0 = same as the rate


@dataclass(frozen=True, slots=True)
class SseConfig:
    """Server-Sent Events: keep-alive period and per-subscriber buffer."""

    keepalive: float = 9.0
    buffer: int = 1024
    batch_window: float = 0.01


@dataclass(frozen=True, slots=True)
class JournalConfig:
    """The event store; `load_config` makes `path` absolute.

    Backend "redis": ``url`` is set, written out in full (``redis[s]://[USER@]HOST:PORT/DB``)
    and without its password, which is ``password`` (from the URL, or the ``password`` key,
    usually ``{ env = "NAME" }``); connect with ``coredis.Redis.from_url(url,
    decode_components=True, password=password)``. ``path``, ``synchronous`` and
    ``commit_interval`` are SQLite's; other backends ignore them.
    """

    backend: str = "sqlite"
    path: Path = DEFAULT_JOURNAL_PATH
    synchronous: str = "full"
    retention: float = 7 * 86400.0
    commit_interval: float = 0.002  # at most this between commits; 0: commit at once
    url: str | None = None  # backend "redis" only
    password: str | None = field(default=None, repr=False)  # backend "redis" only


@dataclass(frozen=True, slots=True)
class TemplatesConfig:
    """``[templates]``: the language of hooks that do not name one (``template_language``)."""

    language: str = "mustache"


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """Defaults for every hook's deliveries, and the SSRF guard's allowed networks."""

    allow_networks: tuple[Network, ...] = ()
    max_in_flight: int = 16
    timeout: float = DEFAULT_TIMEOUT
    retry: tuple[float, ...] = DEFAULT_RETRY
    workers: int | None = None  # delivery worker processes; None: "auto"
    max_connections: int | None = None  # open outbound connections in all; None: "auto"

    def worker_count(self) -> int:
        """The worker processes to start: ``workers``, or for "auto" one fewer than the CPUs
        this process may run on, at least 1 (0: deliveries run in the main process)."""
        if self.workers is not None:
            return self.workers
        return max(1, len(os.sched_getaffinity(0)) - 1)

    def connection_limit(self, files: int) -> int:
        """Outbound connections one delivery process may keep open: ``max_connections``
        split evenly among the worker processes, or for "auto" three quarters of ``files``
        (the process's open-file limit)."""
        if self.max_connections is None:
            return connection_share(files)
        processes = max(1, self.worker_count())
        return max(1, -(-self.max_connections // processes))


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """``[cluster]``, for ``[journal] backend = "redis"``: this node's name, and the lease
    under which it owns delivery partitions.

    ``lease`` is in seconds, above the longest hook timeout plus ``LEASE_MARGIN`` (checked
    at load); "auto" is resolved at load to that longest timeout plus 10 s. ``node`` None:
    the default name, ``node_name()``.
    """

    node: str | None = None
    lease: float = DEFAULT_TIMEOUT + LEASE_MARGIN + AUTO_LEASE_EXTRA

    def node_name(self) -> str:
        """``node``, or by default "<host name>-<pid>" of the calling process: call it
        once, in the daemon's main process, and hand the name to its other processes."""
        return self.node or f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The device cloud's msgpack channel: a TCP address and/or a Unix socket."""

    tcp: tuple[str, int] | None = None
    tls: bool = False  # the TCP listener serves TLS with [server] tls_cert and tls_key
    unix: Path | None = None
    max_frame_bytes: int = 65536
    max_unacked: int = 1024  # downlinks in flight per connection, and publishes not yet acked
    downlink_ttl: float = 60.0
    dedupe_window: float = 600.0


@dataclass(frozen=True, slots=True)
class AuthPair:
    """HTTP Basic credentials of a hook (templates)."""

    username: str
    password: str


@dataclass(frozen=True, slots=True)
class BearerToken:
    """A hook's bearer token (a template), sent as `Authorization: Bearer <token>`."""

    token: str


@dataclass(frozen=True, slots=True)
class HookConfig:
    """One webhook, as written: templates are kept as text and compiled elsewhere.

    `where` is the hook's key path ("hooks[0]", or "hooks[1] (hooks/legacy.json)" for a
    Particle document); later checks append ".field" to it in their messages.
    """

    where: str
    name: str
    event: str
    url: str
    request_type: str = "POST"
    json: object | None = None  # MappingProxyType / tuple / str / number / bool / None
    form: Mapping[str, str] | None = None
    body: str | None = None
    query: Mapping[str, str] | None = None
    headers: Mapping[str, str] | None = None
    auth: AuthPair | BearerToken | None = None
    devices: frozenset[str] = frozenset()
    product: int | None = None
    no_defaults: bool = False
    response_topic: str | None = None
    error_response_topic: str | None = None
    response_template: str | None = None
    reject_unauthorized: bool = True
    disabled: bool = False
    timeout: float | None = None  # None: [delivery].timeout
    retry: tuple[float, ...] | None = None  # None: [delivery].retry
    rate: float | None = None  # requests/s; None: unlimited
    burst: int | None = None
    max_in_flight: int | None = None  # None: [delivery].max_in_flight
    ordered: bool = False
    secret: str | None = None
    typed_json: bool = False
    template_language: str = "mustache"  # Particle documents: always "mustache"


@dataclass(frozen=True, slots=True)
class Config:
    """The whole config file, validated."""

    path: Path
    server: ServerConfig = ServerConfig()
    api: ApiConfig = ApiConfig()
    log: LogConfig = LogConfig()
    metrics: MetricsConfig = MetricsConfig()
    auth: AuthConfig = AuthConfig()
    products: tuple[ProductConfig, ...] = ()
    limits: LimitsConfig = LimitsConfig()
    sse: SseConfig = SseConfig()
    journal: JournalConfig = JournalConfig()
    cluster: ClusterConfig = ClusterConfig()  # meaningful with journal backend "redis"
    delivery: DeliveryConfig = DeliveryConfig()
    gateway: GatewayConfig = GatewayConfig()
    partials: Mapping[str, str] = field(default_factory=lambda: types.MappingProxyType({}))
    templates: TemplatesConfig = TemplatesConfig()
    hooks: tuple[HookConfig, ...] = ()

    def product(self, key: str) -> ProductConfig | None:
        """The product with this decimal id or this slug."""
        number = int(key) if key.isascii() and key.isdigit() else None
        for product in self.products:
            if product.id == number or (product.slug is not None and product.slug == key):
                return product
        return None


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read and check a config file; raise ConfigError listing every problem found."""
    config, problems = read_config_as_far_as_possible(path, environ)
    if problems:
        raise ConfigError(problems)
    return config


def read_config_as_far_as_possible(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> tuple[Config, list[str]]:
    """A config file read past its problems: the config with defaults where values are
    wrong (a broken hook left out), and every problem found, so that a check can go on to
    what depends on the rest (templates). ConfigError only when the file cannot be read."""
    source = os.fspath(path)
    config_path = Path(source)
    try:
        with config_path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as error:
        raise ConfigError([f"{source}: cannot read: {error.strerror or error}"]) from None
    except UnicodeDecodeError as error:
        raise ConfigError([f"{source}: not UTF-8 text (byte {error.start})"]) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([f"{source}: not valid TOML: {error}"]) from None
    ctx = f.Context(source, os.environ if environ is None else environ)
    config = _read_config(f.Table(ctx, data, ""), config_path, config_path.absolute().parent)
    return config, ctx.problems


# --- sections ------------------------------------------------------------------------------


def _read_config(root: f.Table, path: Path, base: Path) -> Config:
    products = _read_products(root)
    product_ref = _product_reader(products)
    templates = _read_templates(_section(root, "templates"))
    server = _read_server(_section(root, "server"), base)
    api = _read_api(_section(root, "api"))
    log = _read_log(_section(root, "log"))
    metrics = _read_metrics(_section(root, "metrics"))
    auth = _read_auth(_section(root, "auth"), product_ref)
    limits = _read_limits(_section(root, "limits"))
    sse = _read_sse(_section(root, "sse"))
    journal, backend_known = _read_journal(_section(root, "journal"), base)
    config = Config(
        path=path,
        server=server,
        api=api,
        log=log,
        metrics=metrics,
        auth=auth,
        products=products,
        limits=limits,
        sse=sse,
        journal=journal,
        delivery=_read_delivery(_section(root, "delivery")),
        gateway=_read_gateway(_section(root, "gateway"), base),
        partials=root.get("partials", f.partial_map, types.MappingProxyType({})),
        templates=templates,
        hooks=_read_hooks(root, base, product_ref, templates.language),
    )
    if config.gateway.tls and config.server.tls_cert is None:
        root.ctx.report("gateway.tls", "needs [server] tls_cert and tls_key: the pair it serves")
    if config.gateway.tls and config.gateway.tcp is None:
        root.ctx.report("gateway.tls", "applies to the TCP listener: set gateway.tcp too")
    cluster = _read_cluster(root, config, backend_known=backend_known)
    root.finish()
    return dataclasses.replace(config, cluster=cluster)


def _section(root: f.Table, name: str) -> f.Table:
    """The table `[name]`; an empty one if it is absent or not a table (reported)."""
    found = root.raw(name)
    if found is not None and not isinstance(found[1], dict):
        root.ctx.report(name, str(f.expected(f"a table ([{name}])", found[1])))
    data = found[1] if found is not None and isinstance(found[1], dict) else {}
    return f.Table(root.ctx, data, name)


def _read_server(t: f.Table, base: Path) -> ServerConfig:
    d = ServerConfig()
    server = ServerConfig(
        host=t.get("host", f.nonempty, d.host),
        port=t.get("port", f.port, d.port),
        tls_cert=t.opt("tls_cert", f.path_under(base)),
        tls_key=t.opt("tls_key", f.path_under(base)),
    )
    t.finish()
    if (server.tls_cert is None) != (server.tls_key is None):
        given, missing = (
            ("tls_cert", "tls_key") if server.tls_key is None else ("tls_key", "tls_cert")
        )
        t.ctx.report(
            t.key_path(missing),
            f"required with {given} (TLS needs both the certificate and its key)",
        )
    for name, file in (("tls_cert", server.tls_cert), ("tls_key", server.tls_key)):
        if file is not None and not os.access(file, os.R_OK):
            why = "does not exist" if not file.exists() else "is not readable by this user"
            t.ctx.report(t.key_path(name), f"{file} {why}")
    return server


def _read_metrics(t: f.Table) -> MetricsConfig:
    metrics = MetricsConfig(require_token=t.get("require_token", f.boolean, False))
    t.finish()
    return metrics


def _read_api(t: f.Table) -> ApiConfig:
    origins = t.get("cors_origins", f.array_of(_origin), ())
    t.finish()
    key = t.key_path("cors_origins")
    if ANY_ORIGIN in origins and len(origins) > 1:
        t.ctx.report(
            key, 'expected "*" alone (it allows every origin) or a list of origins, got both'
        )
    f.report_duplicates(t.ctx, [(f"{key}[{i}]", origin) for i, origin in enumerate(origins)])
    return ApiConfig(cors_origins=origins)


def _origin(ctx: f.Context, value: object, key_path: str) -> str:
    """One of ``cors_origins``: ``"*"``, or an origin written as browsers send ``Origin``
    (scheme and host in lower case, the scheme's default port left out), so that a
    request's header is compared as it is."""
    raw = f.text(ctx, value, key_path)
    if raw == ANY_ORIGIN:
        return raw
    if not raw or raw != raw.strip() or any(c.isspace() or not c.isprintable() for c in raw):
        raise f.expected(ORIGIN_HINT, raw)
    try:
        parts = urllib.parse.urlsplit(raw)
        port = parts.port
    except ValueError:
        raise f.expected(ORIGIN_HINT, raw) from None
    if parts.scheme not in ORIGIN_PORTS or "://" not in raw or not parts.netloc:
        raise f.expected(ORIGIN_HINT, raw)
    if parts.path or parts.query or parts.fragment or "?" in raw or "#" in raw:
        what = "a trailing slash" if parts.path == "/" and raw.endswith("/") else "a path"
        raise f.Invalid(
            f"expected an origin, without {what} or anything after the host and port "
            f'("{parts.scheme}://{parts.netloc}"), got {f.show(raw)}'
        )
    host = parts.hostname or ""
    if "@" in parts.netloc or parts.netloc.endswith(":") or port == 0 or not _origin_host(host):
        raise f.expected(ORIGIN_HINT, raw)
    shown = f"[{ipaddress.IPv6Address(host).compressed}]" if ":" in host else host
    if port is None or port == ORIGIN_PORTS[parts.scheme]:
        return f"{parts.scheme}://{shown}"
    return f"{parts.scheme}://{shown}:{port}"


def _origin_host(host: str) -> bool:
    """True for a host name, an IPv4 address or (from brackets) an IPv6 one."""
    if ":" in host and "%" not in host:  # no zone id: browsers take none in a URL
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    return bool(_ORIGIN_HOST.fullmatch(host))


def _read_log(t: f.Table) -> LogConfig:
    d = LogConfig()
    log = LogConfig(
        level=t.get("level", f.one_of(*LOG_LEVELS), d.level),
        format=t.get("format", f.one_of("text", "json"), d.format),
    )
    t.finish()
    return log


def _read_products(root: f.Table) -> tuple[ProductConfig, ...]:
    products: list[tuple[str, ProductConfig]] = []
    for t in root.get("products", f.tables, []):
        product_id = t.need("id", f.positive_int, None)
        slug = t.opt("slug", f.slug)
        name = t.opt("name", f.nonempty)
        t.finish()
        if product_id is not None:
            products.append((t.where, ProductConfig(product_id, slug, name)))
    f.report_duplicates(root.ctx, [(f"{w}.id", p.id) for w, p in products])
    f.report_duplicates(root.ctx, [(f"{w}.slug", p.slug) for w, p in products if p.slug])
    return tuple(product for _, product in products)


def _product_reader(products: tuple[ProductConfig, ...]) -> f.Reader[int]:
    """Reads the `product` of a hook or a token: the id or slug of one of `products`."""
    slugs = {product.slug: product.id for product in products if product.slug}
    return f.product_ref(slugs, [product.id for product in products])


def _read_auth(t: f.Table, product_ref: f.Reader[int]) -> AuthConfig:
    tokens: list[tuple[str, TokenConfig]] = []
    for token_table in t.get("tokens", f.tables, []):
        token = _read_token(token_table, product_ref)
        if token is not None:
            tokens.append((token_table.where, token))
    t.finish()
    f.report_duplicates(t.ctx, [(f"{w}.name", token.name) for w, token in tokens])
    sha256s = [(f"{w}.sha256", token.sha256) for w, token in tokens]
    f.report_duplicates(t.ctx, sha256s, quiet=True)  # two names for one token
    return AuthConfig(tuple(token for _, token in tokens))


def _read_token(t: f.Table, product_ref: f.Reader[int]) -> TokenConfig | None:
    name = t.need("name", f.nonempty, None)
    sha256 = t.need("sha256", f.sha256_hex, None)
    scopes = t.need("scopes", _scopes, None)
    products = t.get("products", f.array_of(product_ref), ())
    devices = t.get("devices", f.array_of(f.device_id), ())
    t.finish()
    if name is None or sha256 is None or scopes is None:
        return None
    return TokenConfig(name, sha256, scopes, frozenset(products), frozenset(devices))


def _scopes(ctx: f.Context, value: object, key_path: str) -> frozenset[str]:
    scopes = f.array_of(f.one_of(*SCOPES))(ctx, value, key_path)
    if not scopes:
        raise f.expected(f"at least one of {', '.join(SCOPES)}", value)
    return frozenset(scopes)


def _read_limits(t: f.Table) -> LimitsConfig:
    d = LimitsConfig()
    limits = LimitsConfig(
        max_data_bytes=t.get("max_data_bytes", f.positive_int, d.max_data_bytes),
        max_body_bytes=t.get("max_body_bytes", f.positive_int, d.max_body_bytes),
        max_header_bytes=t.get("max_header_bytes", f.positive_int, d.max_header_bytes),
        idle_timeout=t.get("idle_timeout", f.positive_duration, d.idle_timeout),
        request_timeout=t.get("request_timeout", f.positive_duration, d.request_timeout),
        publish_rate=t.get("publish_rate", f.rate, d.publish_rate),
        publish_burst=t.get("publish_burst", f.count, d.publish_burst),
    )
    t.finish()
    return limits


def _read_sse(t: f.Table) -> SseConfig:
    d = SseConfig()
    sse = SseConfig(
        keepalive=t.get("keepalive", f.positive_duration, d.keepalive),
        buffer=t.get("buffer", f.positive_int, d.buffer),
        batch_window=t.get("batch_window", f.duration, d.batch_window),
    )
    t.finish()
    return sse


def _read_journal(t: f.Table, base: Path) -> tuple[JournalConfig, bool]:
    """The journal, and whether its backend is known (the default, or one correctly named):
    what does not apply to a misspelled backend is not reported on top of it."""
    d = JournalConfig()
    named = t.get("backend", _BACKEND, None)
    backend_known = named is not None or not t.has("backend")
    backend = named or d.backend
    redis = t.opt("url", f.redis_url)
    password = t.opt("password", f.password)
    if password is None and redis is not None:
        password = redis.password
    journal = JournalConfig(
        backend=backend,
        path=t.get("path", f.path_under(base), base / DEFAULT_JOURNAL_PATH),
        synchronous=t.get("synchronous", f.one_of("full", "normal"), d.synchronous),
        retention=t.get("retention", f.positive_duration, d.retention),
        commit_interval=t.get("commit_interval", f.duration, d.commit_interval),
        url=redis.url if redis is not None else None,
        password=password,
    )
    t.finish()
    if backend == "redis":
        if not t.has("url"):
            t.ctx.report(
                t.key_path("url"),
                'required key is missing: backend "redis" needs the Redis server\'s URL, '
                '"redis://HOST:PORT/DB" ("rediss://" for TLS)',
            )
        if t.has("password") and redis is not None and redis.password is not None:
            t.ctx.report(
                t.key_path("password"),
                "expected the password either here or in journal.url, got both",
            )
    elif backend_known:
        for key in ("url", "password"):
            if t.has(key):
                t.ctx.report(t.key_path(key), f'applies only to backend "redis", not "{backend}"')
    return journal, backend_known


def _read_cluster(root: f.Table, config: Config, *, backend_known: bool) -> ClusterConfig:
    """``[cluster]``: meaningful only on the Redis journal, where the lease is checked
    against the timeouts; with another backend the section is refused (daemons configured
    as a cluster would each run alone, unaware)."""
    found = root.raw("cluster")
    present = found is not None and isinstance(found[1], dict)  # else reported as no table
    t = _section(root, "cluster")
    node = t.opt("node", f.node_name)
    lease = t.get("lease", f.auto_or_positive_duration, None)
    t.finish()
    journal = config.journal
    if journal.backend != "redis":
        if present and backend_known:
            root.ctx.report(
                "cluster",
                f'applies only to [journal] backend = "redis", not "{journal.backend}"',
            )
        return ClusterConfig(node=node)
    longest, where = _longest_timeout(config)
    floor = longest + LEASE_MARGIN
    if lease is None:
        return ClusterConfig(node=node, lease=floor + AUTO_LEASE_EXTRA)
    if lease <= floor:
        at_least = math.floor(floor * 1000) / 1000 + 0.001
        root.ctx.report(
            t.key_path("lease"),
            f"{f.seconds_text(lease)} must be above the longest hook timeout "
            f"({f.seconds_text(longest)}, {where}) plus {f.seconds_text(LEASE_MARGIN)}: "
            f"raise it to at least {f.seconds_text(at_least)} or lower the timeouts "
            f'("auto" makes it {f.seconds_text(floor + AUTO_LEASE_EXTRA)})',
        )
    return ClusterConfig(node=node, lease=lease)


def _longest_timeout(config: Config) -> tuple[float, str]:
    """The longest time one delivery attempt may take, and the key that sets it: every
    hook's ``timeout``, and ``[delivery] timeout`` for the hooks without one (the API's
    hooks included)."""
    longest, where = config.delivery.timeout, "delivery.timeout"
    for hook in config.hooks:
        if hook.timeout is not None and hook.timeout > longest:
            longest, where = hook.timeout, f"{hook.where}.timeout"
    return longest, where


def _read_delivery(t: f.Table) -> DeliveryConfig:
    d = DeliveryConfig()
    delivery = DeliveryConfig(
        allow_networks=t.get("allow_networks", f.array_of(f.network), d.allow_networks),
        max_in_flight=t.get("max_in_flight", f.positive_int, d.max_in_flight),
        timeout=t.get("timeout", f.positive_duration, d.timeout),
        retry=t.get("retry", f.array_of(f.duration), d.retry),
        workers=t.get("workers", f.auto_or_count(MAX_WORKERS), d.workers),
        max_connections=t.get(
            "max_connections", f.auto_or_count(MAX_CONNECTIONS, low=1), d.max_connections
        ),
    )
    t.finish()
    return delivery


def _read_gateway(t: f.Table, base: Path) -> GatewayConfig:
    d = GatewayConfig()
    gateway = GatewayConfig(
        tcp=t.opt("tcp", f.host_port),
        tls=t.get("tls", f.boolean, d.tls),
        unix=t.opt("unix", f.path_under(base)),
        max_frame_bytes=t.get("max_frame_bytes", f.positive_int, d.max_frame_bytes),
        max_unacked=t.get("max_unacked", f.positive_int, d.max_unacked),
        downlink_ttl=t.get("downlink_ttl", f.positive_duration, d.downlink_ttl),
        dedupe_window=t.get("dedupe_window", f.positive_duration, d.dedupe_window),
    )
    t.finish()
    return gateway


# --- hooks ---------------------------------------------------------------------------------


def read_particle_webhook(
    document: object, *, where: str, name: str | None, config: Config
) -> HookConfig:
    """A Particle webhook JSON document (already parsed from JSON) as a hook.

    Raises ConfigError listing every problem, each "<where>.<field>: ...", as the config
    file words them. `name` wins over the document's own; with neither, one problem is
    "<where>.name: required key is missing". Templates are compiled by engine.hooks.
    """
    ctx = f.Context("", None)
    if not isinstance(document, dict):
        ctx.report(where, str(f.expected(f.PARTICLE_OBJECT, document)))
        raise ConfigError(ctx.problems)
    table = f.Table(ctx, document, where)
    hook = _read_hook(table, _product_reader(config.products), particle=True, name=name)
    if hook is None or ctx.problems:
        raise ConfigError(ctx.problems)
    return hook


def _read_templates(t: f.Table) -> TemplatesConfig:
    templates = TemplatesConfig(language=t.get("language", _LANGUAGE, "mustache"))
    t.finish()
    return templates


def _read_hooks(
    root: f.Table, base: Path, product_ref: f.Reader[int], language: str
) -> tuple[HookConfig, ...]:
    hooks: list[HookConfig] = []
    for i, t in enumerate(root.get("hooks", f.tables, [])):
        if "particle" in t.data:
            hook = _read_particle_entry(t, i, base, product_ref)
        else:
            hook = _read_hook(
                t, product_ref, particle=False, fallback=f"hooks[{i}]", language=language
            )
        if hook is not None:
            hooks.append(hook)
    f.report_duplicates(root.ctx, [(f"{hook.where}.name", hook.name) for hook in hooks])
    return tuple(hooks)


def _read_particle_entry(
    t: f.Table, i: int, base: Path, product_ref: f.Reader[int]
) -> HookConfig | None:
    """`{ particle = "file.json", name = ..., disabled = ... }`: a Particle webhook, as is."""
    relative = t.need("particle", f.nonempty, None)
    name = t.opt("name", f.nonempty)
    disabled = t.opt("disabled", f.boolean)
    t.finish()
    if relative is None:
        return None
    path = base / Path(relative).expanduser()
    document = f.read_json_object(t.ctx, t.key_path("particle"), path, relative)
    if document is None:
        return None
    # Env indirection is a TOML feature; a Particle document is taken as it is.
    ctx = f.Context(t.ctx.source, None, t.ctx.problems)
    table = f.Table(ctx, document, f"hooks[{i}] ({relative})")
    hook = _read_hook(table, product_ref, particle=True, name=name, fallback=f"hooks[{i}]")
    if hook is not None and disabled is not None:
        hook = dataclasses.replace(hook, disabled=disabled)
    return hook


def _read_hook(
    t: f.Table,
    product_ref: f.Reader[int],
    *,
    particle: bool,
    name: str | None = None,
    fallback: str | None = None,
    language: str = "mustache",
) -> HookConfig | None:
    """A hook table of the config file, or a Particle webhook document (`particle=True`).

    Particle documents use Particle's names only; the config file also takes snake_case
    aliases and Hookwire's own fields. A document's hook is named `name` (the entry's or
    the API caller's), else by its own `name`, else `fallback`. ``language``: the
    templates' language when the hook names none (``[templates] language``); a Particle
    document's are Mustache.
    """

    def alias(camel: str, snake: str) -> tuple[str, ...]:
        return (camel,) if particle else (camel, snake)

    own = not particle  # Hookwire's fields beyond Particle's
    name = _hook_name(t, particle=particle, given=name, fallback=fallback)
    event = t.need(("event", "eventName") if particle else "event", f.event_prefix, None)
    url = t.need("url", f.url, None)
    bodies = [key for key in ("json", "form", "body") if t.has(key)]
    if len(bodies) > 1:
        t.ctx.report(
            t.where, f"expected at most one of json, form, body, got {' and '.join(bodies)}"
        )
    devices = _hook_devices(t, particle=particle)
    if particle:
        t.get("mydevices", _mydevices, True)
        t.ignore(*PARTICLE_METADATA)
    hook = HookConfig(
        where=t.where,
        name=name or "",
        event=event or "",
        url=url or "",
        request_type=t.get(alias("requestType", "request_type"), _REQUEST_TYPE, "POST"),
        json=t.opt("json", f.json_data),
        form=t.opt("form", f.scalar_map),
        body=t.opt("body", f.text),
        query=t.opt("query", f.scalar_map),
        headers=t.opt("headers", f.scalar_map),
        auth=t.opt("auth", _auth),
        devices=devices,
        product=t.opt(("productIdOrSlug", "product") if particle else "product", product_ref),
        no_defaults=t.get(alias("noDefaults", "no_defaults"), f.boolean, False),
        response_topic=t.opt(alias("responseTopic", "response_topic"), f.optional_text),
        error_response_topic=t.opt(
            alias("errorResponseTopic", "error_response_topic"), f.optional_text
        ),
        response_template=t.opt(alias("responseTemplate", "response_template"), f.optional_text),
        reject_unauthorized=t.get(
            alias("rejectUnauthorized", "reject_unauthorized"), f.boolean, True
        ),
        disabled=t.get("disabled", f.boolean, False),
        timeout=t.opt("timeout", f.positive_duration) if own else None,
        retry=t.opt("retry", f.array_of(f.duration)) if own else None,
        rate=t.opt("rate", f.positive_rate) if own else None,
        burst=t.opt("burst", f.positive_int) if own else None,
        max_in_flight=t.opt("max_in_flight", f.positive_int) if own else None,
        ordered=t.get("ordered", f.boolean, False) if own else False,
        secret=t.opt("secret", f.webhook_secret) if own else None,
        typed_json=t.get("typed_json", f.boolean, False) if own else False,
        template_language=(t.get("template_language", _LANGUAGE, language) if own else "mustache"),
    )
    _check_one_authorization(t, hook)
    t.finish()
    return hook if name is not None and event is not None and url is not None else None


def _hook_name(
    t: f.Table, *, particle: bool, given: str | None, fallback: str | None
) -> str | None:
    """A hook table's `name`; a Particle document's: `given`, else its own, else `fallback`."""
    if not particle:
        return t.get("name", f.nonempty, fallback)
    own = t.opt("name", f.nonempty)  # read even when `given` wins, so it is checked
    name = given or own or fallback
    if name is None and not t.has("name"):
        t.ctx.report(t.key_path("name"), "required key is missing")
    return name


def _hook_devices(t: f.Table, *, particle: bool) -> frozenset[str]:
    """The devices a hook admits (empty: every device): its deviceID, and `devices`."""
    one = _one_device(t, ("deviceID", "deviceId") if particle else ("deviceID", "device_id"))
    more = () if particle else t.get("devices", f.array_of(f.device_id), ())
    return frozenset(more) | ({one} if one else frozenset())


def _one_device(t: f.Table, spellings: tuple[str, ...]) -> str | None:
    """The device `deviceID` names under any of its spellings, which must agree; "": none."""
    found = [(key, t.opt(key, f.device_filter)) for key in spellings]
    given = [(key, device) for key, device in found if device is not None]
    if not given:
        return None
    first, device = given[0]
    for key, other in given[1:]:
        if other != device:
            t.ctx.report(
                t.key_path(key),
                f"expected the same device as {first} ({f.show(device)}), got {f.show(other)}",
            )
    return device or None


def _mydevices(ctx: f.Context, value: object, key_path: str) -> bool:
    """Particle's `mydevices`: true is the only mode here, and false is refused, not ignored."""
    if not f.boolean(ctx, value, key_path):
        raise f.Invalid(
            "expected true, got false (false adds other users' public events; this engine has "
            "none: a hook sees only the events published to this engine)"
        )
    return True


def _auth(ctx: f.Context, value: object, key_path: str) -> AuthPair | BearerToken:
    """`auth`: HTTP Basic as { username, password } or { user, pass }, or { bearer }."""
    t = f.sub_table(ctx, value, key_path)
    used = [form for form in AUTH_FORMS if t.has(*form)]
    if len(used) > 1:
        keys = [key for key in t.data if any(key in form for form in used)]
        raise f.Invalid(f"expected one of {AUTH_FORMS_TEXT}, got {' and '.join(keys)}")
    form = used[0] if used else AUTH_FORMS[0]
    auth: AuthPair | BearerToken
    if form == ("bearer",):
        auth = BearerToken(t.need("bearer", f.nonempty, ""))
    else:
        user, password = form
        auth = AuthPair(username=t.need(user, f.text, ""), password=t.get(password, f.text, ""))
    t.finish()
    return auth


def _check_one_authorization(t: f.Table, hook: HookConfig) -> None:
    """Report `auth` given with an Authorization header: a request carries only one."""
    if hook.auth is None or hook.headers is None:
        return
    for header in hook.headers:
        if header.lower() == "authorization":
            t.ctx.report(
                t.key_path("auth"),
                f"expected either auth or headers.{header}, got both "
                "(a request carries one Authorization header)",
            )
