"""Mobile carriers and Japanese ISPs: au by KDDI, au EZweb, Verizon Wireless, BIGLOBE.

Their reports are short, fixed English sentences, often sent as iso-2022-jp with
Japanese text around them: KDDI's "Your mail sent on: ..." / "Could not be delivered to:
<addr>" / "As their mailbox is full.", EZweb's "The user(s) account is disabled." and
"<addr>: 550 user unknown", Verizon's vtext "Error: ... RCPT TO: addr" and vzwpix's
"Message could not be delivered to mobile.", BIGLOBE's "----- The following addresses
had delivery problems -----". A carrier's own spam filter marks its refusal with
``X-SPASIGN: NG``.
"""

from __future__ import annotations

import re

from ..mail import Mail
from ..model import Reason
from .base import Failure
from .provider_common import ADDRESS, failure, lines, sweep
from .text_helpers import received

_KDDI_START = re.compile(r"^Your mail (?:sent on:?|attempted to be delivered on:?) [A-Z][a-z]{2},")
_KDDI_RECIPIENT = re.compile(r"^\s+Could not be delivered to: <([^<>\s]+@[^<>\s]+)>")
_KDDI_HINTS: tuple[tuple[str, Reason], ...] = (
    ("As their mailbox is full", Reason.MAILBOX_FULL),
    ("Due to the following SMTP relay error", Reason.NO_RELAYING),
    ("As the remote domain doesnt exist", Reason.HOST_UNKNOWN),
)


def _spam_filtered(mail: Mail) -> bool:
    return mail.header("X-SPASIGN").strip().upper() == "NG"


class _Kddi:
    name = "kddi"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        marked = bool(re.search(r"no-reply@.+\.dion\.ne\.jp", mail.sender.lower()))
        marked = marked or mail.header("Reply-To") == "no-reply@app.auone-net.jp"
        marked = marked or any("ezweb.ne.jp (" in r or ".au.com (" in r for r in received(mail))
        text_lines = lines(mail)
        if not marked or not any(_KDDI_START.match(line) for line in text_lines):
            return None
        found: list[tuple[str, list[str]]] = []
        for line in text_lines:
            match = _KDDI_RECIPIENT.match(line)
            if match:
                found.append((match.group(1), []))
            elif found and line[:1] in (" ", "\t") and line.strip():
                found[-1][1].append(line.strip())
        failures = []
        for recipient, texts in found:
            diagnostic = sweep(" ".join(texts))
            hint = Reason.FILTERED if _spam_filtered(mail) else None
            hint = hint or next((r for t, r in _KDDI_HINTS if t in diagnostic), None)
            failures.append(failure(recipient, diagnostic, reason_hint=hint))
        return failures


_EZWEB_START = re.compile(r"^(?:The user\(s\) |Your message |Each of the following|<[^ ]+@[^ ]+>)")
_EZWEB_RECIPIENT = re.compile(
    r"^(?:<([^<>\s]+@[^<>\s]+)>:?\s*(.*)|\s+Recipient: <([^<>\s]+@[^<>\s]+)>)"
)
_EZWEB_HINTS: tuple[tuple[str, Reason], ...] = (
    ("The user(s) account is temporarily over quota", Reason.MAILBOX_FULL),
    ("The user(s) account is disabled.", Reason.SUSPENDED),
    ("The user(s) account is temporarily limited.", Reason.SUSPENDED),
    ("Your message was not delivered within ", Reason.EXPIRED),
    ("Each of the following recipients was rejected by a remote mail server", Reason.ON_HOLD),
)


class _EZweb:
    name = "ezweb"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        score = sum(
            (
                "postmaster@ezweb.ne.jp" in mail.sender.lower()
                or "postmaster@au.com" in mail.sender.lower(),
                mail.subject == "Mail System Error - Returned Mail",
                any(
                    "ezweb.ne.jp (EZweb Mail) with" in r or ".au.com (" in r for r in received(mail)
                ),
                mail.header("Message-ID").endswith((".ezweb.ne.jp>", ".au.com>")),
            )
        )
        if score < 2:
            return None
        general: list[str] = []
        found: list[tuple[str, list[str], str]] = []
        started = False
        for line in lines(mail):
            if line.startswith("-" * 50) or line.lower().startswith("content-type: message/rfc822"):
                break
            started = started or bool(_EZWEB_START.match(line))
            if not started or not line.strip():
                continue
            match = _EZWEB_RECIPIENT.match(line)
            if match:
                found.append((match.group(1) or match.group(3), [match.group(2) or ""], ""))
                continue
            sent = re.match(r"^\s+>>>\s+([A-Z]{4})", line)
            if sent and found:
                found[-1] = (found[-1][0], found[-1][1], sent.group(1))
            elif found and line.strip().startswith("<<<"):
                found[-1][1].append(line.strip()[3:].strip())
            elif not found or any(text in line for text, _ in _EZWEB_HINTS):
                general.append(line.strip())
        failures = []
        for recipient, texts, command in found:
            diagnostic = sweep(" ".join(general + texts))
            hint: Reason | None = Reason.FILTERED if _spam_filtered(mail) else None
            if hint is None and command == "RCPT":
                hint = Reason.USER_UNKNOWN
            hint = hint or next((r for t, r in _EZWEB_HINTS if t in diagnostic), None)
            if hint is None and not recipient.endswith(("@ezweb.ne.jp", "@au.com")):
                hint = Reason.USER_UNKNOWN
            failures.append(failure(recipient, diagnostic, reason_hint=hint))
        return failures


class _Verizon:
    name = "verizon"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        if not any(".vtext.com (" in r or "vzwpix.com" in r for r in received(mail)):
            return None
        sender = mail.sender.lower()
        text_lines = lines(mail)
        if "post_master@vtext.com" in sender:
            rcpt = re.compile(r"^\s+RCPT TO:\s*<?(" + ADDRESS.pattern + r")")
            recipients = [m.group(1) for m in map(rcpt.match, text_lines) if m]
            reply = next((t.strip() for t in text_lines if re.match(r"^\s*\d{3}\s-\s", t)), "")
            hint = Reason.USER_UNKNOWN if "no such user here" in reply else None
            return [failure(r, reply, reason_hint=hint) for r in recipients]
        if re.search(r"sysadmin@.+\.vzwpix\.com", sender):
            if not any(
                t.startswith("Message could not be delivered to mobile") for t in text_lines
            ):
                return None
            recipients = [a for t in text_lines if t.startswith("To:") for a in ADDRESS.findall(t)]
            error = next((t.strip() for t in text_lines if t.startswith("Error:")), "")
            hint = Reason.USER_UNKNOWN if "No valid recipients for this MM" in error else None
            return [failure(r, error, reason_hint=hint) for r in recipients]
        return None


_BIGLOBE_DOMAINS = ("biglobe.ne.jp", "inacatv.ne.jp", "tmtv.ne.jp", "ttv.ne.jp")
_BIGLOBE_HINTS: tuple[tuple[str, Reason], ...] = (
    ("Mail Delivery Failed... User unknown", Reason.FILTERED),
    (
        "The number of messages in recipient's mailbox exceeded the local limit.",
        Reason.MAILBOX_FULL,
    ),
)


class _Biglobe:
    name = "biglobe"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        sender = mail.sender.lower()
        if "postmaster@" not in sender or not any("@" + d in sender for d in _BIGLOBE_DOMAINS):
            return None
        if not mail.subject.startswith("Returned mail:"):
            return None
        recipients: list[str] = []
        texts: list[str] = []
        section = ""
        for line in lines(mail):
            if "----- The following addresses had delivery problems -----" in line:
                section = "rcpt"
            elif "----- Non-delivered information -----" in line:
                section = "info"
            elif section == "rcpt" and ADDRESS.fullmatch(line.strip()):
                recipients.append(line.strip())
            elif section == "info" and line.strip() and not line.startswith("--"):
                texts.append(line.strip())
        diagnostic = sweep(" ".join(texts))
        hint = next((r for t, r in _BIGLOBE_HINTS if t in diagnostic), None)
        return [failure(r, diagnostic, reason_hint=hint) for r in recipients]


KDDI = _Kddi()
EZWEB = _EZweb()
VERIZON = _Verizon()
BIGLOBE = _Biglobe()
