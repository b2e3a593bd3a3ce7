"""The web console's files: served at /console with their security headers and no token,
shipped as package data, and written so that their Content-Security-Policy lets them run
(no inline script or style) and data never becomes markup."""

from __future__ import annotations

import re
import tomllib
from collections.abc import AsyncIterator
from fnmatch import fnmatch
from html.parser import HTMLParser

import httpx
import pytest

from engine.api.console import CONTENT_SECURITY_POLICY, INDEX, Console, shipped_files
from engine.api.routes import Matched, match_route
from tests.conftest import Served
from tests.helpers import ROOT

SECURITY = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


@pytest.fixture
async def client(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.url, timeout=5) as client:
        yield client


def security_of(response: httpx.Response) -> dict[str, str]:
    return {name: response.headers.get(name, "") for name in SECURITY}


def test_the_console_routes() -> None:
    for path, name, params in (
        ("/console", "console", {}),
        ("/console/", "console", {}),
        ("/console/console.js", "console_file", {"file": "console.js"}),
    ):
        matched = match_route("GET", path)
        assert isinstance(matched, Matched)
        assert (matched.route.name, matched.params) == (name, params)


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/console", "text/html; charset=utf-8"),
        ("/console/", "text/html; charset=utf-8"),
        ("/console/index.html", "text/html; charset=utf-8"),
        ("/console/console.js", "text/javascript; charset=utf-8"),
        ("/console/console.css", "text/css; charset=utf-8"),
    ],
)
async def test_each_file_with_its_type_and_headers_and_no_token(
    client: httpx.AsyncClient, path: str, content_type: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert security_of(response) == SECURITY
    name = path.removeprefix("/console").strip("/") or INDEX
    assert response.content == shipped_files()[name]
    head = await client.head(path)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == str(len(response.content))


@pytest.mark.parametrize(
    "path", ["/console/nope.js", "/console/..%2Fapp.py", "/console/%2e%2e", "/console/README"]
)
async def test_an_unknown_file_is_a_404_with_the_same_headers(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.json()["error"].startswith("no console file ")
    assert security_of(response) == SECURITY


async def test_deeper_paths_and_other_methods_are_not_the_console(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/console/a/b.js")).status_code == 404
    refused = await client.post("/console", content=b"x")
    assert (refused.status_code, refused.headers["allow"]) == (405, "GET, HEAD")


def test_every_file_is_package_data() -> None:
    """A file added to engine/console/ is served only if a package-data glob ships it."""
    files = shipped_files()
    assert {INDEX, "console.js", "console.css"} <= set(files)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["engine"]
    for name in files:
        assert any(fnmatch(f"console/{name}", glob) for glob in globs), name


def test_a_package_without_its_page_is_refused() -> None:
    with pytest.raises(AssertionError, match=r"index\.html is missing"):
        Console({"console.js": b""})


class _Page(HTMLParser):
    """What index.html asks the browser to load or run."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []
        self.inline: list[str] = []  # script, style and handler attributes written inline
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.inline += [f"{tag} {name}" for name in found if name == "style" or name[:2] == "on"]
        if tag == "style":
            self.inline.append("style element")
        if tag == "script":
            self._in_script = True
            assert found.get("src"), "a script without src is inline"
        for name in ("src", "href"):
            if found.get(name):
                self.loads.append(str(found[name]))

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("script content")


def test_the_page_runs_under_its_policy() -> None:
    files = shipped_files()
    page = _Page()
    page.feed(files[INDEX].decode())
    assert page.inline == []
    served = {f"/console/{name}" for name in files}
    assert set(page.loads) == {"/console/console.css", "/console/console.js", "data:,"}
    assert set(page.loads) - {"data:,"} <= served


def test_the_script_never_turns_data_into_markup_or_logs() -> None:
    script = shipped_files()["console.js"].decode()
    for sink in (
        r"\.innerHTML",
        r"\.outerHTML",
        r"insertAdjacentHTML",
        r"document\.write",
        r"\beval\(",
        r"new Function",
        r"console\.(log|info|debug|warn|error)",
        r"\blocalStorage\b",  # the token stays in this tab: sessionStorage
        r"access_token",  # the token travels in a header, never in a URL
    ):
        assert not re.search(sink, script), sink
