"""Building a hook's request: default fields, body options, headers, auth, bad renders."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.config.settings import ConfigError, HookConfig
from engine.core.model import Event
from engine.delivery.request import (
    USER_AGENT,
    PreparedRequest,
    RequestError,
    build_request,
    form_encode,
    sent_request,
)
from engine.http.client import Origin
from engine.journal.delivery_log import SentRequest
from engine.templates.context import event_context
from tests.conftest import WriteConfig

EVENT = Event(
    7, "temp", '{"temp":21.5,"unit":"C"}', 60, False, "2026-11-28T10:00:00.000Z", "dev1", None
)
DEFAULTS = {
    "event": "temp",
    "data": '{"temp":21.5,"unit":"C"}',
    "coreid": "dev1",
    "published_at": "2026-11-28T10:00:00.000Z",
}


def hook(write_config: WriteConfig, body: str) -> HookConfig:
    [made] = write_config(f'[[hooks]]\nevent = "temp"\n{body}\n').hooks
    return made


def build(made: HookConfig, event: Event = EVENT):  # type: ignore[no-untyped-def]
    assert made.templates is not None
    return build_request(made, made.templates, event, event_context(event), "msg_1")


def test_default_is_a_form_post_of_the_default_fields(write_config: WriteConfig) -> None:
    request = build(hook(write_config, 'url = "https://api.example.com/x/{{{unit}}}"'))
    assert request.target == Origin("https", "api.example.com", 443)
    assert str(request.target) == "https://api.example.com"
    assert (request.method, request.path) == ("POST", "/x/C")
    assert parse_qs(request.body.decode()) == {k: [v] for k, v in DEFAULTS.items()}
    headers = dict(request.headers)
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert headers["User-Agent"] == USER_AGENT
    assert headers["webhook-id"] == "msg_1"


def test_get_sends_the_default_fields_as_a_query(write_config: WriteConfig) -> None:
    request = build(hook(write_config, 'url = "http://h:8080/r?a=1"\nrequestType = "GET"'))
    assert request.target == Origin("http", "h", 8080)
    assert request.body == b""
    path, _, query = request.path.partition("?")
    assert path == "/r"
    assert parse_qs(query) == {"a": ["1"], **{k: [v] for k, v in DEFAULTS.items()}}


def test_json_with_defaults_and_typed_values(write_config: WriteConfig) -> None:
    request = build(
        hook(
            write_config,
            'url = "http://h/"\njson = { value = "{{{temp}}}", unit = "{{unit}}" }\n'
            "typed_json = true",
        )
    )
    assert orjson.loads(request.body) == {**DEFAULTS, "value": 21.5, "unit": "C"}
    headers = dict(request.headers)
    assert headers["Content-Type"] == headers["Accept"] == "application/json"


def test_no_defaults_form_query_headers_and_auth(write_config: WriteConfig) -> None:
    request = build(
        hook(
            write_config,
            'url = "http://h/"\nnoDefaults = true\nform = { t = "{{temp}}" }\n'
            'query = { u = "{{unit}}" }\nheaders = { "X-Device" = "{{{TRACKLE_DEVICE_ID}}}" }\n'
            'auth = { username = "user", password = "p{{unit}}" }',
        )
    )
    assert request.body == b"t=21.5"
    assert urlsplit(request.path).query == "u=C"
    headers = dict(request.headers)
    assert headers["X-Device"] == "dev1"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"user:pC").decode()


def test_a_bearer_token_is_a_header_template(write_config: WriteConfig) -> None:
    request = build(hook(write_config, 'url = "http://h/"\nauth = { bearer = "t-{{{unit}}}" }'))
    assert [value for name, value in request.headers if name == "Authorization"] == ["Bearer t-C"]
    with pytest.raises(ConfigError) as caught:
        hook(write_config, 'url = "http://h/"\nauth = { bearer = "{{#a}}" }')
    assert caught.value.problems[0].endswith(
        'hooks[0].auth.bearer: 1:1: section "a" is never closed'
    )


def test_raw_body(write_config: WriteConfig) -> None:
    request = build(hook(write_config, 'url = "http://h/"\nbody = "t={{temp}}"'))
    assert request.body == b"t=21.5"


@pytest.mark.parametrize(
    ("body", "data", "error"),
    [
        ('url = "http://{{{u}}}/"', '{"u":""}', "has no host"),
        ('url = "http://h/{{{u}}}"', '{"u":"a b"}', "contains white space"),
        ('url = "http://h/{{{u}}}"', '{"u":"x\\r\\nHost: evil"}', 'variable "u" contains a line'),
        ('url = "http://h/"\nheaders = { X = "{{{u}}}" }', '{"u":"a\\nb"}', 'variable "u"'),
        ('url = "http://h/"\nheaders = { "{{{u}}}" = "v" }', '{"u":"a b"}', "not a valid token"),
        ('url = "http://h/"\njson = \'{"a":{{{u}}}}\'', '{"u":"nope"}', "not valid JSON"),
        ('url = "http://h:99999/"', "{}", "is not valid"),
        ('url = "http://h/"\nheaders = { "Content-Length" = "5" }', "{}", "set by the engine"),
        ('url = "http://h/"\nauth = { bearer = "{{{u}}}" }', '{"u":"a\\nb"}', 'variable "u"'),
        (
            'url = "http://h/"\nauth = { bearer = "{{{u}}}" }',
            '{"u":"a\\u0000b"}',
            "rendered header 'Authorization' contains the control character",
        ),
    ],
)
def test_bad_renders_are_request_errors(
    write_config: WriteConfig, body: str, data: str, error: str
) -> None:
    event = Event(1, "temp", data, 60, False, "t", "dev1", None)
    with pytest.raises(RequestError, match=error):
        build(hook(write_config, body), event)


@pytest.mark.parametrize("control", ["\\u0000", "\\u0001", "\\u000b", "\\u001b", "\\u007f"])
def test_control_characters_from_event_data_are_refused_in_headers_and_urls(
    write_config: WriteConfig, control: str
) -> None:
    made = hook(write_config, 'url = "http://h/"\nheaders = { X-Unit = "{{{u}}}" }')
    event = Event(1, "temp", f'{{"u":"a{control}b"}}', 60, False, "t", "dev1", None)
    with pytest.raises(RequestError) as caught:
        build(made, event)
    char = orjson.loads(f'"{control}"')
    assert str(caught.value) == (
        f"rendered header 'X-Unit' contains the control character {char!r}, which HTTP does "
        "not allow in a header value"
    )
    with pytest.raises(RequestError, match=r"contains (a control character|white space)"):
        build(hook(write_config, 'url = "http://h/{{{u}}}"'), event)


def test_a_tab_in_a_header_value_is_sent(write_config: WriteConfig) -> None:
    made = hook(write_config, 'url = "http://h/"\nheaders = { X-Unit = "{{{u}}}" }')
    event = Event(1, "temp", '{"u":"a\\tb"}', 60, False, "t", "dev1", None)
    assert dict(build(made, event).headers)["X-Unit"] == "a\tb"


@given(st.dictionaries(st.text(max_size=10), st.text(max_size=30), max_size=5))
def test_form_encode_is_urlencode(fields: dict[str, str]) -> None:
    assert form_encode(fields) == urlencode(fields)


def test_the_delivery_log_keeps_the_request_with_its_secrets_masked(
    write_config: WriteConfig,
) -> None:
    request = build(
        hook(
            write_config,
            'url = "https://h:8443/in?access_token=s3cret&site=a&api_key=k"\n'
            'headers = { "X-Api-Key" = "k1", "X-Device" = "{{{TRACKLE_DEVICE_ID}}}",'
            ' Cookie = "id=1" }\nauth = { bearer = "t-{{{unit}}}" }',
        )
    )
    sent = SentRequest.unpack(sent_request(request))
    assert sent is not None
    assert sent.method == "POST"
    assert sent.url == "https://h:8443/in?access_token=***&site=a&api_key=***"
    headers = dict(sent.headers)
    assert headers["Authorization"] == headers["X-Api-Key"] == headers["Cookie"] == "***"
    assert headers["X-Device"] == "dev1"
    assert "s3cret" not in repr(sent) and "t-C" not in repr(sent)


@given(st.dictionaries(st.sampled_from(["token", "q", "password", "x"]), st.text(max_size=8)))
def test_no_secret_named_query_value_reaches_the_log(fields: dict[str, str]) -> None:
    path = "/p?" + urlencode(fields) if fields else "/p"
    request = PreparedRequest(Origin("http", "h", 80), "GET", path, [], b"")
    sent = SentRequest.unpack(sent_request(request))
    assert sent is not None
    query = parse_qs(urlsplit(sent.url).query, keep_blank_values=True)
    for name in ("token", "password"):
        if name in fields:
            assert query[name] == ["***"]
    for name in ("q", "x"):
        if name in fields:
            assert query[name] == [fields[name]]
