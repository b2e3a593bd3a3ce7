"""Standard Webhooks signatures (https://www.standardwebhooks.com), no I/O.

The signature is ``v1,`` and the base64 HMAC-SHA256, keyed with the base64-decoded part of
a ``whsec_`` secret, of ``{msg_id}.{timestamp}.{payload}``. Every attempt of one delivery
carries the same ``webhook-id``; the timestamp, and so the signature, are made per attempt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

SECRET_PREFIX = "whsec_"
MIN_KEY_BYTES = 24  # Standard Webhooks: keys of 24 to 64 bytes; shorter ones are guessable
VERSION = "v1"  # the scheme's only symmetric signature version (HMAC-SHA256)


class Signer:
    """Signs one hook's payloads; decodes the secret once, when the hook is loaded."""

    __slots__ = ("_key",)

    def __init__(self, secret: str) -> None:
        # Errors never echo the secret: they end up in logs.
        if not secret.startswith(SECRET_PREFIX):
            raise ValueError(f'a webhook secret must start with "{SECRET_PREFIX}"')
        try:
            key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(
                f'the part of a webhook secret after "{SECRET_PREFIX}" must be base64'
            ) from None
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(
                f"a webhook secret's key must be at least {MIN_KEY_BYTES} bytes, "
                f"this one decodes to {len(key)}"
            )
        self._key = key

    def __repr__(self) -> str:
        return f"<Signer key={len(self._key)} bytes>"

    def sign(self, msg_id: str, timestamp: int, payload: bytes) -> str:
        """The ``webhook-signature`` value for one attempt."""
        mac = hmac.new(self._key, f"{msg_id}.{timestamp}.".encode(), hashlib.sha256)
        mac.update(payload)  # no copy of a large body
        return f"{VERSION},{base64.b64encode(mac.digest()).decode('ascii')}"

    def headers(self, msg_id: str, timestamp: int, payload: bytes) -> list[tuple[str, str]]:
        """``webhook-id``, ``webhook-timestamp`` (Unix seconds) and ``webhook-signature``."""
        return [("webhook-id", msg_id), *self.attempt_headers(msg_id, timestamp, payload)]

    def attempt_headers(self, msg_id: str, timestamp: int, payload: bytes) -> list[tuple[str, str]]:
        """``webhook-timestamp`` and ``webhook-signature``: what each attempt adds to a
        request that already carries its ``webhook-id``."""
        return [
            ("webhook-timestamp", str(timestamp)),
            ("webhook-signature", self.sign(msg_id, timestamp, payload)),
        ]


def sign(secret: str, msg_id: str, timestamp: int, payload: bytes) -> str:
    """`Signer.sign` for a one-off; a hook keeps its `Signer` instead."""
    return Signer(secret).sign(msg_id, timestamp, payload)
