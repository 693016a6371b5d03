"""The simhash (hashing each distinct shingle once, weighted by its count) equals the
plain definition: every shingle's 64-bit blake2b votes on every bit; the marketing
markers' substring pre-filter finds what the patterns alone find."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from mta.features import _MARKERS, first_words, marketing_markers, simhash


def reference(data: bytes, max_words: int = 400) -> int:
    words = first_words(data, max_words)
    shingles = (
        [b" ".join(words)]
        if len(words) < 3
        else [b" ".join(words[i : i + 3]) for i in range(len(words) - 2)]
    )
    value = 0
    for bit in range(64):
        ones = sum(
            (int.from_bytes(hashlib.blake2b(s, digest_size=8).digest(), "big") >> (63 - bit)) & 1
            for s in shingles
        )
        if ones * 2 > len(shingles):
            value |= 1 << (63 - bit)
    return value - (1 << 64) if value >= 1 << 63 else value


WORDS = ["order", "receipt", "your", "total", "42", "caf\u00e9", "x", "", "Thanks!"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=500), st.sampled_from([" ", "\r\n", ", "]))
def test_same_value_as_every_shingle_voting(words: list[str], separator: str) -> None:
    data = separator.join(words).encode()
    assert simhash(data) == reference(data)


def test_repeated_lines_and_tiny_inputs() -> None:
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n"
    for data in (b"", b"one", b"one two", b"a b c", line * 40, line * 40 + b"tail words here"):
        assert simhash(data) == reference(data)


MARKER_BITS = [
    "unsubscribe",
    "view in your browser",
    "view this email in browser",
    "<img ",
    "width=1 ",
    "height='1'",
    ">",
    "sale",
    "wholesale",
    "sales",
    "% off",
    "limited time",
    "newsletter",
    "discount",
    "lorem",
    " ",
    "\r\n",
    "browser",
    "view",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(MARKER_BITS), max_size=40))
def test_marker_prefilter_finds_what_the_patterns_find(parts: list[str]) -> None:
    lowered = "".join(parts).encode()
    expected = [name for name, rx in _MARKERS.items() if rx.search(lowered)]
    assert marketing_markers(lowered) == expected
