"""engine/api/cors.py: which Access-Control-* headers an answer carries, without I/O."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.api.cors import (
    ALLOWED_HEADERS,
    MAX_AGE,
    UNCHANGED,
    CorsPolicy,
    Decision,
    Kind,
    allowed_headers,
)

PAGE = "https://dashboard.example.com"
LOCAL = "http://127.0.0.1:18481"
METHODS = ("DELETE", "GET", "POST", "PUT")
EXPOSE = ("access-control-expose-headers", "allow, hookwire-oldest-event-id, www-authenticate")
VARY = ("vary", "origin")

listed = CorsPolicy([PAGE, LOCAL], METHODS)
anyone = CorsPolicy(["*"], METHODS)
nobody = CorsPolicy([], METHODS)


def test_a_listed_origin_may_read_every_answer() -> None:
    for method in ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "BREW"):
        assert listed.decide(method, PAGE) == Decision(
            Kind.ROUTE, (("access-control-allow-origin", PAGE), EXPOSE, VARY)
        )
    assert listed.decide("GET", LOCAL).headers[0] == ("access-control-allow-origin", LOCAL)


def test_star_answers_star_to_every_origin() -> None:
    for origin in (PAGE, "http://localhost:3000", "null"):
        assert anyone.decide("GET", origin) == Decision(
            Kind.ROUTE, (("access-control-allow-origin", "*"), EXPOSE, VARY)
        )


def test_an_origin_not_listed_gets_no_access_control_header() -> None:
    # Vary: the answer depends on Origin, so a cache must not hand it to a listed page.
    for origin in ("https://evil.example", PAGE.upper(), PAGE + "/", "null", ""):
        assert listed.decide("GET", origin) == Decision(Kind.ROUTE, (VARY,))


def test_without_configured_origins_nothing_changes() -> None:
    assert not nobody.active
    assert nobody.decide("GET", PAGE) is UNCHANGED
    assert nobody.decide("OPTIONS", PAGE) is UNCHANGED  # no Access-Control-Request-Method


@pytest.mark.parametrize("policy", [listed, anyone, nobody])
def test_no_origin_changes_nothing(policy: CorsPolicy) -> None:
    assert policy.decide("GET", None) is UNCHANGED
    # Without Origin an OPTIONS is no preflight, whatever else it says: today's 405.
    assert policy.decide("OPTIONS", None, "POST", "authorization") is UNCHANGED


def test_preflight_of_a_listed_origin() -> None:
    decision = listed.decide("OPTIONS", PAGE, "POST", "authorization,content-type")
    assert decision == Decision(
        Kind.PREFLIGHT,
        (
            ("access-control-allow-origin", PAGE),
            ("access-control-allow-methods", "DELETE, GET, POST, PUT"),
            ("access-control-allow-headers", "authorization, content-type"),
            ("access-control-max-age", str(MAX_AGE)),
            VARY,
        ),
    )
    star = dict(anyone.decide("OPTIONS", PAGE, "GET", "last-event-id").headers)
    assert star["access-control-allow-origin"] == "*"
    assert star["access-control-allow-headers"] == "last-event-id"


def test_preflight_echoes_only_the_allowed_headers() -> None:
    decision = listed.decide("OPTIONS", PAGE, "PUT", "X-Custom, Authorization ,cookie")
    assert dict(decision.headers)["access-control-allow-headers"] == "authorization"
    # None allowed, or none asked for: no Allow-Headers at all (the browser then refuses
    # any header the page sets).
    for asked in (None, "", "x-custom"):
        headers = dict(listed.decide("OPTIONS", PAGE, "GET", asked).headers)
        assert "access-control-allow-headers" not in headers
        assert headers["access-control-max-age"] == "600"


def test_preflight_of_an_origin_not_listed_is_refused() -> None:
    decision = listed.decide("OPTIONS", "https://evil.example", "POST", "authorization")
    assert decision.kind is Kind.REFUSED
    assert decision.headers == (VARY,)
    assert decision.reason == (
        "origin 'https://evil.example' is not allowed to use this API from a browser: "
        "list it in [api] cors_origins"
    )
    refused = nobody.decide("OPTIONS", PAGE, "GET")
    assert (refused.kind, refused.headers) == (Kind.REFUSED, ())


def test_repr_shows_the_policy() -> None:
    assert repr(listed) == (
        "<CorsPolicy origins=http://127.0.0.1:18481,https://dashboard.example.com "
        "methods=DELETE,GET,POST,PUT>"
    )
    assert repr(anyone) == "<CorsPolicy origins=* methods=DELETE,GET,POST,PUT>"
    assert repr(nobody) == "<CorsPolicy origins=none methods=DELETE,GET,POST,PUT>"


# --- properties -----------------------------------------------------------------------------

header_text = st.text(st.characters(codec="latin-1"), max_size=40)
origins = st.one_of(st.sampled_from([PAGE, LOCAL, "null", "https://evil.example"]), header_text)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "TRACE"])
maybe_text = st.one_of(st.none(), header_text)
configured = st.sampled_from([listed, anyone, nobody])


@given(configured, methods, origins, maybe_text, maybe_text)
def test_allow_origin_only_for_an_allowed_origin(
    policy: CorsPolicy, method: str, origin: str, asked: str | None, asked_headers: str | None
) -> None:
    decision = policy.decide(method, origin, asked, asked_headers)
    headers = dict(decision.headers)
    allow = headers.get("access-control-allow-origin")
    if policy.allows(origin):
        assert decision.kind is not Kind.REFUSED
        assert allow == ("*" if policy is anyone else origin)
    else:
        assert allow is None
        assert not any(name.startswith("access-control-") for name in headers)
    assert decision.kind is (
        Kind.ROUTE
        if method != "OPTIONS" or asked is None
        else Kind.PREFLIGHT
        if policy.allows(origin)
        else Kind.REFUSED
    )
    assert "access-control-allow-credentials" not in headers
    assert headers.get("vary", "origin") == "origin"


@given(configured, methods, maybe_text, maybe_text)
def test_no_origin_is_always_unchanged(
    policy: CorsPolicy, method: str, asked: str | None, asked_headers: str | None
) -> None:
    assert policy.decide(method, None, asked, asked_headers) is UNCHANGED


@given(maybe_text)
def test_echoed_headers_are_allowed_ones_that_were_asked_for(asked: str | None) -> None:
    echoed = allowed_headers(asked)
    assert set(echoed) <= ALLOWED_HEADERS
    assert len(echoed) == len(set(echoed))
    asked_names = {name.strip().lower() for name in (asked or "").split(",")}
    assert set(echoed) <= asked_names


@given(st.lists(st.sampled_from([*sorted(ALLOWED_HEADERS), "x-a", "cookie"]), max_size=6))
def test_every_allowed_header_asked_for_is_echoed(asked: list[str]) -> None:
    spelled = ", ".join(name.title() for name in asked)
    assert allowed_headers(spelled) == list(dict.fromkeys(n for n in asked if n in ALLOWED_HEADERS))
