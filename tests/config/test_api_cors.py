"""`[api] cors_origins` in the config file: the default, the origins' checks and messages."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config.changes import needs_restart
from engine.config.settings import ApiConfig, Config, ConfigError, load_config


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Errors name the path as given: run in tmp_path so they read "engine.toml: ...".
    monkeypatch.chdir(tmp_path)


def load(text: str, environ: dict[str, str] | None = None) -> Config:
    path = Path("engine.toml")
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_config(path, environ or {})


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(text)
    return caught.value.problems


def origins(*values: str) -> str:
    listed = ", ".join(f'"{value}"' for value in values)
    return f"[api]\ncors_origins = [{listed}]\n"


def test_no_origins_by_default() -> None:
    assert load("").api == ApiConfig(cors_origins=())
    assert load("[api]\n").api.cors_origins == ()
    assert load("[api]\ncors_origins = []\n").api.cors_origins == ()


def test_origins_are_kept_as_browsers_write_them() -> None:
    config = load(
        origins(
            "https://example.com",
            "http://127.0.0.1:8081",
            "HTTPS://Dashboard.Example.COM:443",
            "http://localhost:80",
            "http://[::1]:3000",
            "http://[0:0:0:0:0:0:0:1]",
            "https://example.com.",
        )
    )
    assert config.api.cors_origins == (
        "https://example.com",
        "http://127.0.0.1:8081",
        "https://dashboard.example.com",
        "http://localhost",
        "http://[::1]:3000",
        "http://[::1]",
        "https://example.com.",
    )


def test_star_means_any_origin() -> None:
    assert load(origins("*")).api.cors_origins == ("*",)


def test_origins_from_the_environment() -> None:
    text = '[api]\ncors_origins = [{ env = "PAGE_ORIGIN" }]\n'
    config = load(text, {"PAGE_ORIGIN": "https://example.com"})
    assert config.api.cors_origins == ("https://example.com",)


HINT = (
    'expected an origin, "scheme://host[:port]" with scheme http or https and nothing '
    'after (such as "https://example.com" or "http://127.0.0.1:8081"), or "*" for any '
    "origin, got "
)


@pytest.mark.parametrize(
    ("value", "what", "origin"),
    [
        ("https://example.com/", "a trailing slash", "https://example.com"),
        ("https://example.com/app", "a path", "https://example.com"),
        ("http://127.0.0.1:8081/index.html", "a path", "http://127.0.0.1:8081"),
        ("https://example.com?x=1", "a path", "https://example.com"),
        ("https://example.com#top", "a path", "https://example.com"),
    ],
)
def test_an_origin_has_nothing_after_the_port(value: str, what: str, origin: str) -> None:
    assert problems(origins(value)) == [
        f"engine.toml: api.cors_origins[0]: expected an origin, without {what} or anything "
        f'after the host and port ("{origin}"), got "{value}"'
    ]


@pytest.mark.parametrize(
    "value",
    [
        "example.com",
        "ftp://example.com",
        "ws://example.com",
        "file://",
        "https://",
        "https:example.com",
        "https:/example.com",
        "https:///app",
        "https://example.com:",
        "https://example.com:0",
        "https://example.com:65536",
        "https://example.com:http",
        "https://user@example.com",
        "https://user:pw@example.com",
        "http://exa mple.com",
        " https://example.com",
        "https://example.com ",
        "http://[::1",
        "http://[fe80::1%25eth0]:80",
        "https://bücher.example",
        "null",
        "",
        "**",
    ],
)
def test_what_is_not_an_origin(value: str) -> None:
    shown = value.replace('"', '\\"')
    assert problems(origins("https://fine.example", value)) == [
        f'engine.toml: api.cors_origins[1]: {HINT}"{shown}"'
    ]


def test_wrong_types_and_unknown_keys() -> None:
    assert problems('[api]\ncors_origins = "https://example.com"\n') == [
        'engine.toml: api.cors_origins: expected an array, got "https://example.com"'
    ]
    assert problems("[api]\ncors_origins = [8080]\n") == [
        "engine.toml: api.cors_origins[0]: expected a string, got 8080"
    ]
    assert problems('[api]\ncors_origin = ["https://example.com"]\n') == [
        'engine.toml: api.cors_origin: unknown key; did you mean "cors_origins"?'
    ]
    assert problems('api = "cors"\n') == ['engine.toml: api: expected a table ([api]), got "cors"']


def test_star_goes_alone_and_origins_once() -> None:
    assert problems(origins("*", "https://example.com")) == [
        'engine.toml: api.cors_origins: expected "*" alone (it allows every origin) or a list '
        "of origins, got both"
    ]
    assert problems(origins("https://example.com", "https://EXAMPLE.com:443")) == [
        'engine.toml: api.cors_origins[1]: "https://example.com" is already used by '
        "api.cors_origins[0]"
    ]


def test_every_bad_origin_is_reported() -> None:
    assert problems(origins("https://a.example/", "https://b.example", "gopher://c")) == [
        "engine.toml: api.cors_origins[0]: expected an origin, without a trailing slash or "
        'anything after the host and port ("https://a.example"), got "https://a.example/"',
        f'engine.toml: api.cors_origins[2]: {HINT}"gopher://c"',
    ]


def test_changed_origins_need_a_restart() -> None:
    old = load("")
    new = load(origins("https://example.com"))
    assert needs_restart(old, new) == ["api.cors_origins"]


# --- any string: refused with one message, or an origin that stays what it is ---------------

plausible = st.builds(
    lambda scheme, host, port, tail: f"{scheme}://{host}{port}{tail}",
    st.sampled_from(["http", "https", "HTTPS", "ws", "ftp"]),
    st.sampled_from(["example.com", "Example.COM", "127.0.0.1", "[::1]", "[::ffff:1.2.3.4]", ""]),
    st.sampled_from(["", ":80", ":443", ":8081", ":0", ":65536", ":"]),
    st.sampled_from(["", "/", "/app", "?q", "#f", " "]),
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(plausible, st.text(max_size=30)))
def test_a_value_is_refused_or_kept_as_a_fixed_point(value: str) -> None:
    text = f"[api]\ncors_origins = [{toml_string(value)}]\n"
    try:
        config = load(text)
    except ConfigError as error:
        [problem] = error.problems
        assert problem.startswith("engine.toml: api.cors_origins[0]: expected ")
        return
    [origin] = config.api.cors_origins
    assert origin == "*" or ORIGIN.fullmatch(origin), origin
    again = load(f"[api]\ncors_origins = [{toml_string(origin)}]\n")
    assert again.api.cors_origins == (origin,)


def toml_string(value: str) -> str:
    """``value`` as a TOML basic string: quotes, backslashes and control characters escaped."""
    escaped = "".join(
        f"\\u{ord(c):04x}" if c in '"\\' or ord(c) < 0x20 or ord(c) == 0x7F else c for c in value
    )
    return f'"{escaped}"'


ORIGIN = re.compile(r"https?://([a-z0-9_.-]+|\[[0-9a-f:.]+\])(:[1-9][0-9]{0,4})?")
