"""engine/config.py: the config file's defaults, checks and error messages."""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import itertools
import json
import os
import shutil
import socket
import textwrap
import types
from pathlib import Path

import pytest

from engine.config.changes import lease_problems, needs_restart
from engine.config.settings import (
    AuthPair,
    ClusterConfig,
    Config,
    ConfigError,
    DeliveryConfig,
    GatewayConfig,
    HookConfig,
    JournalConfig,
    LimitsConfig,
    LogConfig,
    ServerConfig,
    SseConfig,
    TemplatesConfig,
    load_config,
    parse_duration,
)

REPO = Path(__file__).resolve().parents[2]
DEMO_TOKEN = "hw_dev_0123456789abcdefghijklmnopqrstuv"
SECRET = "whsec_aG9va3dpcmUtZXhhbXBsZS1zZWNyZXQta2V5IQ=="  # 28 bytes of base64
SHA = hashlib.sha256(b"a token").hexdigest()


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Errors name the path as given: run in tmp_path so they read "engine.toml: ...".
    monkeypatch.chdir(tmp_path)


def write(text: str, name: str = "engine.toml") -> Path:
    path = Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(text: str, environ: dict[str, str] | None = None) -> Config:
    return load_config(write(text), environ or {})


def problems(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(text, environ)
    return caught.value.problems


def hook(fields: str) -> str:
    return '[[hooks]]\nevent = "temp"\nurl = "https://api.example.com/x"\n' + fields


# --- defaults -------------------------------------------------------------------------------


def test_empty_file_gives_every_default(tmp_path: Path) -> None:
    config = load("")
    assert config.path == Path("engine.toml")
    assert config.server == ServerConfig(host="127.0.0.1", port=8080)
    assert config.log == LogConfig(level="info")
    assert config.auth.tokens == ()
    assert config.products == ()
    assert config.limits == LimitsConfig(
        max_data_bytes=1024,
        max_body_bytes=65536,
        max_header_bytes=16384,
        idle_timeout=60.0,
        request_timeout=10.0,
        publish_rate=0.0,
        publish_burst=0,
    )
    assert config.sse == SseConfig(keepalive=9.0, buffer=1024)
    assert config.journal == JournalConfig(
        backend="sqlite",
        path=tmp_path / "var" / "hookwire.db",
        synchronous="full",
        retention=7 * 24 * 3600.0,
    )
    assert config.delivery == DeliveryConfig(
        allow_networks=(),
        max_in_flight=16,
        timeout=20.0,
        retry=(5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0),
    )
    assert config.gateway == GatewayConfig(tcp=None, unix=None, max_frame_bytes=65536)
    assert dict(config.partials) == {}
    assert config.templates == TemplatesConfig(language="mustache")
    assert config.cluster == ClusterConfig(node=None, lease=30.0)
    assert config.journal.url is None
    assert config.journal.password is None
    assert config.hooks == ()


def test_hook_defaults() -> None:
    (only,) = load(hook("")).hooks
    assert only == HookConfig(
        where="hooks[0]",
        name="hooks[0]",
        event="temp",
        url="https://api.example.com/x",
        request_type="POST",
        json=None,
        form=None,
        body=None,
        query=None,
        headers=None,
        auth=None,
        devices=frozenset(),
        product=None,
        no_defaults=False,
        response_topic=None,
        error_response_topic=None,
        response_template=None,
        reject_unauthorized=True,
        disabled=False,
        timeout=None,
        retry=None,
        rate=None,
        burst=None,
        max_in_flight=None,
        ordered=False,
        secret=None,
        typed_json=False,
    )


def test_every_section_can_be_set() -> None:
    config = load(
        f"""
        [server]
        host = "0.0.0.0"
        port = 0
        [log]
        level = "DEBUG"
        [[auth.tokens]]
        name = "dash"
        sha256 = "{SHA.upper()}"
        scopes = ["subscribe", "publish"]
        products = [1001, "hygro"]
        devices = ["e00fce68a1b2c3d4e5f60718"]
        [[products]]
        id = 1001
        [[products]]
        id = 1002
        slug = "hygro"
        name = "Hygrometer"
        [limits]
        max_data_bytes = 2048
        idle_timeout = "2m"
        request_timeout = "500ms"
        publish_rate = 2.5
        publish_burst = 10
        [sse]
        keepalive = "15s"
        buffer = 8
        [journal]
        backend = "sqlite"
        synchronous = "normal"
        retention = "1.5h"
        [delivery]
        allow_networks = ["10.0.0.0/8", "fd00::/8", "192.168.1.7"]
        max_in_flight = 4
        timeout = 3
        retry = ["1s", 2, "0.5m"]
        [gateway]
        tcp = "[::1]:7070"
        max_frame_bytes = 1024
        [partials]
        reading = '{{"t":{{{{{{temp}}}}}}}}'
        """
    )
    assert config.server == ServerConfig("0.0.0.0", 0)
    assert config.log.level == "debug"
    (token,) = config.auth.tokens
    assert token.sha256 == SHA  # stored lower case
    assert token.scopes == {"subscribe", "publish"}
    assert token.products == {1001, 1002}  # a slug names its product
    assert token.devices == {"e00fce68a1b2c3d4e5f60718"}
    assert config.limits.idle_timeout == 120.0
    assert config.limits.request_timeout == 0.5
    assert config.limits.publish_rate == 2.5
    assert config.sse == SseConfig(15.0, 8)
    assert config.journal.backend == "sqlite"
    assert config.journal.retention == 5400.0
    assert config.delivery.allow_networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("fd00::/8"),
        ipaddress.ip_network("192.168.1.7/32"),
    )
    assert config.delivery.retry == (1.0, 2.0, 30.0)
    assert config.gateway.tcp == ("::1", 7070)
    assert config.partials == {"reading": '{"t":{{{temp}}}}'}


def test_product_lookup_by_id_or_slug() -> None:
    config = load("[[products]]\nid = 1001\nslug = 'demo'\n[[products]]\nid = 7\n")
    assert config.product("1001") is config.products[0]
    assert config.product("demo") is config.products[0]
    assert config.product("7") is config.products[1]
    assert config.product("8") is None
    assert config.product("other") is None


# --- error messages -------------------------------------------------------------------------


def test_unknown_key_suggests_the_nearest_name() -> None:
    assert problems("[sse]\nkeepalve = 3\n") == [
        'engine.toml: sse.keepalve: unknown key; did you mean "keepalive"?'
    ]


def test_unknown_key_without_a_near_name_lists_the_known_ones() -> None:
    assert problems("[server]\nzzz = 1\n") == [
        "engine.toml: server.zzz: unknown key; known keys: host, port, tls_cert, tls_key"
    ]


def test_unknown_section_and_unknown_hook_key() -> None:
    assert problems("[servr]\n" + hook("requestTyp = 'GET'\n")) == [
        'engine.toml: hooks[0].requestTyp: unknown key; did you mean "requestType"?',
        'engine.toml: servr: unknown key; did you mean "server"?',
    ]


def test_wrong_types() -> None:
    assert problems(
        """
        [server]
        port = "8080"
        [sse]
        buffer = 1.5
        [log]
        level = 3
        [auth]
        tokens = { name = "x" }
        """
        + hook("ordered = 'yes'\nheaders = { X-Count = [3] }\njson = 5\n")
    ) == [
        'engine.toml: server.port: expected an integer, got "8080"',
        "engine.toml: log.level: expected a string, got 3",
        "engine.toml: auth.tokens: expected an array of tables ([[auth.tokens]]), got a table",
        "engine.toml: sse.buffer: expected an integer, got 1.5",
        "engine.toml: hooks[0].json: expected a table, an array or a string (a JSON template)"
        ", got 5",
        "engine.toml: hooks[0].headers.X-Count: expected a string, a number, true or false, got "
        "an array",
        'engine.toml: hooks[0].ordered: expected true or false, got "yes"',
    ]


def test_bad_enum_names_the_hook_by_index() -> None:
    text = hook("") + hook("") + hook('requestType = "POTS"\n')
    assert problems(text) == [
        "engine.toml: hooks[2].requestType: "
        'expected one of GET, POST, PUT, PATCH, DELETE, got "POTS"'
    ]


def test_template_language_per_hook_else_the_config_default(tmp_path: Path) -> None:
    document = tmp_path / "particle.json"
    document.write_text('{"event": "p", "url": "https://h/x", "body": "{{#if}}"}')
    config = load(
        '[templates]\nlanguage = "handlebars"\n'
        + hook("")
        + hook('template_language = "mustache"\n')
        + f'[[hooks]]\nparticle = "{document}"\n'
    )
    assert config.templates == TemplatesConfig(language="handlebars")
    languages = [hook.template_language for hook in config.hooks]
    # A Particle document is Mustache whatever the default: its "{{#if}}" is a section.
    assert languages == ["handlebars", "mustache", "mustache"]
    assert [hook.template_language for hook in load(hook("")).hooks] == ["mustache"]


def test_template_language_must_be_one_of_the_two() -> None:
    assert problems('[templates]\nlanguage = "jinja"\n' + hook("template_language = 1\n")) == [
        'engine.toml: templates.language: expected one of mustache, handlebars, got "jinja"',
        "engine.toml: hooks[0].template_language: expected a string, got 1",
    ]


def test_other_enums() -> None:
    assert problems(
        '[log]\nlevel = "verbose"\n[journal]\nbackend = "mysql"\nsynchronous = "off"\n'
        '[[auth.tokens]]\nname = "a"\nsha256 = "' + SHA + '"\nscopes = ["publish", "pubish"]\n'
    ) == [
        'engine.toml: log.level: expected one of debug, info, warning, error, got "verbose"',
        "engine.toml: auth.tokens[0].scopes[1]: expected one of publish, subscribe, admin, "
        'gateway, hooks, metrics, got "pubish"',
        'engine.toml: journal.backend: expected one of memory, sqlite, redis, got "mysql"',
        'engine.toml: journal.synchronous: expected one of full, normal, got "off"',
    ]


def test_environment_variables() -> None:
    text = hook(
        'secret = { env = "TEMP_HOOK_SECRET" }\nauth = { username = "u", password = '
        '{ env = "PW" } }\n'
    )
    (only,) = load(text, {"TEMP_HOOK_SECRET": SECRET, "PW": "s3cret"}).hooks
    assert only.secret == SECRET
    assert only.auth == AuthPair("u", "s3cret")
    assert problems(text, {"PW": "x"}) == [
        'engine.toml: hooks[0].secret: environment variable "TEMP_HOOK_SECRET" is not set'
    ]


def test_env_only_for_strings_and_arrays_of_tables() -> None:
    assert problems(
        'hooks = [1]\n[server]\nport = { env = "PORT" }\n[gateway]\nunix = { env = 5 }\n',
        {"PORT": "1"},
    ) == [
        "engine.toml: server.port: expected an integer, got { env = ... } (only string values "
        "can come from the environment)",
        "engine.toml: gateway.unix: env: expected an environment variable name, got 5",
        "engine.toml: hooks[0]: expected a table, got 1",
    ]


def test_environ_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKWIRE_TEST_HOST", "10.1.2.3")
    config = load_config(write('[server]\nhost = { env = "HOOKWIRE_TEST_HOST" }\n'))
    assert config.server.host == "10.1.2.3"


def test_env_table_inside_json_is_data() -> None:
    (only,) = load(hook('json = { token = { env = "X" } }\n')).hooks
    assert only.json == {"token": {"env": "X"}}


def test_bad_durations() -> None:
    assert problems(
        '[sse]\nkeepalive = "9 sec"\n[limits]\nidle_timeout = 0\nrequest_timeout = "-5s"\n'
        '[journal]\nretention = "0d"\n[delivery]\nretry = ["5s", true]\n'
    ) == [
        "engine.toml: limits.idle_timeout: expected a duration greater than 0, got 0",
        'engine.toml: limits.request_timeout: expected a duration greater than 0, got "-5s"',
        'engine.toml: sse.keepalive: expected a duration (seconds, or a string such as "500ms", '
        '"30s", "5m", "1.5h", "7d"), got "9 sec"',
        'engine.toml: journal.retention: expected a duration greater than 0, got "0d"',
        "engine.toml: delivery.retry[1]: expected a duration (seconds, or a string such as "
        '"500ms", "30s", "5m", "1.5h", "7d"), got true',
    ]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (5, 5.0),
        (0.25, 0.25),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1.5h", 5400.0),
        ("7d", 604800.0),
        (" 2 s ", 2.0),
        ("0s", 0.0),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "7x",
            'expected a duration (seconds, or a string such as "500ms", "30s", "5m", "1.5h", '
            '"7d"), got "7x"',
        ),
        (
            "5",
            'expected a duration (seconds, or a string such as "500ms", "30s", "5m", "1.5h", '
            '"7d"), got "5"',
        ),
        (
            True,
            'expected a duration (seconds, or a string such as "500ms", "30s", "5m", "1.5h", '
            '"7d"), got true',
        ),
        (-1, "expected a duration of 0 or more, got -1"),
        ("-1s", 'expected a duration of 0 or more, got "-1s"'),
        (float("inf"), "expected a finite duration, got inf"),
    ],
)
def test_parse_duration_errors(value: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert str(caught.value) == message


def test_bad_networks() -> None:
    assert problems('[delivery]\nallow_networks = ["127.0.0.1/8", "localhost"]\n') == [
        'engine.toml: delivery.allow_networks[0]: expected a network such as "10.0.0.0/8" or '
        '"fd00::/8", got "127.0.0.1/8" (127.0.0.1/8 has host bits set)',
        'engine.toml: delivery.allow_networks[1]: expected a network such as "10.0.0.0/8" or '
        '"fd00::/8", got "localhost" (\'localhost\' does not appear to be an IPv4 or IPv6 '
        "network)",
    ]


def test_ports_and_sizes() -> None:
    assert problems(
        "[server]\nport = 65536\n[limits]\nmax_body_bytes = 0\npublish_burst = -1\n"
        '[gateway]\ntcp = "::1:7070"\n'
    ) == [
        "engine.toml: server.port: expected an integer from 0 to 65535, got 65536",
        "engine.toml: limits.max_body_bytes: expected a positive integer, got 0",
        "engine.toml: limits.publish_burst: expected an integer of 0 or more, got -1",
        'engine.toml: gateway.tcp: expected "host:port" (IPv6 as "[::1]:7070"), port 0 to 65535'
        ', got "::1:7070"',
    ]


def test_every_problem_is_collected() -> None:
    found = problems(
        """
        [server]
        port = -1
        prot = 1
        [sse]
        keepalive = "soon"
        [[hooks]]
        url = "ftp://example.com"
        """
    )
    assert found == [
        "engine.toml: server.port: expected an integer from 0 to 65535, got -1",
        'engine.toml: server.prot: unknown key; did you mean "port"?',
        'engine.toml: sse.keepalive: expected a duration (seconds, or a string such as "500ms", '
        '"30s", "5m", "1.5h", "7d"), got "soon"',
        "engine.toml: hooks[0].event: required key is missing",
        "engine.toml: hooks[0].url: expected an http:// or https:// URL (a template), "
        'got "ftp://example.com"',
    ]
    with pytest.raises(ConfigError) as caught:
        load("[server]\nport = -1\nprot = 1\n")
    assert str(caught.value).splitlines() == caught.value.problems


def test_invalid_toml_names_the_line() -> None:
    with pytest.raises(ConfigError) as caught:
        load("[server]\nport = = 1\n")
    assert caught.value.problems == [
        "engine.toml: not valid TOML: Invalid value (at line 2, column 8)"
    ]


def test_missing_file() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config("nowhere/engine.toml", {})
    assert caught.value.problems == ["nowhere/engine.toml: cannot read: No such file or directory"]


def test_tokens() -> None:
    assert problems(
        f"""
        [[products]]
        id = 1001
        [[auth.tokens]]
        name = "a"
        sha256 = "{DEMO_TOKEN}"
        scopes = []
        products = [1002]
        [[auth.tokens]]
        name = "a"
        sha256 = "abc"
        scopes = ["admin"]
        [[auth.tokens]]
        name = "b"
        """
    ) == [
        "engine.toml: auth.tokens[0].sha256: expected the token's sha256 (`hookwire token hash` "
        "prints it), got a token",
        "engine.toml: auth.tokens[0].scopes: expected at least one of publish, subscribe, admin, "
        "gateway, hooks, metrics, got an empty array",
        "engine.toml: auth.tokens[0].products[0]: expected one of the configured product ids "
        "(1001), got 1002",
        "engine.toml: auth.tokens[1].sha256: expected 64 hexadecimal characters (`hookwire token "
        "hash` prints them), got a string of 3 characters",
        "engine.toml: auth.tokens[2].sha256: required key is missing",
        "engine.toml: auth.tokens[2].scopes: required key is missing",
    ]


def test_duplicate_names() -> None:
    token = f'[[auth.tokens]]\nname = "a"\nsha256 = "{SHA}"\nscopes = ["admin"]\n'
    assert problems(
        token
        + token
        + "[[products]]\nid = 1\nslug = 's'\n[[products]]\nid = 1\nslug = 's'\n"
        + hook("name = 'x'\n")
        + hook("name = 'x'\n")
    ) == [
        "engine.toml: products[1].id: 1 is already used by products[0].id",
        'engine.toml: products[1].slug: "s" is already used by products[0].slug',
        'engine.toml: auth.tokens[1].name: "a" is already used by auth.tokens[0].name',
        "engine.toml: auth.tokens[1].sha256: same value as auth.tokens[0].sha256",
        'engine.toml: hooks[1].name: "x" is already used by hooks[0].name',
    ]


# --- hooks ----------------------------------------------------------------------------------


def test_hook_aliases_and_own_fields() -> None:
    config = load(
        "[[products]]\nid = 1001\nslug = 'demo'\n"
        + hook(
            f"""
            request_type = "put"
            form = {{ a = "{{{{{{a}}}}}}" }}
            query = {{ q = "1" }}
            device_id = "dev1"
            devices = ["dev2"]
            product = "demo"
            no_defaults = true
            response_topic = "r"
            error_response_topic = "e"
            response_template = "{{{{{{status}}}}}}"
            reject_unauthorized = false
            disabled = true
            timeout = "5s"
            retry = []
            rate = 0.5
            burst = 3
            max_in_flight = 2
            ordered = true
            secret = "{SECRET}"
            typed_json = true
            """
        )
    )
    (only,) = config.hooks
    assert only.request_type == "PUT"
    assert only.form == {"a": "{{{a}}}"}
    assert only.query == {"q": "1"}
    assert only.devices == {"dev1", "dev2"}
    assert only.product == 1001
    assert only.no_defaults and only.disabled and only.ordered and only.typed_json
    assert (only.response_topic, only.error_response_topic) == ("r", "e")
    assert only.response_template == "{{{status}}}"
    assert only.reject_unauthorized is False
    assert (only.timeout, only.retry, only.rate, only.burst, only.max_in_flight) == (
        5.0,
        (),
        0.5,
        3,
        2,
    )
    assert only.secret == SECRET


def test_hook_checks() -> None:
    assert problems(
        "[[products]]\nid = 1001\n"
        + hook('json = {}\nbody = "x"\nproduct = 1002\nsecret = "whsec_c2hvcnQ="\n')
        + hook('requestType = "GET"\nrequest_type = "GET"\ndeviceID = "no spaces!"\n')
        + '[[hooks]]\nevent = ""\nurl = "https://a"\n'
    ) == [
        "engine.toml: hooks[0]: expected at most one of json, form, body, got json and body",
        "engine.toml: hooks[0].product: "
        "expected one of the configured product ids (1001), got 1002",
        'engine.toml: hooks[0].secret: expected "whsec_" followed by base64 of at least 24 bytes, '
        "got a string of 14 characters",
        "engine.toml: hooks[1].deviceID: expected a device id (1 to 64 of A-Z a-z 0-9 _ -; names "
        'are not looked up) or "" (any device), got "no spaces!"',
        "engine.toml: hooks[1]: expected only one of requestType, request_type, got both",
        "engine.toml: hooks[2].event: expected an event name prefix (1 to 64 printable ASCII, "
        'no spaces), got ""',
    ]


def test_hook_json_is_immutable_data() -> None:
    (table, array, text) = load(
        hook('json = { a = [1, { b = true }], c = "{{{x}}}" }\n')
        + hook('json = [1, "two"]\n')
        + hook("json = '{\"t\": {{{temp}}}}'\n")
    ).hooks
    assert isinstance(table.json, types.MappingProxyType)
    assert table.json == {"a": (1, {"b": True}), "c": "{{{x}}}"}
    assert isinstance(table.json["a"][1], types.MappingProxyType)
    assert array.json == (1, "two")
    assert text.json == '{"t": {{{temp}}}}'
    assert problems(hook("json = { at = 1979-05-27 }\n")) == [
        "engine.toml: hooks[0].json.at: expected JSON data, got a date/time (1979-05-27)"
    ]


def test_particle_webhook_document(tmp_path: Path) -> None:
    document = {
        "integration_type": "Webhook",
        "id": "5f1e0c2a9b3d4e0017a1b2c3",
        "created_at": "2021-03-04T10:20:30.000Z",
        "name": "Humidity to the legacy API",
        "event": "humidity",
        "url": "https://legacy.example.com/h",
        "requestType": "Post",
        "deviceID": "e00fce68a1b2c3d4e5f60718",
        "mydevices": True,
        "productIdOrSlug": "demo",
        "noDefaults": True,
        "responseTopic": "{{{PARTICLE_DEVICE_ID}}}/hook-response/humidity",
        "errorResponseTopic": "",
        "responseTemplate": "{{{result}}}",
        "rejectUnauthorized": False,
        "headers": {"X-Api": "2"},
        "query": {"k": "v"},
        "auth": {"username": "u", "password": "p"},
        "json": {"v": "{{{PARTICLE_EVENT_VALUE}}}", "n": None},
        "disabled": True,
    }
    write(json.dumps(document), "hooks/legacy.json")
    config = load(
        '[[products]]\nid = 1001\nslug = "demo"\n'
        '[[hooks]]\nparticle = "hooks/legacy.json"\n'
        '[[hooks]]\nparticle = "hooks/legacy.json"\nname = "legacy"\ndisabled = false\n'
    )
    first, second = config.hooks
    assert first == HookConfig(
        where="hooks[0] (hooks/legacy.json)",
        name="Humidity to the legacy API",  # the document's, unless the entry names it
        event="humidity",
        url="https://legacy.example.com/h",
        request_type="POST",
        json={"v": "{{{PARTICLE_EVENT_VALUE}}}", "n": None},
        query={"k": "v"},
        headers={"X-Api": "2"},
        auth=AuthPair("u", "p"),
        devices=frozenset({"e00fce68a1b2c3d4e5f60718"}),
        product=1001,
        no_defaults=True,
        response_topic="{{{PARTICLE_DEVICE_ID}}}/hook-response/humidity",
        error_response_topic=None,  # Particle writes "" for "the default"
        response_template="{{{result}}}",
        reject_unauthorized=False,
        disabled=True,
    )
    assert (second.name, second.disabled) == ("legacy", False)
    assert tmp_path.joinpath("hooks/legacy.json").exists()


def test_particle_document_problems() -> None:
    write('{"event": "x",\n "url": "https://a",, }', "hooks/broken.json")
    write(
        '{"eventName": "x", "url": "https://a", "timeout": 5, "requestType": "POTS"}',
        "hooks/odd.json",
    )
    write("[]", "hooks/list.json")
    assert problems(
        '[[hooks]]\nparticle = "hooks/broken.json"\n'
        '[[hooks]]\nparticle = "hooks/odd.json"\n'
        '[[hooks]]\nparticle = "hooks/list.json"\n'
        '[[hooks]]\nparticle = "hooks/absent.json"\nevent = "x"\n'
    ) == [
        'engine.toml: hooks[0].particle: "hooks/broken.json" is not valid JSON: Expecting '
        "property name enclosed in double quotes (line 2, column 21)",
        "engine.toml: hooks[1] (hooks/odd.json).requestType: expected one of GET, POST, PUT, "
        'PATCH, DELETE, got "POTS"',
        "engine.toml: hooks[1] (hooks/odd.json).timeout: unknown key; known keys: name, event, "
        "eventName, url, deviceID, deviceId, mydevices, requestType, json, form, body, query, "
        "headers, auth, productIdOrSlug, product, noDefaults, responseTopic, errorResponseTopic, "
        "responseTemplate, rejectUnauthorized, disabled",
        'engine.toml: hooks[2].particle: "hooks/list.json": expected a JSON object (one Particle '
        "webhook), got an empty array",
        "engine.toml: hooks[3].event: unknown key; known keys: particle, name, disabled",
        'engine.toml: hooks[3].particle: cannot read "hooks/absent.json": No such file or '
        "directory",
    ]


# --- paths, immutability, shipped files ------------------------------------------------------


def test_relative_paths_are_relative_to_the_config_folder(tmp_path: Path) -> None:
    write('{"event": "x", "url": "https://a"}', "conf/hooks/p.json")
    path = write(
        '[journal]\npath = "data/j.db"\n[gateway]\nunix = "run/gw.sock"\n'
        '[[hooks]]\nparticle = "hooks/p.json"\n',
        "conf/engine.toml",
    )
    config = load_config(path, {})
    assert config.journal.path == tmp_path / "conf" / "data" / "j.db"
    assert config.gateway.unix == tmp_path / "conf" / "run" / "gw.sock"
    assert config.hooks[0].where == "hooks[0] (hooks/p.json)"
    absolute = load(f'[journal]\npath = "{tmp_path / "abs.db"}"\n')
    assert absolute.journal.path == tmp_path / "abs.db"


def test_config_is_frozen() -> None:
    config = load('[partials]\np = "x"\n' + hook('headers = { A = "b" }\n'))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server.port = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.hooks = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.partials["p"] = "y"  # type: ignore[index]
    with pytest.raises(TypeError):
        config.hooks[0].headers["A"] = "c"  # type: ignore[index]
    assert not hasattr(config.server, "__dict__")  # slotted


def test_shipped_default_config_loads() -> None:
    config = load_config(REPO / "config" / "engine.toml", {})
    assert config.server == ServerConfig("127.0.0.1", 8080)
    (token,) = config.auth.tokens
    assert token.name == "dev"
    assert token.sha256 == hashlib.sha256(DEMO_TOKEN.encode()).hexdigest()
    assert token.scopes == {"publish", "subscribe", "admin", "gateway"}
    assert config.product("demo-thermostat") == config.product("1001") is not None
    assert config.journal.backend == "sqlite"
    assert config.journal.path == REPO / "config" / "var" / "hookwire.db"
    assert config.journal.path.parent.is_dir()  # shipped, so `make run` works on a clone
    assert config.gateway.tcp == ("127.0.0.1", 7070)
    assert config.gateway.unix == REPO / "config" / "var" / "gateway.sock"
    assert config.delivery.allow_networks == (ipaddress.ip_network("127.0.0.0/8"),)
    assert [hook.name for hook in config.hooks] == ["demo receiver"]


def test_shipped_full_example_loads() -> None:
    environ = {"TEMP_HOOK_SECRET": SECRET, "ALARM_PASSWORD": "x"}
    config = load_config(REPO / "config" / "examples" / "full.toml", environ)
    assert [hook.name for hook in config.hooks] == [
        "temperature to my API",
        "alarms as a form",
        "hooks[2]",
        "legacy humidity",
        "readings, as Trackle writes them",
    ]
    assert [hook.template_language for hook in config.hooks][-2:] == ["mustache", "handlebars"]
    legacy = config.hooks[3]
    assert legacy.where == "hooks[3] (hooks/legacy-particle-webhook.json)"
    assert legacy.product == 1001
    assert config.journal.path == REPO / "config" / "examples" / "var" / "hookwire.db"


def test_full_example_in_cluster_mode_loads(tmp_path: Path) -> None:
    """The commented-out cluster block of full.toml, put in place of its [journal] table."""
    examples = REPO / "config" / "examples"
    lines = (examples / "full.toml").read_text().splitlines()
    start = lines.index("[journal]")
    end = lines.index("", start)
    marker = next(i for i, line in enumerate(lines) if line.startswith("# Cluster mode"))
    block = list(itertools.takewhile(lambda line: line.startswith("#"), lines[marker + 2 :]))
    uncommented = [line.removeprefix("#").removeprefix(" ") for line in block]
    text = "\n".join(lines[:start] + uncommented + lines[end:]) + "\n"
    shutil.copytree(examples / "hooks", tmp_path / "hooks")  # its Particle document
    environ = {"TEMP_HOOK_SECRET": SECRET, "ALARM_PASSWORD": "x", "REDIS_PASSWORD": "pw"}
    config = load(text, environ)
    assert config.journal.backend == "redis"
    assert (config.journal.url, config.journal.password) == ("redis://10.20.0.7:6379/0", "pw")
    assert config.cluster == ClusterConfig(node="edge-1", lease=30.0)  # longest: 20s default


def test_commit_interval_and_workers() -> None:
    defaults = load("")
    assert defaults.journal.commit_interval == 0.002
    assert defaults.delivery.workers is None  # "auto"
    assert defaults.delivery.worker_count() == max(1, len(os.sched_getaffinity(0)) - 1)
    config = load('[journal]\ncommit_interval = "5ms"\n[delivery]\nworkers = 3\n')
    assert config.journal.commit_interval == 0.005
    assert config.delivery.worker_count() == 3
    assert load("[delivery]\nworkers = 0\n").delivery.worker_count() == 0
    assert load('[delivery]\nworkers = "Auto"\n').delivery.workers is None
    assert problems('[journal]\ncommit_interval = "-1ms"\n[delivery]\nworkers = -1\n') == [
        'engine.toml: journal.commit_interval: expected a duration of 0 or more, got "-1ms"',
        'engine.toml: delivery.workers: expected "auto" or an integer from 0 to 64, got -1',
    ]
    assert problems('[delivery]\nworkers = "many"\n') == [
        'engine.toml: delivery.workers: expected "auto" or an integer from 0 to 64, got "many"'
    ]


def test_max_connections() -> None:
    auto = load("").delivery
    assert auto.max_connections is None
    assert auto.connection_limit(1024) == 768  # a quarter of the files kept for the rest
    assert auto.connection_limit(200) == 136  # at least 64 kept
    assert auto.connection_limit(20) == 1
    split = load("[delivery]\nworkers = 3\nmax_connections = 1000\n").delivery
    assert split.connection_limit(1024) == 334  # per worker process, rounded up
    alone = load("[delivery]\nworkers = 0\nmax_connections = 1000\n").delivery
    assert alone.connection_limit(1024) == 1000
    assert problems("[delivery]\nmax_connections = 0\n") == [
        "engine.toml: delivery.max_connections: "
        'expected "auto" or an integer from 1 to 1_000_000, got 0'
    ]


# --- cluster mode: the Redis journal and [cluster] (issue 20) -----------------------------

REDIS = '[journal]\nbackend = "redis"\nurl = "redis://127.0.0.1:6379/0"\n'
URL_HINT = 'expected "redis://HOST:PORT/DB" or "rediss://HOST:PORT/DB" (TLS)'


@pytest.mark.parametrize(
    ("url", "written_out"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://redis.internal:7000/3", "redis://redis.internal:7000/3"),
        ("REDIS://localhost", "redis://localhost:6379/0"),  # the defaults, written out
        ("redis://localhost/", "redis://localhost:6379/0"),
        ("rediss://cache.example.com:6380/1", "rediss://cache.example.com:6380/1"),
        ("redis://[::1]:6379/2", "redis://[::1]:6379/2"),
        ("redis://[fd00::7]/0", "redis://[fd00::7]:6379/0"),
        ("redis://hookwire@h:1/0", "redis://hookwire@h:1/0"),  # an ACL user stays
        ("redis://h:65535/15", "redis://h:65535/15"),
    ],
)
def test_redis_url(url: str, written_out: str) -> None:
    journal = load(f'[journal]\nbackend = "redis"\nurl = "{url}"\n').journal
    assert journal.backend == "redis"
    assert journal.url == written_out
    assert journal.password is None


def test_redis_password_from_the_url_or_the_environment() -> None:
    # A password in the URL is taken out of it (percent-decoded), so the URL can be shown.
    journal = load('[journal]\nbackend = "redis"\nurl = "rediss://u:p%40ss@h:6380/0"\n').journal
    assert (journal.url, journal.password) == ("rediss://u@h:6380/0", "p@ss")
    assert "p@ss" not in repr(journal)
    text = '[journal]\nbackend = "redis"\nurl = "redis://h/0"\npassword = { env = "REDIS_PW" }\n'
    journal = load(text, {"REDIS_PW": "s3cret"}).journal
    assert (journal.url, journal.password) == ("redis://h:6379/0", "s3cret")
    assert problems(text) == [
        'engine.toml: journal.password: environment variable "REDIS_PW" is not set'
    ]
    # The whole URL from the environment, as a hosting platform hands it out.
    url_from_env = '[journal]\nbackend = "redis"\nurl = { env = "REDIS_URL" }\n'
    journal = load(url_from_env, {"REDIS_URL": "redis://:pw@10.0.0.5:6379/0"}).journal
    assert (journal.url, journal.password) == ("redis://10.0.0.5:6379/0", "pw")


def test_redis_password_in_both_places_is_refused() -> None:
    text = '[journal]\nbackend = "redis"\nurl = "redis://:one@h/0"\npassword = { env = "PW" }\n'
    assert problems(text, {"PW": "two"}) == [
        "engine.toml: journal.password: expected the password either here or in journal.url, "
        "got both"
    ]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h:6379/0", f'{URL_HINT}, got "http://h:6379/0"'),
        ("localhost:6379", f'{URL_HINT}, got "localhost:6379"'),
        (
            "redis:///0",
            "expected a host name or address after redis:// (IPv6 in brackets: "
            '"redis://[::1]:6379/0"), got "redis:///0"',
        ),
        (
            "redis://::1:6379/0",
            "expected a host name or address after redis:// (IPv6 in brackets: "
            '"redis://[::1]:6379/0"), got "redis://::1:6379/0"',
        ),
        ("redis://h:0/0", 'expected a port from 1 to 65535 after the host, got "0"'),
        ("redis://h:65536/0", 'expected a port from 1 to 65535 after the host, got "65536"'),
        ("redis://h:port/0", 'expected a port from 1 to 65535 after the host, got "port"'),
        (
            "redis://h:6379/-1",
            'expected a database number (an integer of 0 or more) after the port, got "/-1"',
        ),
        (
            "redis://h:6379/db0",
            'expected a database number (an integer of 0 or more) after the port, got "/db0"',
        ),
        (
            "rediss://h:6379/0?ssl_cert_reqs=none",
            "expected a URL without a query string or fragment, "
            'got "rediss://h:6379/0?ssl_cert_reqs=none"',
        ),
    ],
)
def test_bad_redis_urls(url: str, message: str) -> None:
    assert problems(f'[journal]\nbackend = "redis"\nurl = "{url}"\n') == [
        f"engine.toml: journal.url: {message}"
    ]


def test_redis_errors_never_show_the_password() -> None:
    found = problems(
        '[journal]\nbackend = "redis"\nurl = "http://user:hunter2@h:6379/0"\n'
        '[cluster]\nnode = "a"\n'
    )
    assert found == [f'engine.toml: journal.url: {URL_HINT}, got "http://user:***@h:6379/0"']
    assert problems('[journal]\nbackend = "redis"\nurl = "redis://h"\npassword = 1234\n') == [
        'engine.toml: journal.password: expected a non-empty string or { env = "NAME" }, '
        "got a number"
    ]


def test_the_redis_backend_needs_a_url_and_ignores_path() -> None:
    assert problems('[journal]\nbackend = "redis"\n') == [
        'engine.toml: journal.url: required key is missing: backend "redis" needs the Redis '
        'server\'s URL, "redis://HOST:PORT/DB" ("rediss://" for TLS)'
    ]
    # SQLite's keys are ignored by the other backends, as "memory" has always done.
    journal = load(REDIS + 'path = "var/other.db"\nsynchronous = "normal"\n').journal
    assert journal.backend == "redis"


def test_redis_keys_and_cluster_apply_only_to_the_redis_backend() -> None:
    assert problems('[journal]\nurl = "redis://h/0"\npassword = "pw"\n[cluster]\nnode = "a"\n') == [
        'engine.toml: journal.url: applies only to backend "redis", not "sqlite"',
        'engine.toml: journal.password: applies only to backend "redis", not "sqlite"',
        'engine.toml: cluster: applies only to [journal] backend = "redis", not "sqlite"',
    ]
    assert problems('[journal]\nbackend = "memory"\n[cluster]\n') == [
        'engine.toml: cluster: applies only to [journal] backend = "redis", not "memory"'
    ]
    # A misspelled backend is reported alone, not with what would follow from it.
    assert problems('[journal]\nbackend = "rediss"\nurl = "redis://h"\n[cluster]\n') == [
        'engine.toml: journal.backend: expected one of memory, sqlite, redis, got "rediss"'
    ]
    assert problems("cluster = 3\n") == [
        "engine.toml: cluster: expected a table ([cluster]), got 3"
    ]


def test_cluster_node_and_lease() -> None:
    config = load(REDIS + '[cluster]\nnode = "edge-1.eu_west"\nlease = "40s"\n')
    assert config.cluster == ClusterConfig(node="edge-1.eu_west", lease=40.0)
    assert config.cluster.node_name() == "edge-1.eu_west"
    default = load(REDIS).cluster
    assert default.node is None
    assert default.node_name() == f"{socket.gethostname()}-{os.getpid()}"
    assert problems(REDIS + '[cluster]\nnode = "a b"\nlease = 0\nleas = 1\n') == [
        "engine.toml: cluster.node: expected a node name (1 to 128 of A-Z a-z 0-9 . _ -), "
        'got "a b"',
        'engine.toml: cluster.lease: expected "auto" or a duration greater than 0, got 0',
        'engine.toml: cluster.leas: unknown key; did you mean "lease"?',
    ]


def test_auto_lease_is_the_longest_timeout_plus_10s() -> None:
    assert load(REDIS).cluster.lease == 30.0  # [delivery] timeout 20s + 5s + 5s
    assert load(REDIS + '[cluster]\nlease = "Auto"\n').cluster.lease == 30.0
    slow = REDIS + '[delivery]\ntimeout = "5s"\n' + hook('timeout = "1m"\n')
    assert load(slow).cluster.lease == 70.0
    assert load(REDIS + "[delivery]\ntimeout = 1.5\n").cluster.lease == 11.5


def test_lease_must_exceed_the_longest_timeout_plus_5s() -> None:
    assert problems(REDIS + '[cluster]\nlease = "10s"\n') == [
        "engine.toml: cluster.lease: 10s must be above the longest hook timeout (20s, "
        "delivery.timeout) plus 5s: raise it to at least 25.001s or lower the timeouts "
        '("auto" makes it 30s)'
    ]
    assert problems(REDIS + '[cluster]\nlease = "25s"\n')  # equal is not above
    assert load(REDIS + '[cluster]\nlease = "25.001s"\n').cluster.lease == 25.001
    text = (
        REDIS
        + '[cluster]\nlease = "1m"\n'
        + hook('name = "quick"\ntimeout = "30s"\n')
        + hook('name = "slow"\ntimeout = "90s"\ndisabled = true\n')
    )
    assert problems(text) == [
        "engine.toml: cluster.lease: 60s must be above the longest hook timeout (90s, "
        "hooks[1].timeout) plus 5s: raise it to at least 95.001s or lower the timeouts "
        '("auto" makes it 100s)'
    ]
    # Without the Redis journal the lease means nothing, and nothing is checked.
    assert load(hook('timeout = "5m"\n')).cluster == ClusterConfig()


def test_cluster_and_redis_settings_need_a_restart() -> None:
    old = load(REDIS + '[cluster]\nnode = "a"\n')
    new = load(
        '[journal]\nbackend = "redis"\nurl = "redis://10.0.0.9/1"\npassword = "pw"\n'
        '[cluster]\nnode = "b"\nlease = "45s"\n'
    )
    assert needs_restart(old, new) == [
        "journal.url",
        "journal.password",
        "cluster.node",
        "cluster.lease",
    ]
    assert needs_restart(old, load(REDIS + '[cluster]\nnode = "a"\n')) == []


def test_a_reload_cannot_outgrow_the_running_lease() -> None:
    running = load(REDIS + '[cluster]\nlease = "40s"\n')
    # The file raised the lease with the hook, but the lease applies only at start.
    new = load(REDIS + '[cluster]\nlease = "2m"\n' + hook('name = "slow"\ntimeout = "35s"\n'))
    assert lease_problems(running, new) == [
        "engine.toml: hooks[0].timeout: 35s needs a lease above 40s and the running one is 40s "
        "([cluster] lease applies at start): restart to apply it"
    ]
    assert lease_problems(running, load(REDIS + hook('timeout = "34.9s"\n'))) == []
    assert lease_problems(load(""), load(hook('timeout = "5m"\n'))) == []  # SQLite: no lease
