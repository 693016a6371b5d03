"""Secrets handling: password hashes, API keys, session tokens, signed tokens, TOTP.

High-entropy random secrets (API keys, session tokens, recovery codes) are stored as
sha256: they cannot be brute-forced, and a fast hash keeps every request cheap. Human
passwords get argon2.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
import zlib
from typing import Any

import orjson
import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

API_KEY_PREFIX = "km_"
SESSION_PREFIX = "kms_"
_PASSWORDS = PasswordHasher()
_DUMMY_HASH: list[str] = []


class TokenError(ValueError):
    """A forged, malformed or expired signed token."""


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def hash_password(password: str) -> str:
    return _PASSWORDS.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _PASSWORDS.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def dummy_password_hash() -> str:
    """A hash of a random password with the same argon2 parameters as every account's:
    login verifies against it for an unknown address, so the answer takes as long as for
    a known one and timing does not tell which addresses have accounts."""
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(_PASSWORDS.hash(secrets.token_urlsafe(24)))
    return _DUMMY_HASH[0]


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def new_session_token() -> str:
    return SESSION_PREFIX + secrets.token_urlsafe(32)


def new_recovery_codes(count: int = 10) -> list[str]:
    return [f"{secrets.token_hex(4)}-{secrets.token_hex(4)}" for _ in range(count)]


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, email: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name="Kibamail")


def totp_step(secret: str, code: str, at: float | None = None) -> int | None:
    """The time step (30 s counter) whose code `code` is, within one step of now (clock
    drift), or None. The step lets a caller accept each code once (replay guard)."""
    totp = pyotp.TOTP(secret)
    now = int((time.time() if at is None else at) // totp.interval)
    candidate = code.strip()
    for step in (now, now - 1, now + 1):
        if hmac.compare_digest(totp.generate_otp(step).encode(), candidate.encode()):
            return step
    return None


def verify_totp(secret: str, code: str) -> bool:
    return totp_step(secret, code) is not None


def _b64decode(value: bytes) -> bytes:
    return base64.urlsafe_b64decode(value + b"=" * (-len(value) % 4))


class Signer:
    """HMAC-signed URL tokens, one salt per purpose so a token never works elsewhere."""

    def __init__(self, secret_key: str) -> None:
        self._secret = secret_key
        self._keyed: dict[str, Any] = {}

    def _mac(self, purpose: str, body: bytes) -> bytes:
        """HMAC-SHA1 from a per-purpose keyed object (copying it skips the key set-up)."""
        keyed = self._keyed.get(purpose)
        if keyed is None:  # itsdangerous' default "django-concat" derivation with sha1
            key = hashlib.sha1(purpose.encode() + b"signer" + self._secret.encode()).digest()
            keyed = self._keyed[purpose] = hmac.new(key, digestmod=hashlib.sha1)
        mac = keyed.copy()
        mac.update(body)
        return bytes(mac.digest())

    def dumps(self, purpose: str, payload: Any) -> str:
        """itsdangerous' URLSafeSerializer token format (uncompressed payload), produced
        without its per-call signer set-up: ~6 tokens per tracked email on the hot path."""
        body = base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=")
        signature = self._mac(purpose, body)
        return (body + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode("ascii")

    def loads(self, purpose: str, token: str) -> Any:
        """Verify and decode a URLSafeSerializer token (ours or itsdangerous', compressed
        or not); the payload is only decoded after the signature matched."""
        try:
            raw = token.encode("ascii")
            body, dot, signature = raw.rpartition(b".")
            if not dot or not body:
                raise ValueError("no signature")
            expected = self._mac(purpose, body)
            if not hmac.compare_digest(_b64decode(signature), expected):
                raise ValueError("signature mismatch")
            compressed = body.startswith(b".")
            payload = _b64decode(body[1:] if compressed else body)
            return orjson.loads(zlib.decompress(payload) if compressed else payload)
        except (ValueError, binascii.Error, zlib.error) as exc:
            raise TokenError("invalid or forged token") from exc

    def dumps_timed(self, purpose: str, payload: Any) -> str:
        return str(URLSafeTimedSerializer(self._secret, salt=purpose).dumps(payload))

    def loads_timed(self, purpose: str, token: str, max_age_seconds: int) -> Any:
        try:
            return URLSafeTimedSerializer(self._secret, salt=purpose).loads(
                token, max_age=max_age_seconds
            )
        except SignatureExpired as exc:
            raise TokenError("token expired") from exc
        except BadSignature as exc:
            raise TokenError("invalid or forged token") from exc
