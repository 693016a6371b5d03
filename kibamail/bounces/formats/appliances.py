"""Mail gateways and servers with short, fixed-phrase reports.

MailFoundry, Ipswitch IMail, Trend Micro InterScan MSS, the McAfee email appliance,
Digital Arts m-FILTER and Oracle (Sun) Messaging Server: each is told apart by a header
or subject of its own and writes the address and the reason on fixed lines.
"""

from __future__ import annotations

import re

from ..mail import Mail
from ..model import Reason
from .base import Failure
from .text_helpers import ADDRESS, body_lines, failure, hint, merge_status, received, unique


class _MailFoundry:
    name = "mailfoundry"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        if mail.subject != "Message delivery has failed" and not any(
            "(MAILFOUNDRY)" in r for r in received(mail)
        ):
            return None
        entries: list[tuple[str, list[str]]] = []
        for line in body_lines(mail):
            match = re.match(
                r"^Unable to deliver message to:\s*<?([^\s<>]+@[^\s<>]+)>?", line.strip()
            )
            if match:
                entries.append((match.group(1), []))
            elif entries and line.strip() and not line.startswith("-"):
                if line.strip().startswith("Delivery failed for the following reason"):
                    continue
                entries[-1][1].append(line.strip())
        if not entries:
            return None
        return unique([failure(a, " ".join(t)) for a, t in entries])


_IMAIL_HINTS = (
    (re.compile(r"Unknown host", re.I), Reason.HOST_UNKNOWN),
    (re.compile(r"^(?:Unknown user|Invalid final delivery userid)", re.I), Reason.USER_UNKNOWN),
    (re.compile(r"^User mailbox exceeds allowed size", re.I), Reason.MAILBOX_FULL),
    (re.compile(r"virus detected", re.I), Reason.VIRUS_DETECTED),
    (re.compile(r"^Delivery failed \d+ attempts", re.I), Reason.EXPIRED),
)


class _IMail:
    name = "imail"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        marked = re.match(r"^Undeliverable Mail\s*$", mail.subject) or mail.header(
            "X-Mailer"
        ).startswith("<SMTP32 v")
        if not marked:
            return None
        found: list[Failure] = []
        extra: list[str] = []
        for line in body_lines(mail):
            stripped = line.strip()
            if re.match(r"^Original message follows", stripped, re.I):
                break
            match = re.match(r"^(\S+ .+?):\s*<?([^\s<>]+@[^\s<>]+?)>?$", stripped)
            undeliverable = re.match(
                r"^undeliverable to\s+<?([^\s<>]+@[^\s<>]+?)>?$", stripped, re.I
            )
            if match:
                found.append(
                    failure(
                        match.group(2),
                        match.group(1),
                        reason_hint=hint(match.group(1), _IMAIL_HINTS),
                    )
                )
            elif undeliverable:
                found.append(failure(undeliverable.group(1), ""))
            elif stripped:
                extra.append(stripped)
        for item in found:
            if not item.diagnostic or "response" in " ".join(extra).lower():
                text = " ".join([item.diagnostic, *extra]).strip()
                replaced = failure(
                    item.recipient, text, reason_hint=item.reason_hint or hint(text, _IMAIL_HINTS)
                )
                item.diagnostic, item.smtp_code, item.status = (
                    replaced.diagnostic,
                    replaced.smtp_code,
                    replaced.status,
                )
                item.reason_hint = replaced.reason_hint
        return unique(found) if found else None


class _InterScan:
    name = "interscan"
    _SUBJECTS = (
        "Mail could not be delivered",
        "メッセージを配信できません。",
        "メール配信に失敗しました",
    )

    def __call__(self, mail: Mail) -> list[Failure] | None:
        if not (
            mail.sender.startswith('"InterScan MSS"')
            or mail.sender.startswith("InterScan MSS")
            or mail.subject in self._SUBJECTS
        ):
            return None
        replies: dict[str, str] = {}
        order: list[str] = []
        current = ""
        for line in body_lines(mail):
            stripped = line.strip()
            sent = re.search(r"<<<\s*RCPT TO:\s*<([^\s<>]+@[^\s<>]+)>", stripped, re.I)
            if sent:
                current = sent.group(1)
                if current not in order:
                    order.append(current)
                continue
            got = re.search(r">>>\s*([245]\d\d[ -].+)$", stripped)
            if got and current:
                replies[current] = got.group(1)
        if not order:
            return None
        return unique([failure(a, replies.get(a, "")) for a in order])


class _McAfee:
    name = "mcafee"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        if not mail.header("X-NAI-Header").startswith("Modified by McAfee"):
            return None
        found: list[Failure] = []
        for line in body_lines(mail):
            match = re.match(r"^<([^\s<>]+@[^\s<>]+)>\s+\((.+)\)\s*$", line.strip())
            if match:
                text = match.group(2)
                reason = (
                    Reason.USER_UNKNOWN
                    if re.search(
                        r"User \(.+@.+\) unknown|Unknown user|User not exist|No such user",
                        text,
                        re.I,
                    )
                    else None
                )
                found.append(failure(match.group(1), text, reason_hint=reason))
        return unique(merge_status(found, mail))


class _MFilter:
    name = "mfilter"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        if mail.header("X-Mailer").strip() != "m-FILTER":
            return None
        addresses: list[str] = []
        error = ""
        state = ""
        for line in body_lines(mail):
            stripped = line.strip()
            if stripped.startswith("-------original"):
                break
            if stripped == "-------server message":
                state = "error"
            elif stripped == "-------SMTP command":
                state = "command"
            elif ADDRESS.fullmatch(stripped):
                addresses.append(stripped)
            elif stripped and state == "error" and not error:
                error = stripped
        return unique([failure(a, error) for a in addresses])


class _MessagingServer:
    name = "messagingserver"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        content_type = mail.message.get("Content-Type", "")
        if "Boundary_(ID_" not in str(content_type) and not mail.subject.startswith(
            "Delivery Notification: "
        ):
            return None
        found: list[Failure] = []
        current: dict[str, str] = {}

        def flush() -> None:
            if current.get("rcpt"):
                text = current.get("code") or current.get("reason", "")
                found.append(failure(current["rcpt"], text, remote=current.get("remote", "")))
            current.clear()

        for line in body_lines(mail):
            stripped = line.strip()
            key, _, value = stripped.partition(":")
            key = key.lower()
            if key in ("recipient address", "original address") and ADDRESS.search(value):
                if current.get("rcpt") and key == "recipient address":
                    flush()
                current.setdefault("rcpt", ADDRESS.findall(value)[-1])
            elif key == "reason" and current.get("rcpt"):
                current["reason"] = value.strip()
            elif key == "diagnostic code" and current.get("rcpt"):
                current["code"] = value.split(";", 1)[-1].strip()
            elif key == "remote system" and current.get("rcpt"):
                current["remote"] = value.split(";", 1)[-1].split("(")[0].strip()
        flush()
        return (
            unique(merge_status(found, mail))
            if found or "Boundary_(ID_" in str(content_type)
            else None
        )


MAILFOUNDRY = _MailFoundry()
IMAIL = _IMail()
INTERSCAN = _InterScan()
MCAFEE = _McAfee()
MFILTER = _MFilter()
MESSAGING_SERVER = _MessagingServer()
