"""The hot-path shortcuts give exactly what the slow paths they replace give.

Each shortcut (address parsing, Subject extraction, the bounded word scan, bare CR/LF
detection, OpenSSL RSA for DKIM) is compared with the library path it skips, on tables
of edge cases and on seeded random inputs; single-flight lookups are exercised for real
(STARTTLS on uvloop: test_submission.py).
"""

from __future__ import annotations

import asyncio
import random
import re
import string
import time
from email.parser import BytesHeaderParser
from email.policy import default as default_policy

import dkim
import pytest
from aiosmtpd.smtp import SMTP

from mta.coalesce import SingleFlight
from mta.dkim_openssl import rsa_signature_header
from mta.dkim_signing import SIGNED_HEADERS, generate_rsa_key
from mta.features import first_words, plain_header_facts, submission_features
from mta.server import check_message
from mta.smtp_session import simple_path

pytestmark = pytest.mark.unit

_WORD = re.compile(rb"\w+")


class _Parser(SMTP):
    """aiosmtpd's own address parsing, without a connection."""

    def __init__(self) -> None:
        self.local_part_limit = 0


def test_simple_path_matches_aiosmtpd_address_parsing() -> None:
    parser = _Parser()
    cases = [
        "<a@b.c>",
        "<a@b.c> SIZE=100",
        "<a@b.c>  BODY=8BITMIME SMTPUTF8",
        "<a.b+tag@mail.example.org>",
        "<a@b.c>\tSIZE=1",
    ]
    refused = ["<>", "<a..b@c>", "<.a@c>", '<"q r"@b>', "<a@[1.2.3.4]>", "<a@b.c>(x)", "a@b.c"]
    for arg in cases:
        assert simple_path(arg) == parser._getaddr(arg)
    for arg in refused:
        assert simple_path(arg) is None  # left to aiosmtpd
    rng = random.Random(11)
    atext = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
    checked = 0
    for _ in range(3000):
        local = ".".join(
            "".join(rng.choice(atext) for _ in range(rng.randint(0, 4)))
            for _ in range(rng.randint(1, 3))
        )
        domain = ".".join(
            "".join(rng.choice("ab9-") for _ in range(rng.randint(0, 4)))
            for _ in range(rng.randint(1, 3))
        )
        rest = rng.choice(["", " X=1", "  A B", "\tX", " (c) X", "x", " "])
        arg = f"<{rng.choice(['', '.'])}{local}@{domain}>{rest}"
        found = simple_path(arg)
        if found is not None:
            checked += 1
            assert found == parser._getaddr(arg), arg
    assert checked > 300


def _parsed(head: bytes) -> tuple[str, bool]:
    headers = BytesHeaderParser(policy=default_policy).parsebytes(head + b"\r\n\r\n")
    return str(headers.get("subject", "")), "list-unsubscribe" in headers


def test_plain_header_facts_match_the_email_parser() -> None:
    table = [
        b"From: a@b\r\nSubject: hi there  ",
        b"From: a@b\r\nSubject:   spaced\r\nList-Unsubscribe: <mailto:u@b>",
        b"Subject: folded\r\n  line two\r\nSubject: second",
        b"SUBJECT: upper\r\nlist-unsubscribe: x",
        b"From: a@b",
    ]
    for head in table:
        assert plain_header_facts(head) == _parsed(head)
    # Encoded words, 8-bit bytes and odd lines go to the real parser.
    for head in (b"Subject: =?utf-8?q?caf=C3=A9?=", b"Subject: caf\xc3\xa9", b"From x@y Tue"):
        assert plain_header_facts(head) is None
    rng = random.Random(5)
    alphabet = string.printable.strip("\r\n\x0b\x0c") + "=?"
    names = ["Subject", "subject", "List-Unsubscribe", "X-A", "From", "", "a:b"]
    checked = 0
    for _ in range(3000):
        lines = []
        for index in range(rng.randint(1, 5)):
            value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20)))
            if index and rng.random() < 0.2:
                lines.append(rng.choice([" ", "\t"]) + value)
            else:
                lines.append(f"{rng.choice(names)}:{rng.choice(['', ' ', '  '])}{value}")
        head = "\r\n".join(lines).encode()
        facts = plain_header_facts(head)
        if facts is not None:
            checked += 1
            assert facts == _parsed(head), head
    assert checked > 1000


def test_bounded_word_scan_equals_a_full_scan() -> None:
    rng = random.Random(3)
    words = [b"Alpha", b"beta", b"GAMMA_1", b"d\xc3\xa9lta", b"e-f", b"x" * 50]
    for size in (0, 10, 8000, 8191, 8192, 8193, 9000, 40_000):
        body = b" ".join(rng.choice(words) for _ in range(size // 5))[:size]
        for count in (3, 400):
            assert first_words(body, count) == _WORD.findall(body.lower())[:count]


def test_bare_cr_lf_detection_matches_the_regex_it_replaced() -> None:
    bare = re.compile(rb"(?<!\r)\n|\r(?!\n)")
    rng = random.Random(9)
    bad = "550 5.6.0 Bare LF or CR in message; lines must end with CRLF"
    for _ in range(3000):
        data = bytes(rng.choice(b"ab\r\n") for _ in range(rng.randint(0, 12)))
        message = b"From: a@b\r\n\r\n" + data
        assert (check_message(message) == bad) == bool(bare.search(message)), data


def test_openssl_rsa_dkim_header_is_byte_identical_to_dkimpy() -> None:
    pem, txt = generate_rsa_key()
    data = (
        b"From: a@sender.example\r\nTo: b@example.org\r\nSubject: Receipt\r\n"
        b"Message-ID: <1@sender.example>\r\n\r\nThanks for your order.\r\n"
    )
    include = [h for h in SIGNED_HEADERS if h in data.lower()]
    for _ in range(5):  # both within one second, so t= is the same
        second = int(time.time())
        ours = rsa_signature_header(data, b"s1", b"sender.example", pem, include)
        theirs = dkim.sign(data, b"s1", b"sender.example", pem, include_headers=include)
        if int(time.time()) == second:
            break
    assert ours == theirs
    record = txt.encode()
    assert dkim.verify(ours + data, dnsfunc=lambda name, timeout=5: record)
    assert not dkim.verify(ours + data.replace(b"Thanks", b"Thank"), dnsfunc=lambda n, **_: record)


def test_single_flight_shares_one_call_its_result_and_its_error() -> None:
    async def scenario() -> None:
        flight = SingleFlight()
        calls = 0

        async def lookup() -> str:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)
            return "answer"

        results = await asyncio.gather(*(flight.run("k", lookup) for _ in range(50)))
        assert results == ["answer"] * 50 and calls == 1
        assert await flight.run("k", lookup) == "answer" and calls == 2  # not cached

        async def broken() -> str:
            await asyncio.sleep(0.01)
            raise LookupError("dns down")

        outcomes = await asyncio.gather(
            *(flight.run("b", broken) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(o, LookupError) for o in outcomes)

        # One waiter cancelled: the others still get the answer.
        first = asyncio.create_task(flight.run("c", lookup))
        second = asyncio.create_task(flight.run("c", lookup))
        await asyncio.sleep(0.01)
        first.cancel()
        assert await second == "answer"

    asyncio.run(scenario())


def test_marketing_markers_stay_case_insensitive() -> None:
    body = (
        b"<IMG src='p.gif' WIDTH=1 >View This Email In Your Browser. Big SALE: 20 % OFF!"
        b" UnSubscribe here."
    )
    data = b"From: a@b\r\nSubject: s\r\n\r\n" + body
    found = submission_features("t", "m@x", ["r@example.org"], data).marketing_markers
    assert found == ["unsubscribe_link", "view_in_browser", "tracking_pixel", "promo_words"]
    plain = submission_features("t", "m@x", ["r@example.org"], b"Subject: s\r\n\r\nsalesman")
    assert plain.marketing_markers == []
