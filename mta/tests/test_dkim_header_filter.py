"""OpenSSL RSA DKIM canonicalizes only the header fields it can sign: the header must
stay byte for byte dkimpy's on messages full of unsigned, repeated, folded and oddly
named fields."""

from __future__ import annotations

import time

import dkim

from mta.dkim_openssl import rsa_signature_header
from mta.dkim_signing import SIGNED_HEADERS, generate_rsa_key

MESSAGES = [
    b"Received: from a by b; Mon, 1 Jan 2024\r\nReceived: from c\r\n\tby d\r\n"
    b"From: a@sender.example\r\nX-Mailer: x\r\nTo: b@example.org,\r\n c@example.org\r\n"
    b"Subject:  Your   receipt \r\nFrom: second@sender.example\r\n"
    b"Message-ID: <1@sender.example>\r\n\r\nThanks.\r\n",
    b"FROM: a@sender.example\r\nsubject: s\r\nDKIM-Signature: v=1; old\r\nTo:\todd@name\r\n"
    b"Content-Type: text/plain;\r\n charset=utf-8\r\nMIME-Version: 1.0\r\n\r\nbody\r\n\r\n",
]


def _both(data: bytes, include: list[bytes], pem: bytes) -> tuple[bytes, bytes]:
    for _ in range(5):  # both within one second, so t= is the same
        second = int(time.time())
        ours = rsa_signature_header(data, b"s1", b"sender.example", pem, include)
        theirs = dkim.sign(data, b"s1", b"sender.example", pem, include_headers=include)
        if int(time.time()) == second:
            break
    return ours, theirs


def test_header_identical_to_dkimpy_with_unsigned_and_repeated_fields() -> None:
    pem, txt = generate_rsa_key()
    record = txt.encode()
    for data in MESSAGES:
        includes = [
            [h for h in SIGNED_HEADERS if h in data.lower()],
            [b"from", b"from", b"to", b"subject"],
            [b"from"],
        ]
        for include in includes:
            ours, theirs = _both(data, include, pem)
            assert ours == theirs
            if data.lower().count(b"from:") == 1:  # dkimpy refuses to verify two From fields
                assert dkim.verify(ours + data, dnsfunc=lambda name, timeout=5: record)
