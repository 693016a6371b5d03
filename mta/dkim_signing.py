"""DKIM signing with dkimpy, RSA and ed25519, keys per team and sending domain in Redis.

Key location (written by the API when a team adds a domain): the hash
``RedisKeys.dkim_key(team_id, domain)`` with ``selector``, ``algorithm`` (``rsa-sha256`` or
``ed25519-sha256``) and ``private_key`` (PEM for RSA; base64 of the raw 32-byte seed
for ed25519, dkimpy's format). Keys are cached per process for a minute so signing
costs no Redis round trip per message; RSA keys are parsed once and signed by OpenSSL
(``mta.dkim_openssl``: dkimpy's pure-Python RSA costs ~10 ms a message). A message is
signed only with its own team's key: two teams that added the same name never sign with
each other's key, and the platform's notification domain is never signed for a customer.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from kibamail.redis_keys import RedisKeys

from .coalesce import SingleFlight
from .dkim_openssl import rsa_signature_header

if TYPE_CHECKING:
    from .sender_auth import PlatformSender

SIGNED_HEADERS = [
    b"from",
    b"to",
    b"cc",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"mime-version",
    b"content-type",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
]


@dataclass(frozen=True)
class DkimKey:
    selector: str
    algorithm: str
    private_key: bytes


def generate_rsa_key(bits: int = 2048) -> tuple[bytes, str]:
    """(PEM private key, DNS TXT value) for a new RSA DKIM key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"


def generate_ed25519_key() -> tuple[bytes, str]:
    """(base64 seed as dkimpy expects it, DNS TXT value) for a new ed25519 DKIM key."""
    key = ed25519.Ed25519PrivateKey.generate()
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return base64.b64encode(seed), f"v=DKIM1; k=ed25519; p={base64.b64encode(public).decode()}"


def store_dkim_key(
    redis: Any, team_id: str, domain: str, selector: str, algorithm: str, private_key: bytes
) -> None:
    """A team's key for a domain, as the API stores it (sync client; tests and benches)."""
    if algorithm not in ("rsa-sha256", "ed25519-sha256"):
        raise ValueError(f"unsupported DKIM algorithm {algorithm!r}")
    redis.hset(
        RedisKeys.dkim_key(team_id, domain),
        mapping={"selector": selector, "algorithm": algorithm, "private_key": private_key},
    )


def sign(data: bytes, domain: str, key: DkimKey) -> bytes:
    """The message with a DKIM-Signature header prepended (RSA: OpenSSL, see dkim_openssl)."""
    head = data[:8192].lower()
    include = [h for h in SIGNED_HEADERS if h in head] or [b"from"]
    if key.algorithm == "rsa-sha256":
        header = rsa_signature_header(
            data, key.selector.encode(), domain.encode(), key.private_key, include
        )
    else:
        header = dkim.sign(
            data,
            key.selector.encode(),
            domain.encode(),
            key.private_key,
            include_headers=include,
            signature_algorithm=key.algorithm.encode(),
            linesep=b"\r\n",
        )
    return header + data


class DkimSigner:
    def __init__(
        self, redis: Any, cache_seconds: float = 60.0, platform: PlatformSender | None = None
    ) -> None:
        self.redis = redis
        self.cache_seconds = cache_seconds
        self.platform = platform
        self._cache: dict[str, tuple[float, DkimKey | None]] = {}
        self._lookups = SingleFlight()

    async def key_for(self, team_id: str, domain: str) -> DkimKey | None:
        """The sending team's key for ``domain`` (None: not that team's, or reserved)."""
        domain = domain.lower()
        if self.platform is not None and self.platform.reserved_for(team_id, domain):
            return None
        redis_key = RedisKeys.dkim_key(team_id, domain)
        cached = self._cache.get(redis_key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        return await self._lookups.run(redis_key, lambda: self._load(redis_key))

    async def _load(self, redis_key: str) -> DkimKey | None:
        raw = await self.redis.hgetall(redis_key)
        key = None
        if raw.get(b"selector") and raw.get(b"private_key"):
            key = DkimKey(
                raw[b"selector"].decode(),
                (raw.get(b"algorithm") or b"rsa-sha256").decode(),
                raw[b"private_key"],
            )
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[redis_key] = (time.monotonic() + self.cache_seconds, key)
        return key

    async def sign(self, data: bytes, domain: str, team_id: str) -> bytes:
        """Signed with ``team_id``'s key for ``domain``, or unchanged when it has none."""
        key = await self.key_for(team_id, domain)
        return sign(data, domain, key) if key else data
