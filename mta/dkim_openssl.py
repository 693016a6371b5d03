"""RSA DKIM signatures: dkimpy's canonicalization and header, OpenSSL's RSA.

dkimpy signs RSA keys with its own ASN.1 key parser and Python big-integer ``pow()``:
~10 ms a message for a 2048-bit key (24 ms measured on the loaded benchmark machine),
which alone caps a core at ~100 signed messages/s. ``OpenSslRsaDKIM`` keeps all that
dkimpy does — header selection checks, canonicalization, body and header hashing, the
tag layout and folding — and swaps only the private-key operation for OpenSSL's
(``cryptography``), on a key parsed once per process. PKCS#1 v1.5 is deterministic, so
the header is byte for byte the one ``dkim.sign`` writes (a unit test checks that).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import time

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from dkim.canonicalization import CanonicalizationPolicy, Relaxed

CANONICALIZE = (b"relaxed", b"simple")  # dkim.sign's default


@functools.lru_cache(maxsize=1024)
def load_rsa_key(pem: bytes) -> rsa.RSAPrivateKey:
    """The parsed key (cached: parsing costs more than signing)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise dkim.KeyFormatError(f"unreadable RSA private key: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise dkim.KeyFormatError("the private key is not an RSA key")
    return key


class OpenSslRsaDKIM(dkim.DKIM):
    """``dkim.DKIM`` whose rsa-sha256 signing runs the RSA operation in OpenSSL."""

    _rsa_key: rsa.RSAPrivateKey

    def sign_rsa(
        self, selector: bytes, domain: bytes, key: rsa.RSAPrivateKey, include_headers: list[bytes]
    ) -> bytes:
        """``dkim.DKIM.sign(selector, domain, pem, include_headers=...)`` for rsa-sha256 with
        the default identity, canonicalization and no ``l=``; returns the header line."""
        self.signature_algorithm = b"rsa-sha256"
        self.hasher = hashlib.sha256
        canon_policy = CanonicalizationPolicy.from_c_value(b"/".join(CANONICALIZE))
        include = tuple(name.lower() for name in include_headers)
        self.include_headers = include
        if b"from" not in include:
            raise dkim.ParameterError("The From header field MUST be signed")
        for name in set(include).intersection(self.should_not_sign):
            raise dkim.ParameterError(f"The {name!r} header field SHOULD NOT be signed")
        body = canon_policy.canonicalize_body(self.body)
        bodyhash = base64.b64encode(hashlib.sha256(body).digest())
        fields = [
            (b"v", b"1"),
            (b"a", b"rsa-sha256"),
            (b"c", canon_policy.to_c_value()),
            (b"d", domain),
            (b"i", b"@" + domain),
            (b"q", b"dns/txt"),
            (b"s", selector),
            (b"t", str(int(time.time())).encode("ascii")),
            (b"h", b" : ".join(include)),
            (b"bh", bodyhash),
            (b"b", b"0" * 60),  # dkimpy's placeholder: b= folds onto its own line
        ]
        self._rsa_key = key
        value = self.gen_header(fields, include, canon_policy, b"DKIM-Signature", None)
        self.domain = domain
        self.selector = selector
        self.signature_fields = dict(fields)
        return b"DKIM-Signature: " + value

    def gen_header(
        self,
        fields: list[tuple[bytes, bytes]],
        include_headers: tuple[bytes, ...],
        canon_policy: CanonicalizationPolicy,
        header_name: bytes,
        pk: object,
        standardize: bool = False,
    ) -> bytes:
        """dkimpy's gen_header (non-standardized form) with OpenSSL's RSA signature."""
        if standardize:
            return super().gen_header(
                fields, include_headers, canon_policy, header_name, pk, standardize
            )
        value = b"; ".join(b"=".join(field) for field in fields)
        value = dkim.fold(value, namelen=len(header_name), linesep=b"\r\n")
        value = dkim.RE_BTAG.sub(b"\\1", value)
        hasher = dkim.HashThrough(self.hasher(), self.debug_content)
        headers = self.headers
        if canon_policy.header_algorithm is Relaxed:
            # Only fields whose canonical name is signed can be selected: canonicalize
            # just those (same order, so hash_headers selects the same occurrences).
            wanted = set(include_headers)
            headers = [h for h in headers if h[0].lower().rstrip() in wanted]
        headers = canon_policy.canonicalize_headers(headers)
        self.signed_headers = dkim.hash_headers(
            hasher,
            canon_policy,
            headers,
            include_headers,
            (header_name, b" " + value),
            dict(fields),
        )
        signature = self._rsa_key.sign(
            hasher.digest(), padding.PKCS1v15(), Prehashed(hashes.SHA256())
        )
        index = next(i for i, field in enumerate(fields) if field[0] == b"b")
        fields[index] = (b"b", base64.b64encode(signature))
        value = b"; ".join(b"=".join(field) for field in fields) + self.linesep
        return dkim.fold(value, namelen=len(header_name), linesep=self.linesep)


def rsa_signature_header(
    data: bytes, selector: bytes, domain: bytes, pem: bytes, include_headers: list[bytes]
) -> bytes:
    """The DKIM-Signature header line (CRLF-terminated) for ``data``."""
    signer = OpenSslRsaDKIM(data, linesep=b"\r\n")
    return signer.sign_rsa(selector, domain, load_rsa_key(pem), include_headers)
