"""The fast token signer stays in itsdangerous' format: each side verifies the other's
tokens, and a token never verifies under another purpose or secret."""

from __future__ import annotations

from typing import Any

import pytest
from itsdangerous import BadSignature, URLSafeSerializer

from api.services.security import Signer, TokenError

pytestmark = pytest.mark.unit

PAYLOADS: list[Any] = [
    ["m@example.org", "team", "https://shop.example/p/1?ref=mail", 0],
    ["m@example.org", "team"],
    ["ünïcode", "x" * 600, 3],
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_tokens_are_interchangeable_with_itsdangerous(payload: Any) -> None:
    signer = Signer("secret")
    reference = URLSafeSerializer("secret", salt="track-click")
    token = signer.dumps("track-click", payload)
    assert reference.loads(token) == payload
    assert signer.loads("track-click", reference.dumps(payload)) == payload


def test_short_tokens_are_byte_identical_to_itsdangerous() -> None:
    payload = PAYLOADS[1]
    reference = URLSafeSerializer("secret", salt="track-open")
    assert Signer("secret").dumps("track-open", payload) == reference.dumps(payload)


def test_purpose_secret_and_tampering_are_refused() -> None:
    token = Signer("secret").dumps("track-click", PAYLOADS[0])
    with pytest.raises(TokenError):
        Signer("secret").loads("unsubscribe", token)
    with pytest.raises(TokenError):
        Signer("other").loads("track-click", token)
    with pytest.raises(TokenError):
        Signer("secret").loads(
            "track-click", token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
        )
    for garbage in ("no-dot-at-all", ".", "abc.", "ünïcode.x", token.replace(".", "!")):
        with pytest.raises(TokenError):
            Signer("secret").loads("track-click", garbage)
    with pytest.raises(BadSignature):
        URLSafeSerializer("other", salt="track-click").loads(token)
