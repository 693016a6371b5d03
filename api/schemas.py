"""Request bodies of the sending API, validated by pydantic (422 with field paths)."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from email.utils import getaddresses
from functools import lru_cache
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    WithJsonSchema,
    field_validator,
)

_ADDR_SPEC = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$"
)
_HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")
_TAG = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
# Headers the platform owns; a client setting them would break threading or signing.
RESERVED_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "x-kibamail-message-id",  # the platform id header; it picks the team a bounce hits
        "reply-to",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "dkim-signature",
        "return-path",
    }
)


def no_line_breaks(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("must not contain CR or LF characters")
    return value


@lru_cache(maxsize=4096)
def _parsed_cached(value: str) -> tuple[tuple[str, str], ...]:
    return tuple(getaddresses([value]))


def parsed_addresses(value: str) -> tuple[tuple[str, str], ...]:
    """getaddresses() of one header value; a bare addr-spec (the common case) skips the
    stdlib parser, which costs ~0.1 ms per call on the send path."""
    stripped = value.strip()
    if _ADDR_SPEC.match(stripped):
        return (("", stripped),)
    return _parsed_cached(value)


def email_address(value: str) -> str:
    """'a@b.c' or 'Name <a@b.c>', one address, no header injection."""
    no_line_breaks(value)
    parsed = parsed_addresses(value)
    if len(parsed) != 1 or not _ADDR_SPEC.match(parsed[0][1]) or "." not in parsed[0][1]:
        raise ValueError(f"not a valid email address: {value!r}")
    return value.strip()


SafeLine = Annotated[
    str, AfterValidator(no_line_breaks), Field(json_schema_extra={"pattern": r"^[^\r\n]*$"})
]
Tag = Annotated[str, Field(json_schema_extra={"pattern": _TAG.pattern})]
EmailAddress = Annotated[
    str,
    AfterValidator(email_address),
    WithJsonSchema(
        {
            "type": "string",
            "format": "email",
            "maxLength": 320,
            "description": "`a@example.com`, or `Name <a@example.com>`",
        }
    ),
]


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class AttachmentIn(BaseModel):
    filename: SafeLine = Field(min_length=1, max_length=255)
    content: str = Field(description="base64-encoded bytes")
    content_type: SafeLine = Field(
        default="application/octet-stream", pattern=r"^[\w.+-]+/[\w.+-]+$"
    )

    def decoded(self) -> bytes:
        try:
            return base64.b64decode(self.content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("attachment content is not valid base64") from exc

    @field_validator("content")
    @classmethod
    def _base64(cls, value: str) -> str:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("not valid base64") from exc
        return value


class EmailIn(BaseModel):
    """One transactional email (Resend/Postmark-like field names)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    from_: EmailAddress = Field(alias="from")
    to: Annotated[list[EmailAddress], Field(min_length=1, max_length=50)]
    cc: Annotated[list[EmailAddress], Field(max_length=50)] = []
    bcc: Annotated[list[EmailAddress], Field(max_length=50)] = []
    reply_to: Annotated[list[EmailAddress], Field(max_length=10)] = []
    subject: SafeLine | None = Field(default=None, max_length=998)
    html: str | None = None
    text: str | None = None
    headers: dict[str, SafeLine] = Field(default_factory=dict, max_length=50)
    attachments: Annotated[list[AttachmentIn], Field(max_length=20)] = []
    tags: Annotated[list[Tag], Field(max_length=10)] = []
    metadata: dict[str, SafeLine] = Field(default_factory=dict, max_length=20)
    template_id: str | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    send_at: datetime | None = None
    track_opens: StrictBool = True
    track_clicks: StrictBool = True

    _lists = field_validator("to", "cc", "bcc", "reply_to", mode="before")(_as_list)

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _HEADER_NAME.match(name):
                raise ValueError(f"invalid header name {name!r}")
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set by Kibamail and cannot be overridden")
        return value

    @field_validator("tags")
    @classmethod
    def _tag_format(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not _TAG.match(tag):
                raise ValueError(f"tag {tag!r} must match [A-Za-z0-9_-]{{1,256}}")
        return value

    def recipients(self) -> list[str]:
        return [
            addr for value in (*self.to, *self.cc, *self.bcc) for _, addr in parsed_addresses(value)
        ]


class BatchIn(BaseModel):
    emails: Annotated[list[EmailIn], Field(min_length=1, max_length=100)]


def iso_utc(value: datetime | None) -> str | None:
    """ISO-8601 in UTC with a `Z` (the API's one timestamp format). The database stores
    naive UTC datetimes; aware ones are converted."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat() + "Z"
