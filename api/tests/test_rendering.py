"""The hand-written MIME body (no attachments) against the stdlib generator it replaces:
same parts, charsets, transfer encodings and decoded content, CRLF only, no defects."""

from __future__ import annotations

import email
from email import policy

import pytest

from api.services import rendering
from api.services.rendering import Draft, render, render_mime

pytestmark = pytest.mark.unit

CASES = [
    ("plain\nsecond line\n", "<p>x</p>"),
    ("héllo\r\nwörld", "<p>über</p>\n"),
    ("only text", None),
    ("", "<b>html only</b>"),
    ("x" * 1200, None),  # a line over 998 octets: base64
    ("lone\rcarriage\n\n", "trailing\n\n"),
    ("--=_km_looks-like-a-boundary", "<p>--=_km_</p>"),
]


def _parts(data: bytes) -> list[tuple[str, str | None, str | None, str]]:
    parsed = email.message_from_bytes(data, policy=policy.default)
    assert all(not part.defects for part in parsed.walk())
    leaves = list(parsed.iter_parts()) if parsed.is_multipart() else [parsed]
    return [
        (
            p.get_content_type(),
            p.get_content_charset(),
            p["Content-Transfer-Encoding"],
            p.get_content(),
        )
        for p in leaves
    ]


@pytest.mark.parametrize(("text", "html"), CASES)
def test_fast_body_matches_the_stdlib_generator(text: str, html: str | None) -> None:
    draft = Draft(
        message_id="m@example.org",
        from_address="Ann <ann@example.org>",
        to=["bob@example.net"],
        subject="Hello",
        text=text,
        html=html,
    )
    fast = render(draft)
    assert b"\n" not in fast.replace(b"\r\n", b""), "bare LF in the message"
    assert _parts(fast) == _parts(render_mime(draft))
    assert max(len(line) for line in fast.split(b"\r\n")) <= 998


def test_attachments_still_use_the_stdlib_generator() -> None:
    draft = Draft(
        message_id="m@example.org",
        from_address="ann@example.org",
        to=["bob@example.net"],
        subject="File",
        text="see attached",
        attachments=[rendering.Attachment("a.bin", b"\x00\x01", "application/octet-stream")],
    )
    parsed = email.message_from_bytes(render(draft), policy=policy.default)
    assert parsed.get_content_type() == "multipart/mixed"
    [attachment] = list(parsed.iter_attachments())
    assert attachment.get_content() == b"\x00\x01"
