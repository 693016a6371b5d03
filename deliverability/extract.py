"""Unwrap containers (email, zip, gzip) into report payloads, in bounded memory and time.

Reporters send XML or JSON bare, gzipped, zipped, or attached to an email. Every
decompression here reads at most ``MAX_PAYLOAD_BYTES`` per payload and
``MAX_TOTAL_BYTES`` per input, so a zip or gzip bomb costs a few milliseconds and
a bounded buffer, never the machine.
"""

from __future__ import annotations

import email
import email.policy
import io
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from deliverability.models import ReportError

MAX_INPUT_BYTES = 64 * 1024 * 1024
MAX_PAYLOAD_BYTES = 32 * 1024 * 1024
MAX_TOTAL_BYTES = 64 * 1024 * 1024
MAX_ZIP_MEMBERS = 32
MAX_DEPTH = 4

MAGIC_ZIP = b"PK\x03\x04"
MAGIC_GZIP = b"\x1f\x8b"
_HEADER_LINE = re.compile(rb"^[A-Za-z0-9-]{1,76}:")
_BOM = b"\xef\xbb\xbf"
# UTF-32 first: its little-endian BOM begins with UTF-16 LE's.
_WIDE_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)
_DECLARED_ENCODING = re.compile(r"^(\s*<\?xml\b[^>]*?)\s+encoding\s*=\s*([\"'])[^\"']*\2")


@dataclass(slots=True)
class Payload:
    """A leaf the format parsers understand: ``kind`` is xml, json or email."""

    name: str
    kind: str
    data: bytes


class _Budget:
    """Decompressed bytes left for one input across all of its nested parts."""

    def __init__(self) -> None:
        self.left = MAX_TOTAL_BYTES

    def take(self, n: int, name: str) -> None:
        self.left -= n
        if self.left < 0:
            raise ReportError(
                f"{name}: decompressed content exceeds {MAX_TOTAL_BYTES} bytes (bomb?)"
            )


def wide_encoding(data: bytes) -> tuple[str, int] | None:
    """(codec, BOM length) when ``data`` is UTF-16/32 text: by its BOM, or without one by
    the zero bytes around the first ASCII characters (XML 1.0 appendix F)."""
    for bom, codec in _WIDE_BOMS:
        if data.startswith(bom):
            return codec, len(bom)
    head = data[:4]
    if len(head) < 4:
        return None
    if head[0] and head[1:] == b"\0\0\0":
        return "utf-32-le", 0
    if head[:3] == b"\0\0\0" and head[3]:
        return "utf-32-be", 0
    if head[0] and not head[1] and head[2] and not head[3]:
        return "utf-16-le", 0
    if not head[0] and head[1] and not head[2] and head[3]:
        return "utf-16-be", 0
    return None


def to_utf8(data: bytes) -> bytes:
    """UTF-16/32 text (with or without BOM) as UTF-8, its XML declaration's encoding
    dropped so parsers do not re-decode it; a UTF-8 BOM is removed; anything else is
    returned as it is (declared 8-bit encodings are the XML parser's job)."""
    found = wide_encoding(data)
    if found is None:
        return data.removeprefix(_BOM)
    codec, bom_length = found
    body = data[bom_length:]
    if codec.startswith("utf-16") and len(body) % 2:
        body = body[:-1]  # a truncated final code unit; the parser reports what is missing
    text = body.decode(codec, errors="replace")
    return _DECLARED_ENCODING.sub(r"\1", text, count=1).encode("utf-8")


def sniff(data: bytes) -> str:
    """Name the container or format of ``data`` from its first bytes."""
    head = data[:8]
    if head.startswith(MAGIC_ZIP):
        return "zip"
    if head.startswith(MAGIC_GZIP):
        return "gzip"
    if wide_encoding(data) is not None:
        data = to_utf8(data[:1024])
    stripped = data[:512].lstrip(b" \t\r\n").removeprefix(_BOM).lstrip()
    if stripped.startswith(b"<"):
        return "xml"
    if stripped.startswith((b"{", b"[")):
        return "json"
    if _HEADER_LINE.match(stripped):
        return "email"
    return "unknown"


def gunzip_bounded(data: bytes, name: str) -> bytes:
    """Inflate a gzip stream, refusing more than ``MAX_PAYLOAD_BYTES`` or a truncated one."""
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    try:
        out = inflater.decompress(data, MAX_PAYLOAD_BYTES + 1)
    except zlib.error as exc:
        raise ReportError(f"{name}: corrupt gzip data ({exc})") from exc
    if len(out) > MAX_PAYLOAD_BYTES:
        raise ReportError(
            f"{name}: gzip expands beyond {MAX_PAYLOAD_BYTES} bytes (decompression bomb)"
        )
    if not inflater.eof:
        raise ReportError(f"{name}: truncated gzip stream")
    return out


def unzip_bounded(data: bytes, name: str, budget: _Budget) -> Iterator[tuple[str, bytes]]:
    """Yield each member's bytes, bounded by size, count and declared-vs-real length."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [m for m in archive.infolist() if not m.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise ReportError(f"{name}: not a readable zip archive ({exc})") from exc
    if not members:
        raise ReportError(f"{name}: zip archive is empty")
    if len(members) > MAX_ZIP_MEMBERS:
        raise ReportError(f"{name}: zip archive has {len(members)} members (max {MAX_ZIP_MEMBERS})")
    for member in members:
        label = f"{name}/{member.filename}"
        if member.file_size > MAX_PAYLOAD_BYTES:
            raise ReportError(
                f"{label}: declares {member.file_size} bytes uncompressed (decompression bomb)"
            )
        try:
            with archive.open(member) as handle:
                content = handle.read(MAX_PAYLOAD_BYTES + 1)
        except (zipfile.BadZipFile, zlib.error, OSError, RuntimeError, EOFError) as exc:
            raise ReportError(f"{label}: unreadable zip member ({exc})") from exc
        if len(content) > MAX_PAYLOAD_BYTES:
            raise ReportError(f"{label}: expands beyond {MAX_PAYLOAD_BYTES} bytes (bomb)")
        budget.take(len(content), label)
        yield label, content


def _email_parts(data: bytes, name: str) -> Iterator[tuple[str, bytes, str]]:
    """Yield (label, decoded bytes, content type) of each leaf part of a MIME message."""
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    for index, part in enumerate(message.walk()):
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        filename = part.get_filename() or f"part{index}"
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes) and payload:
            yield f"{name}#{filename}", payload, ctype


def unwrap(data: bytes, name: str, budget: _Budget | None = None, depth: int = 0) -> list[Payload]:
    """Expand ``data`` into report payloads; raises ReportError naming what is wrong."""
    budget = budget or _Budget()
    if depth > MAX_DEPTH:
        raise ReportError(f"{name}: containers nested deeper than {MAX_DEPTH} levels")
    if len(data) > MAX_INPUT_BYTES:
        raise ReportError(f"{name}: input larger than {MAX_INPUT_BYTES} bytes")
    if not data.strip():
        raise ReportError(f"{name}: empty file")
    kind = sniff(data)
    if kind in ("xml", "json"):
        return [Payload(name, kind, to_utf8(data))]
    if kind == "gzip":
        inflated = gunzip_bounded(data, name)
        budget.take(len(inflated), name)
        return unwrap(inflated, name.removesuffix(".gz"), budget, depth + 1)
    if kind == "zip":
        found: list[Payload] = []
        for label, content in unzip_bounded(data, name, budget):
            found.extend(unwrap(content, label, budget, depth + 1))
        return found
    if kind == "email":
        return [Payload(name, "email", data)]
    raise ReportError(f"{name}: not a report (neither XML, JSON, gzip, zip nor an email)")


_REPORT_SUFFIXES = (".xml", ".gz", ".zip", ".json")
_REPORT_TYPES = ("zip", "gzip", "xml", "tlsrpt", "json")


def _looks_like_report(label: str, ctype: str) -> bool:
    """An attachment that claims to be a report (so failing to read it is an error)."""
    return label.lower().endswith(_REPORT_SUFFIXES) or any(t in ctype for t in _REPORT_TYPES)


def email_attachments(data: bytes, name: str, depth: int = 0) -> tuple[list[Payload], list[str]]:
    """Report payloads attached to an email, and the reasons any attachment was unusable.

    Each attachment is unwrapped on its own: a corrupt zip next to a good gzip
    still yields the gzip's report.
    """
    budget = _Budget()
    found: list[Payload] = []
    errors: list[str] = []
    for label, content, ctype in _email_parts(data, name):
        kind = sniff(content)
        if kind == "email" or (kind == "unknown" and not _looks_like_report(label, ctype)):
            continue
        if kind == "xml" and ctype.startswith("text/html"):
            continue
        if kind == "json" and not ctype.startswith(("application/", "text/json")):
            continue
        try:
            found.extend(unwrap(content, label, budget, depth + 1))
        except ReportError as exc:
            errors.append(str(exc))
    return found, errors
