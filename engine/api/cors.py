"""Cross-origin requests (CORS): which Access-Control-* headers an answer carries. No I/O.

A page on another origin may read an answer only if it names the page's origin in
``Access-Control-Allow-Origin`` (or says ``*``). Before a request that is not "simple"
(a method other than GET, HEAD or POST; an ``Authorization`` header; a JSON
``Content-Type``) the browser asks first, with a preflight: ``OPTIONS`` with ``Origin``
and ``Access-Control-Request-Method``, without credentials, so it is answered here, before
any token is looked at. The contract, for ``[api] cors_origins``:

| request                       | Origin listed (or "*" configured)   | Origin not listed  |
| ----------------------------- | ----------------------------------- | ------------------ |
| no ``Origin``                 | today's answer, byte for byte       | (the same)         |
| preflight                     | 204: Allow-Origin, -Methods,        | 403, a JSON error  |
|                               | -Headers, Max-Age                   |                    |
| any other, with ``Origin``    | the route's answer, with            | the route's answer |
|                               | Allow-Origin and Expose-Headers     |                    |

With origins configured, every answer to a request that carries ``Origin`` also says
``Vary: Origin`` (it depends on that header), listed or not; answers to requests without
one stay as they are. No ``Access-Control-Allow-Credentials``: tokens travel in the
``Authorization`` header or ``?access_token=``, never in cookies, so pages need none, and
``*`` stays usable. The origins come checked and normalised from the config (lower case,
no default port), as browsers write ``Origin``; the header is compared as it is.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

ANY_ORIGIN = "*"
"""Configured alone: every origin may read the answers (``Access-Control-Allow-Origin: *``)."""

MAX_AGE = 600
"""Seconds a browser may reuse a preflight's answer: one preflight per page and route
every ten minutes, and an origin removed from ``cors_origins`` (at a restart) loses its
cached preflights within that time."""

ALLOWED_HEADERS = frozenset({"authorization", "content-type", "last-event-id"})
"""Request headers a page may set: the token, a JSON body's type, and a stream's resume
point (fetch-based SSE clients set it; a reconnecting EventSource sends it too)."""

EXPOSED_HEADERS = ("allow", "hookwire-oldest-event-id", "www-authenticate")
"""Response headers the API sends beyond the safelisted ones, which a page may read: a
405's methods, a resumed stream's first kept event, a 401's challenge. (The API sends
no ``Retry-After``: a 429 or 503 says why in its JSON.)"""

VARY = ("vary", "origin")


class Kind(enum.Enum):
    """What the server does with a request, as far as CORS goes."""

    ROUTE = "route"  # the route answers, with ``headers`` added (often none)
    PREFLIGHT = "preflight"  # answered here: 204 with ``headers``, no route, no token
    REFUSED = "refused"  # a preflight from an origin not listed: 403 with ``headers``


@dataclass(frozen=True, slots=True)
class Decision:
    """The CORS side of one answer: its kind, the headers to add, and why it is refused."""

    kind: Kind
    headers: tuple[tuple[str, str], ...] = ()
    reason: str = ""


UNCHANGED = Decision(Kind.ROUTE)
"""A request CORS has nothing to add to: no ``Origin``, or no origins configured."""


class CorsPolicy:
    """Decides the Access-Control-* headers of answers, from the configured origins and
    the methods the API's routes serve."""

    __slots__ = ("_any", "_methods", "_origins", "_route_headers", "_unlisted")

    def __init__(self, origins: Iterable[str], methods: Iterable[str]) -> None:
        listed = tuple(dict.fromkeys(origins))
        self._any = ANY_ORIGIN in listed
        self._origins = frozenset(listed) - {ANY_ORIGIN}
        self._methods = ", ".join(dict.fromkeys(methods))
        exposed = ("access-control-expose-headers", ", ".join(EXPOSED_HEADERS))
        # Built once: an answer adds one of these tuples, and allocates nothing.
        self._route_headers = {
            origin: (("access-control-allow-origin", origin), exposed, VARY)
            for origin in self._origins
        }
        if self._any:
            self._route_headers[ANY_ORIGIN] = (
                ("access-control-allow-origin", ANY_ORIGIN),
                exposed,
                VARY,
            )
        self._unlisted = Decision(Kind.ROUTE, (VARY,)) if listed else UNCHANGED

    def __repr__(self) -> str:
        origins = "*" if self._any else ",".join(sorted(self._origins)) or "none"
        return f"<CorsPolicy origins={origins} methods={self._methods.replace(' ', '')}>"

    @property
    def active(self) -> bool:
        """True when some origin may read the answers (``cors_origins`` is not empty)."""
        return bool(self._route_headers)

    def allows(self, origin: str) -> bool:
        """True when a page of ``origin`` may read the answers."""
        return self._any or origin in self._origins

    def decide(
        self,
        method: str,
        origin: str | None,
        request_method: str | None = None,
        request_headers: str | None = None,
    ) -> Decision:
        """The CORS side of the answer to a request with this method and these headers:
        ``Origin``, ``Access-Control-Request-Method`` and ``-Headers`` (None when absent)."""
        if origin is None:
            return UNCHANGED
        if method == "OPTIONS" and request_method is not None:
            return self._preflight(origin, request_headers)
        if not self.allows(origin):
            return self._unlisted
        return Decision(Kind.ROUTE, self._route_headers[ANY_ORIGIN if self._any else origin])

    def _preflight(self, origin: str, request_headers: str | None) -> Decision:
        vary = (VARY,) if self.active else ()
        if not self.allows(origin):
            return Decision(
                Kind.REFUSED,
                vary,
                f"origin {origin!r} is not allowed to use this API from a browser: "
                "list it in [api] cors_origins",
            )
        headers = [
            ("access-control-allow-origin", ANY_ORIGIN if self._any else origin),
            ("access-control-allow-methods", self._methods),
        ]
        allowed = allowed_headers(request_headers)
        if allowed:
            headers.append(("access-control-allow-headers", ", ".join(allowed)))
        headers += [("access-control-max-age", str(MAX_AGE)), *vary]
        return Decision(Kind.PREFLIGHT, tuple(headers))


def allowed_headers(requested: str | None) -> list[str]:
    """The headers of ``Access-Control-Request-Headers`` a page may set, lower case, in the
    order asked, each once; the others are left out, so the browser refuses the request."""
    if not requested:
        return []
    names = (name.strip().lower() for name in requested.split(","))
    return list(dict.fromkeys(name for name in names if name in ALLOWED_HEADERS))
