"""Turn a send request into RFC 5322 bytes (stdlib `email`), with tracking inserted.

Links are rewritten to `/t/c/{token}` where the token carries the original URL under
an HMAC, so the redirect can only ever go where the sender's HTML pointed.
"""

from __future__ import annotations

import html as html_lib
import re
import uuid
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, getaddresses, parseaddr

from api.security import Signer
from pipelines.contracts import utcnow

OPEN_PURPOSE = "track-open"
CLICK_PURPOSE = "track-click"
UNSUBSCRIBE_PURPOSE = "unsubscribe"

_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(https?://[^"']+)\2""", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def new_message_id(domain: str) -> str:
    """Message-ID without angle brackets: the key of OutboundMessage and MessageMapping."""
    return f"{uuid.uuid4()}@{domain.lower()}"


def address_domain(address: str) -> str:
    return parseaddr(address)[1].rpartition("@")[2].lower()


def addr_spec(address: str) -> str:
    return parseaddr(address)[1]


@dataclass
class Attachment:
    filename: str
    content: bytes
    content_type: str = "application/octet-stream"


@dataclass
class Draft:
    """Everything needed to render one message."""

    message_id: str
    from_address: str
    to: list[str]
    subject: str
    html: str | None = None
    text: str | None = None
    cc: list[str] = field(default_factory=list)
    reply_to: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)


def tracked_html(
    body: str,
    *,
    signer: Signer,
    public_url: str,
    message_id: str,
    team_id: str,
    track_opens: bool = True,
    track_clicks: bool = True,
) -> str:
    """Rewrite http(s) links to signed click redirects and append the open pixel."""
    base = public_url.rstrip("/")
    if track_clicks:
        counter = iter(range(1_000_000))

        def rewrite(match: re.Match[str]) -> str:
            url = html_lib.unescape(match.group(3))
            token = signer.dumps(CLICK_PURPOSE, [message_id, team_id, url, next(counter)])
            quote = match.group(2)
            return f"{match.group(1)}{quote}{base}/t/c/{token}{quote}"

        body = _HREF.sub(rewrite, body)
    if track_opens:
        token = signer.dumps(OPEN_PURPOSE, [message_id, team_id])
        pixel = (
            f'<img src="{base}/t/o/{token}" width="1" height="1" alt="" '
            'style="display:none;border:0" />'
        )
        body, count = _BODY_END.subn(pixel + "</body>", body, count=1)
        if count == 0:
            body += pixel
    return body


def _address_header(values: list[str]) -> str:
    parts = []
    for name, addr in getaddresses(values):
        local, _, domain = addr.rpartition("@")
        parts.append(str(Address(display_name=name, username=local, domain=domain)))
    return ", ".join(parts)


def render(draft: Draft) -> bytes:
    """RFC 5322 bytes with CRLF line endings, ready for DKIM signing by the MTA."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = _address_header([draft.from_address])
    msg["To"] = _address_header(draft.to)
    if draft.cc:
        msg["Cc"] = _address_header(draft.cc)
    if draft.reply_to:
        msg["Reply-To"] = _address_header(draft.reply_to)
    msg["Subject"] = draft.subject
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = f"<{draft.message_id}>"
    for name, value in draft.headers.items():
        msg[name] = value
    text = draft.text if draft.text is not None else ""
    if draft.html is not None:
        msg.set_content(text or " ", subtype="plain", cte="quoted-printable")
        msg.add_alternative(draft.html, subtype="html", cte="quoted-printable")
    else:
        msg.set_content(text, subtype="plain", cte="quoted-printable")
    for attachment in draft.attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        msg.add_attachment(
            attachment.content,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=attachment.filename,
        )
    return msg.as_bytes()
