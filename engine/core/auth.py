"""Bearer tokens: how they are made, hashed, looked up, and what they may see."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

TOKEN_PREFIX = "hw_"
TOKEN_BYTES = 32
"""256 bits of randomness: not guessable, and hashing it with plain sha256 is safe."""


def new_token() -> str:
    """A fresh random token to hand to a user (only its hash goes in the config)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """The sha256 hex digest stored in `[[auth.tokens]] sha256`."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


ADMIN_IMPLIES = frozenset({"hooks", "metrics"})
"""Scopes an ``admin`` token has without naming them (the others, publishing and
subscribing among them, an admin token names as any other)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a configured token's name, scopes and reach."""

    name: str
    scopes: frozenset[str]
    products: frozenset[int]
    devices: frozenset[str]

    def allows(self, scope: str) -> bool:
        """Whether the token has ``scope``, named or implied by ``admin``."""
        return scope in self.scopes or (scope in ADMIN_IMPLIES and "admin" in self.scopes)

    @property
    def unscoped(self) -> bool:
        """True when the token reaches every product and device."""
        return not self.products and not self.devices

    def sees_product(self, product_id: int | None) -> bool:
        return not self.products or product_id in self.products

    def sees_device(self, device_id: str) -> bool:
        return not self.devices or device_id in self.devices


class TokenEntry(Protocol):
    """A configured token as the authenticator needs it (``[[auth.tokens]]`` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def sha256(self) -> str: ...
    @property
    def scopes(self) -> frozenset[str]: ...
    @property
    def products(self) -> frozenset[int]: ...
    @property
    def devices(self) -> frozenset[str]: ...


class Authenticator:
    """Finds the token a request carries among the configured hashes, in constant time."""

    def __init__(self, tokens: Iterable[TokenEntry]) -> None:
        self._entries = [
            (bytes.fromhex(t.sha256), Principal(t.name, t.scopes, t.products, t.devices))
            for t in tokens
        ]

    def __repr__(self) -> str:
        return f"<Authenticator tokens={len(self._entries)}>"

    def authenticate(self, token: str) -> Principal | None:
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found: Principal | None = None
        # Compare with every entry, matched or not: the time taken says nothing.
        for stored, principal in self._entries:
            if hmac.compare_digest(stored, digest):
                found = principal
        return found
