"""Standard Webhooks signatures: the spec's vector, and the reference library's verify."""

from __future__ import annotations

import base64
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from engine.core.signing import Signer, sign

# The test vector of the Standard Webhooks specification.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
PAYLOAD = b'{"test": 2432232314}'
SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_specs_vector() -> None:
    assert sign(SECRET, MSG_ID, TIMESTAMP, PAYLOAD) == SIGNATURE
    assert Signer(SECRET).sign(MSG_ID, TIMESTAMP, PAYLOAD) == SIGNATURE


def test_headers() -> None:
    expected = [
        ("webhook-id", MSG_ID),
        ("webhook-timestamp", "1614265330"),
        ("webhook-signature", SIGNATURE),
    ]
    assert Signer(SECRET).headers(MSG_ID, TIMESTAMP, PAYLOAD) == expected


def test_every_part_is_signed() -> None:
    signer = Signer(SECRET)
    variants = {
        signer.sign(MSG_ID, TIMESTAMP, PAYLOAD),
        signer.sign(MSG_ID + "x", TIMESTAMP, PAYLOAD),
        signer.sign(MSG_ID, TIMESTAMP + 1, PAYLOAD),
        signer.sign(MSG_ID, TIMESTAMP, PAYLOAD + b" "),
        Signer("whsec_" + base64.b64encode(b"k" * 24).decode()).sign(MSG_ID, TIMESTAMP, PAYLOAD),
    }
    assert len(variants) == 5


def test_repr_hides_the_key() -> None:
    assert repr(Signer(SECRET)) == "<Signer key=24 bytes>"


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 'must start with "whsec_"'),
        ("", 'must start with "whsec_"'),
        ("WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 'must start with "whsec_"'),
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa$w", "must be base64"),
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS", "must be base64"),  # bad padding
        ("whsec_MfKQ9r8GKYqrTwjUPD8I LPZIo2LaLaSw", "must be base64"),
        ("whsec_é", "must be base64"),
        ("whsec_", "at least 24 bytes, this one decodes to 0"),
        (
            "whsec_" + base64.b64encode(b"k" * 23).decode(),
            "at least 24 bytes, this one decodes to 23",
        ),
    ],
)
def test_invalid_secrets_are_refused_clearly(secret: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        Signer(secret)
    if len(secret) > len("whsec_") + 4:
        assert secret[len("whsec_") :] not in str(caught.value)  # never echo a secret


def test_long_keys_are_fine() -> None:
    key = base64.b64encode(bytes(range(64)) * 2).decode()
    assert Signer("whsec_" + key).sign("m", 1, b"").startswith("v1,")


def verify(secret: str, payload: bytes, headers: list[tuple[str, str]]) -> None:
    Webhook(secret).verify(payload, dict(headers), json_parse=False)


@given(
    key=st.binary(min_size=24, max_size=64),
    msg_id=st.from_regex(r"msg_[A-Za-z0-9]{1,32}", fullmatch=True),
    payload=st.text().map(str.encode),
)
def test_the_reference_library_verifies_our_signatures(
    key: bytes, msg_id: str, payload: bytes
) -> None:
    secret = "whsec_" + base64.b64encode(key).decode()
    # The library checks the timestamp against the clock, with 5 minutes of tolerance.
    headers = Signer(secret).headers(msg_id, int(time.time()), payload)
    verify(secret, payload, headers)


def test_the_reference_library_rejects_a_changed_payload() -> None:
    headers = Signer(SECRET).headers(MSG_ID, int(time.time()), PAYLOAD)
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, PAYLOAD.replace(b"2", b"3"), headers)
