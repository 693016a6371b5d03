"""United Internet's mail platforms (GMX, web.de, 1&1/IONOS): Exim's wording, own layout.

The address stands alone on its line (``"a@b":``, ``<a@b>`` or bare) and the reason
follows unindented, often after "Reason:" or "For the following reason:"; the original's
headers come after "--- The header of the original message is following. ---".
"""

from __future__ import annotations

import re

from ..mail import Mail
from ..model import Reason
from .base import Failure
from .text_helpers import body_lines, cut, failure, hint, unique

_OPENING = re.compile(r"This message was created automatically by mail delivery software", re.I)
_BACKBONE = re.compile(r"^-+ ?The header of the original message is following", re.I)
_ENTRY = re.compile(
    r"^(?:\"([^\s\"]+@[^\s\"]+)\":?|<([^\s<>]+@[^\s<>]+)>:?|([^\s<>\"]+@[^\s<>\"]+?):?)$"
)
_PREFIX = re.compile(r"^(?:For the following reason:|Reason:)\s*", re.I)
_HINTS = (
    (re.compile(r"retry timeout exceeded", re.I), Reason.EXPIRED),
    (re.compile(r"Mail size limit exceeded", re.I), Reason.MESSAGE_TOO_BIG),
    (re.compile(r"mailbox is full|quota exceeded", re.I), Reason.MAILBOX_FULL),
    (re.compile(r"Unrouteable address|Host or domain name not found", re.I), Reason.HOST_UNKNOWN),
)


def _is_united_internet(mail: Mail, lines: list[str]) -> bool:
    if mail.header("X-GMX-Antispam") or mail.header("X-UI-Out-Filterresults"):
        return True
    sender = mail.sender.lower()
    if re.search(
        r"@(?:[\w-]+\.)*(?:gmx\.(?:net|de|com|at|ch)|web\.de|1und1\.de|1and1\.\w+|ionos\.\w+|kundenserver\.de)\b",
        sender,
    ):
        return True
    return any(_BACKBONE.search(line) for line in lines)


class _Gmx:
    name = "gmx"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        lines = body_lines(mail)
        start = next((i for i, line in enumerate(lines[:60]) if _OPENING.search(line)), None)
        if start is None or not _is_united_internet(mail, lines):
            return None
        section = cut(lines[start + 1 :], _BACKBONE)
        entries: list[tuple[str, list[str]]] = []
        for line in section:
            text = line.strip()
            match = _ENTRY.match(text)
            if match:
                address = next(g for g in match.groups() if g)
                entries.append((address, []))
            elif entries and text:
                cleaned = _PREFIX.sub("", text)
                if cleaned:
                    entries[-1][1].append(cleaned)
        found = []
        for address, texts in entries:
            text = " ".join(texts)
            found.append(failure(address, text, reason_hint=hint(text, _HINTS)))
        return unique(found)


GMX = _Gmx()
