"""Standard-Webhooks signatures: how we sign, and the recipe customers use to verify.

Every request carries three headers:

- ``webhook-id``: the delivery's event id (the same on every retry: dedupe on it);
- ``webhook-timestamp``: unix seconds when this attempt was signed;
- ``webhook-signature``: space-separated ``v1,<base64 HMAC-SHA256>`` entries, one per
  active secret (two during a rotation).

To verify: take the secret after the ``whsec_`` prefix, base64-decode it to get the
key, compute ``HMAC-SHA256(key, f"{webhook_id}.{webhook_timestamp}.{raw_body}")``,
base64-encode it and compare (constant time) with any ``v1,`` entry; reject
timestamps more than 5 minutes away from now. `verify` below is exactly that.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

SECRET_PREFIX = "whsec_"
TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    pass


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_headers(
    secrets_: list[str], webhook_id: str, body: bytes, now: int | None = None
) -> dict[str, str]:
    timestamp = int(now if now is not None else time.time())
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, webhook_id, timestamp, body) for s in secrets_),
        "content-type": "application/json",
    }


def verify(secret: str, headers: dict[str, str], body: bytes, now: int | None = None) -> None:
    """The customer-side recipe; raises SignatureError unless the request is authentic."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        webhook_id = lowered["webhook-id"]
        timestamp = int(lowered["webhook-timestamp"])
        signatures = lowered["webhook-signature"].split()
    except (KeyError, ValueError) as exc:
        raise SignatureError("missing or malformed webhook headers") from exc
    if abs((now if now is not None else time.time()) - timestamp) > TOLERANCE_SECONDS:
        raise SignatureError("timestamp outside the tolerance window")
    expected = sign(secret, webhook_id, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise SignatureError("no matching signature")
