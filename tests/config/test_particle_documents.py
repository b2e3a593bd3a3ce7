"""Particle webhook documents as Particle's own clients send them: read from a file named
by `[[hooks]] particle = ...`, or given to `read_particle_webhook` (the REST API's way in)."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.config.settings import (
    AuthPair,
    BearerToken,
    Config,
    ConfigError,
    HookConfig,
    ProductConfig,
    load_config,
    read_particle_webhook,
)

CONFIG = Config(Path("engine.toml"), products=(ProductConfig(1001, "demo"),))
HOOK = {"event": "temp", "url": "https://api.example.com/x"}
AUTH_FORMS = "{ username, password }, { user, pass } or { bearer }"
MYDEVICES_FALSE = (
    "webhook.mydevices: expected true, got false (false adds other users' public events; "
    "this engine has none: a hook sees only the events published to this engine)"
)


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Errors name the path as given: run in tmp_path so they read "engine.toml: ...".
    monkeypatch.chdir(tmp_path)


def read(fields: dict[str, object], name: str | None = "t") -> HookConfig:
    return read_particle_webhook({**HOOK, **fields}, where="webhook", name=name, config=CONFIG)


def problems(document: object, name: str | None = "t") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        read_particle_webhook(document, where="webhook", name=name, config=CONFIG)
    return caught.value.problems


def write(text: str, name: str) -> Path:
    path = Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(text: str, environ: dict[str, str] | None = None) -> Config:
    return load_config(write(text, "engine.toml"), environ or {})


def load_problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(text)
    return caught.value.problems


# --- what particle-api-js sends -------------------------------------------------------------


def test_a_document_as_particle_api_js_sends_it() -> None:
    # createWebhook's body: deviceId, "" for any device, numbers and booleans as values.
    hook = read_particle_webhook(
        {
            "event": "temp",
            "url": "https://api.example.com/x",
            "deviceId": "",
            "rejectUnauthorized": True,
            "noDefaults": False,
            "requestType": "POST",
            "auth": {"user": "u", "pass": "p"},
            "headers": {"X-Version": 2},
            "query": {"limit": 10, "verbose": True},
            "form": {"t": 21.5},
            "responseTopic": "",
            "name": "temperature",
            "mydevices": True,
        },
        where="webhook",
        name=None,
        config=CONFIG,
    )
    assert hook == HookConfig(
        where="webhook",
        name="temperature",
        event="temp",
        url="https://api.example.com/x",
        form={"t": "21.5"},
        query={"limit": "10", "verbose": "true"},
        headers={"X-Version": "2"},
        auth=AuthPair("u", "p"),
    )


def test_a_file_and_the_api_read_the_same_hook() -> None:
    document = {**HOOK, "deviceId": "dev1", "form": {"n": 3}, "productIdOrSlug": "demo"}
    write(json.dumps(document), "hooks/t.json")
    config = load('[[products]]\nid = 1001\nslug = "demo"\n[[hooks]]\nparticle = "hooks/t.json"\n')
    (from_file,) = config.hooks
    from_api = read_particle_webhook(document, where="webhook", name="hooks[0]", config=config)
    assert from_api == dataclasses.replace(from_file, where="webhook")


# --- 1, 2 and 6: deviceID ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "devices"),
    [
        ({"deviceID": "dev1"}, {"dev1"}),
        ({"deviceId": "dev1"}, {"dev1"}),
        ({"deviceID": "dev1", "deviceId": "dev1"}, {"dev1"}),
        ({"deviceID": ""}, set()),  # any device
        ({"deviceId": ""}, set()),
        ({"deviceID": "", "deviceId": ""}, set()),
        ({"deviceID": None}, set()),  # null counts as absent
        ({}, set()),
    ],
)
def test_device_id_spellings(fields: dict[str, object], devices: set[str]) -> None:
    assert read(fields).devices == devices


def test_device_id_spellings_that_disagree() -> None:
    assert problems({**HOOK, "deviceID": "dev1", "deviceId": "dev2"}) == [
        'webhook.deviceId: expected the same device as deviceID ("dev1"), got "dev2"'
    ]
    assert problems({**HOOK, "deviceID": "", "deviceId": "dev2"}) == [
        'webhook.deviceId: expected the same device as deviceID (""), got "dev2"'
    ]


def test_a_device_name_is_not_looked_up() -> None:
    assert problems({**HOOK, "deviceID": "Kitchen sensor", "deviceId": 5}) == [
        "webhook.deviceID: expected a device id (1 to 64 of A-Z a-z 0-9 _ -; names are not "
        'looked up) or "" (any device), got "Kitchen sensor"',
        "webhook.deviceId: expected a string, got 5",
    ]


def test_the_config_file_takes_an_empty_device_id_and_agreeing_spellings() -> None:
    config = load(
        '[[hooks]]\nevent = "t"\nurl = "https://a"\ndeviceID = ""\n'
        '[[hooks]]\nevent = "t"\nurl = "https://a"\ndeviceID = "d1"\ndevice_id = "d1"\n'
    )
    assert [hook.devices for hook in config.hooks] == [frozenset(), {"d1"}]
    assert load_problems(
        '[[hooks]]\nevent = "t"\nurl = "https://a"\ndeviceID = "d1"\ndevice_id = "d2"\n'
    ) == ['engine.toml: hooks[0].device_id: expected the same device as deviceID ("d1"), got "d2"']


# --- 3: auth ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "read_as"),
    [
        ({"username": "u", "password": "p"}, AuthPair("u", "p")),
        ({"user": "u", "pass": "p"}, AuthPair("u", "p")),
        ({"user": "{{{who}}}"}, AuthPair("{{{who}}}", "")),
        ({"username": "u", "password": None}, AuthPair("u", "")),
        ({"bearer": "{{{TOKEN}}}"}, BearerToken("{{{TOKEN}}}")),
    ],
)
def test_auth_spellings(auth: dict[str, object], read_as: object) -> None:
    assert read({"auth": auth}).auth == read_as


@pytest.mark.parametrize(
    ("auth", "problem"),
    [
        (
            {"user": "u", "password": "p"},
            f"webhook.auth: expected one of {AUTH_FORMS}, got user and password",
        ),
        (
            {"bearer": "t", "username": "u"},
            f"webhook.auth: expected one of {AUTH_FORMS}, got bearer and username",
        ),
        ({"bearer": ""}, 'webhook.auth.bearer: expected a non-empty string, got ""'),
        ({"bearer": 5}, "webhook.auth.bearer: expected a string, got 5"),
        ({"pass": "p"}, "webhook.auth.user: required key is missing"),
        ("u:p", 'webhook.auth: expected a table, got "u:p"'),
    ],
)
def test_auth_problems(auth: object, problem: str) -> None:
    assert problems({**HOOK, "auth": auth}) == [problem]


@pytest.mark.parametrize("header", ["Authorization", "authorization", "AUTHORIZATION"])
def test_auth_and_an_authorization_header_are_refused_together(header: str) -> None:
    assert problems({**HOOK, "auth": {"bearer": "t"}, "headers": {header: "Basic eDp5"}}) == [
        f"webhook.auth: expected either auth or headers.{header}, got both (a request carries "
        "one Authorization header)"
    ]
    assert read({"headers": {header: "Bearer t"}}).headers == {header: "Bearer t"}


def test_the_config_file_takes_every_auth_form() -> None:
    config = load(
        '[[hooks]]\nevent = "t"\nurl = "https://a"\nauth = { bearer = { env = "TOKEN" } }\n'
        '[[hooks]]\nevent = "t"\nurl = "https://a"\nauth = { user = "u", pass = "p" }\n',
        {"TOKEN": "s3cret"},
    )
    assert [hook.auth for hook in config.hooks] == [BearerToken("s3cret"), AuthPair("u", "p")]
    assert load_problems(
        '[[hooks]]\nevent = "t"\nurl = "https://a"\nauth = { username = "u" }\n'
        'headers = { Authorization = "Bearer x" }\n'
    ) == [
        "engine.toml: hooks[0].auth: expected either auth or headers.Authorization, got both "
        "(a request carries one Authorization header)"
    ]


# --- 4: numbers and booleans in form, query and headers --------------------------------------


def js_string(value: str | bool | int | float) -> str:
    """ECMAScript's String(value) for a JSON scalar, after the spec's Number::toString."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    shortest = Decimal(repr(abs(float(value)))).normalize().as_tuple()
    digits = "".join(map(str, shortest.digits))
    k = len(digits)
    n = int(shortest.exponent) + k  # the value is 0.<digits> times 10 to the n
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return f"{sign}{digits[:n]}.{digits[n:]}"
    if -6 < n <= 0:
        return f"{sign}0.{'0' * -n}{digits}"
    mantissa = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{sign}{mantissa}e{'+' if n > 0 else '-'}{abs(n - 1)}"


@pytest.mark.parametrize(
    ("value", "node"),  # what node printed for String(value)
    [
        (True, "true"),
        (False, "false"),
        (3, "3"),
        (21.5, "21.5"),
        (3.0, "3"),
        (-0.0, "0"),
        (0.1, "0.1"),
        (1e21, "1e+21"),
        (123456789012345680000.0, "123456789012345680000"),
        (1e-7, "1e-7"),
        (0.000001, "0.000001"),
        (2.5e-5, "0.000025"),
        (-1.5e-7, "-1.5e-7"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
    ],
)
def test_scalars_read_as_javascript_prints_them(value: bool | float, node: str) -> None:
    assert js_string(value) == node
    hook = read({"form": {"v": value}, "query": {"v": value}, "headers": {"X-V": value}})
    assert hook.form == hook.query == {"v": node}
    assert hook.headers == {"X-V": node}


JSON_SCALARS = st.one_of(
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)


@given(JSON_SCALARS)
def test_any_json_scalar_reads_as_javascripts_string(value: str | bool | int | float) -> None:
    document = json.loads(json.dumps({**HOOK, "form": {"v": value}, "headers": {"X-V": value}}))
    hook = read_particle_webhook(document, where="webhook", name="t", config=CONFIG)
    assert hook.form == {"v": js_string(value)}
    assert hook.headers == {"X-V": js_string(value)}


@pytest.mark.parametrize(
    ("value", "got"), [(None, "null"), ([1], "an array"), ({"a": 1}, "a table")]
)
@pytest.mark.parametrize("field", ["form", "query", "headers"])
def test_null_and_containers_are_refused_as_values(field: str, value: object, got: str) -> None:
    assert problems({**HOOK, field: {"X-V": value}}) == [
        f"webhook.{field}.X-V: expected a string, a number, true or false, got {got}"
    ]


def test_the_config_file_takes_numbers_and_booleans_too() -> None:
    (hook,) = load(
        '[[hooks]]\nevent = "t"\nurl = "https://a"\n'
        "form = { n = 3, t = 21.5, on = true }\nheaders = { X-N = 1e21 }\n"
    ).hooks
    assert hook.form == {"n": "3", "t": "21.5", "on": "true"}
    assert hook.headers == {"X-N": "1e+21"}


# --- 5: mydevices -----------------------------------------------------------------------------


def test_mydevices_true_is_what_every_hook_does_and_false_is_refused() -> None:
    assert read({"mydevices": True}) == read({})
    assert problems({**HOOK, "mydevices": False}) == [MYDEVICES_FALSE]
    assert problems({**HOOK, "mydevices": "yes"}) == [
        'webhook.mydevices: expected true or false, got "yes"'
    ]


# --- 7: the name ------------------------------------------------------------------------------


def test_the_api_names_the_hook_by_its_caller_else_by_the_document() -> None:
    assert read({"name": "own"}, name="given").name == "given"
    assert read({"name": "own"}, name=None).name == "own"
    assert problems(HOOK, name=None) == ["webhook.name: required key is missing"]
    assert problems({**HOOK, "name": ""}, name=None) == [
        'webhook.name: expected a non-empty string, got ""'
    ]
    # Checked even when the caller's name wins: it is part of the document.
    assert problems({**HOOK, "name": 5}, name="given") == ["webhook.name: expected a string, got 5"]


def test_a_particle_entry_is_named_by_toml_else_by_the_document_else_by_position() -> None:
    write(json.dumps({**HOOK, "name": "Temperature"}), "hooks/named.json")
    write(json.dumps(HOOK), "hooks/anonymous.json")
    config = load(
        '[[hooks]]\nparticle = "hooks/named.json"\n'
        '[[hooks]]\nparticle = "hooks/named.json"\nname = "mine"\n'
        '[[hooks]]\nparticle = "hooks/anonymous.json"\n'
    )
    assert [hook.name for hook in config.hooks] == ["Temperature", "mine", "hooks[2]"]
    assert load_problems(
        '[[hooks]]\nparticle = "hooks/named.json"\n[[hooks]]\nparticle = "hooks/named.json"\n'
    ) == [
        'engine.toml: hooks[1] (hooks/named.json).name: "Temperature" is already used by '
        "hooks[0] (hooks/named.json).name"
    ]


# --- the document as a whole ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "got"),
    [([HOOK], "an array"), ("{}", '"{}"'), (None, "null"), (3, "3"), ({}, None)],
)
def test_a_document_that_is_not_a_json_object(document: object, got: str | None) -> None:
    if got is None:  # an empty object is an object: its problems are its missing fields
        assert problems(document) == [
            "webhook.event: required key is missing",
            "webhook.url: required key is missing",
        ]
    else:
        assert problems(document) == [
            f"webhook: expected a JSON object (one Particle webhook), got {got}"
        ]


def test_every_problem_is_listed_without_a_file_name() -> None:
    assert problems(
        {
            "eventName": "temp",
            "url": "ftp://x",
            "requestType": "POTS",
            "productIdOrSlug": "nope",
            "mydevices": False,
            "timeout": 5,
            "evnt": "x",
        },
        name=None,
    ) == [
        "webhook.name: required key is missing",
        'webhook.url: expected an http:// or https:// URL (a template), got "ftp://x"',
        MYDEVICES_FALSE,
        'webhook.requestType: expected one of GET, POST, PUT, PATCH, DELETE, got "POTS"',
        "webhook.productIdOrSlug: expected a product id, or the slug of a configured product, "
        'got "nope"',
        "webhook.timeout: unknown key; known keys: name, event, eventName, url, deviceID, "
        "deviceId, mydevices, requestType, json, form, body, query, headers, auth, "
        "productIdOrSlug, product, noDefaults, responseTopic, errorResponseTopic, "
        "responseTemplate, rejectUnauthorized, disabled",
        'webhook.evnt: unknown key; did you mean "event"?',
    ]


def test_record_fields_are_ignored_and_products_come_from_the_config() -> None:
    hook = read(
        {
            "integration_type": "Webhook",
            "id": "5f1e0c2a9b3d4e0017a1b2c3",
            "created_at": "2021-03-04T10:20:30.000Z",
            "counters": [{"date": "20210304", "success": 3}],
            "logs": [],
            "errors": [],
            "productIdOrSlug": "demo",
        }
    )
    assert hook.product == 1001


def test_environment_tables_are_not_looked_up_in_a_document(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "s3cret")
    assert problems({**HOOK, "auth": {"bearer": {"env": "HOOK_TOKEN"}}}) == [
        "webhook.auth.bearer: expected a string, got { env = ... } (only string values can come "
        "from the environment)"
    ]
