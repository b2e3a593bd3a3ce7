"""`hookwire token new | hash`: make access tokens and hash them for the config."""

from __future__ import annotations

import sys

from engine.core.auth import hash_token, new_token

SCOPES = ("publish", "subscribe", "admin", "gateway")


def new(name: str, scopes: str) -> int:
    wanted = [s.strip() for s in scopes.split(",") if s.strip()]
    for scope in wanted:
        if scope not in SCOPES:
            print(
                f'hookwire token new: unknown scope "{scope}"; expected {", ".join(SCOPES)}',
                file=sys.stderr,
            )
            return 2
    token = new_token()
    print(f"token:  {token}")
    print("Keep the token secret; put only its hash in the config:\n")
    print("[[auth.tokens]]")
    print(f"name = {toml_string(name)}")
    print(f'sha256 = "{hash_token(token)}"')
    print("scopes = [" + ", ".join(f'"{s}"' for s in wanted) + "]")
    return 0


# TOML's short escapes; other control characters are written \uXXXX.
_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string: quotes, backslashes and control characters escaped."""
    out = ['"']
    for char in text:
        if char in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[char])
        elif char < " " or char == "\x7f":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def hash_(token: str | None) -> int:
    if token is None:
        token = sys.stdin.readline().strip()
    if not token:
        print("hookwire token hash: no token given", file=sys.stderr)
        return 2
    print(hash_token(token))
    return 0
