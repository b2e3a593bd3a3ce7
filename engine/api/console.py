"""The web console: its static files, shipped in the package (engine/console/), read once when
the API is built and served at ``/console`` to anyone (the page asks for a token itself).

Every answer here, the 404 of an unknown file included, carries the same security headers: a
Content-Security-Policy that lets the page load only its own script and style from this
origin (no inline script or style, no other origin, no frames, no forms), ``nosniff``, no
referrer, and ``no-store``, so a browser never shows a console older than its daemon.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources

from engine.http.h1 import Request
from engine.http.server import JSON, Response, error_response

FOLDER = "console"
"""The files' folder inside the ``engine`` package (package data, no Python in it)."""

INDEX = "index.html"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
"""The files served, by extension; any other file in the folder is not."""

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
"""The page's script and style come from this origin only, never inline: text that reached
the page as markup by mistake still runs nothing. ``connect-src 'self'``: the page talks to
this daemon alone. ``img-src data:`` is the empty favicon (no request for /favicon.ico)."""

SECURITY_HEADERS = (
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),  # frame-ancestors for browsers that predate it
    ("cache-control", "no-store"),
)


def shipped_files() -> dict[str, bytes]:
    """The console's files as the installed package holds them, by name."""
    folder = resources.files("engine").joinpath(FOLDER)
    return {
        entry.name: entry.read_bytes()
        for entry in folder.iterdir()
        if entry.is_file() and _extension(entry.name) in CONTENT_TYPES
    }


class Console:
    """Handlers of ``GET /console`` (the page) and ``GET /console/:file``."""

    def __init__(self, files: Mapping[str, bytes] | None = None) -> None:
        found = shipped_files() if files is None else files
        self._answers = {
            name: Response(
                200,
                body,
                [("content-type", CONTENT_TYPES[_extension(name)]), *SECURITY_HEADERS],
            )
            for name, body in found.items()
            if _extension(name) in CONTENT_TYPES
        }
        assert INDEX in self._answers, f"the console's {INDEX} is missing from the package"

    def __repr__(self) -> str:
        return f"<Console files={len(self._answers)}>"

    async def page(self, request: Request, params: dict[str, str]) -> Response:
        return self._answers[INDEX]

    async def file(self, request: Request, params: dict[str, str]) -> Response:
        found = self._answers.get(params["file"])
        if found is None:
            return error_response(
                404, f"no console file {params['file']!r}", [*JSON, *SECURITY_HEADERS]
            )
        return found


def _extension(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:] if dot > 0 else ""
