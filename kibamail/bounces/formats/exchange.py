"""Microsoft Exchange non-delivery reports: Exchange 2003 and Exchange 2007 and later.

Exchange 2003 names each recipient on a line "addr on <date>" followed by indented
explanations, an ``MSEXCH:IMS`` line with an eight-digit code, or the SMTP reply quoted
as ``<mx.example.org #5.1.1 smtp;550 ...>``. Exchange 2007 and later (and Office 365,
see ``office365``) write "Diagnostic information for administrators:", the generating
server, then each recipient with "#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##"
or "Remote Server returned '550 5.1.10 ...'", in the sender's language.
"""

from __future__ import annotations

import re

from ..mail import Mail
from ..model import Reason
from .base import Failure
from .provider_common import (
    ADDRESS,
    address,
    dsn_records,
    enhanced_status,
    failure,
    has_header,
    lines,
    record_failure,
    sweep,
)
from .text_helpers import received

# --- Exchange 2007 and later -----------------------------------------------------------

_DIAG_MARKERS = (
    "diagnostic information for administrators",
    "informations de diagnostic pour les administrateurs",
    "diagnoseinformationen für administratoren",
    "información de diagnóstico para administradores",
    "informazioni di diagnostica per gli amministratori",
    "informações de diagnóstico para administradores",
    "diagnostische informatie voor beheerders",
    "管理者向けの診断情報",
)
_FAILED_MARKERS = (
    "delivery has failed to these recipients or groups",
    "la remise aux destinataires ou groupes suivants a échoué",
    "fehler bei der zustellung an folgende empfänger oder gruppen",
    "error en la entrega a estos destinatarios o grupos",
    "recapito non riuscito a questi destinatari o gruppi",
    "a entrega falhou para estes destinatários ou grupos",
    "bezorging is mislukt voor deze geadresseerden of groepen",
    "次の受信者またはグループへの配信に失敗しました",
    "rejected your message to the following e-mail addresses",
    "rejected your message to the following email addresses",
)
_END_MARKERS = (
    "original message headers",
    "en-têtes de message d'origine",
    "ursprüngliche nachrichtenkopfzeilen",
    "encabezados del mensaje original",
    "intestazioni messaggio originale",
    "cabeçalhos da mensagem original",
    "oorspronkelijke berichtkoppen",
    "元のメッセージ ヘッダー",
)
_GENERATING = re.compile(
    r"^(?:generating server|serveur de g\S*ration|generierender server|servidor de generaci\S*n"
    r"|server di generazione|servidor de gera\S*o|server voor genereren|生成サーバー)\s*:\s*(\S+)",
    re.IGNORECASE,
)
_HASH_CODE = re.compile(r"#\s*([45]\d\d[ -][245]\.\d{1,3}\.\d{1,3}\b.*?)\s*##")
_QUOTED_CODE = re.compile(r"^\s*([45]\d\d[ -].*)$")
_REMOTE_AT = re.compile(r"\bat\s+([A-Za-z0-9.-]+\.[A-Za-z]{2,})\s*(?:\([^)]*\))?\s+returned", re.I)
_BARE_RECIPIENT = re.compile(r"^\s*<?(" + ADDRESS.pattern + r")>?\s*$")
_MAILTO_RECIPIENT = re.compile(r"^\s*\S.*?<mailto:(" + ADDRESS.pattern + r")>\s*$")
_HEADER_LINE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*:\s")

# Exchange's own status tokens, when they name the cause unambiguously.
_TOKEN_HINTS: dict[str, Reason] = {
    "resolver.adr.recipnotfound": Reason.USER_UNKNOWN,
    "resolver.adr.exrecipnotfound": Reason.USER_UNKNOWN,
    "resolver.adr.recipientnotfound": Reason.USER_UNKNOWN,
    "smtpsend.dns.nonexistentdomain": Reason.HOST_UNKNOWN,
    "smtpsend.dns.mxloopback": Reason.NETWORK_ERROR,
    "resolver.adr.badprimary": Reason.SYSTEM_ERROR,
    "resolver.adr.invalidinsmtp": Reason.SYSTEM_ERROR,
    "resolver.adr.ambiguous": Reason.SYSTEM_ERROR,
    "resolver.adr.reciplimit": Reason.TOO_MANY_CONNECTIONS,
    "resolver.rst.authrequired": Reason.SECURITY_ERROR,
    "resolver.rst.notauthorized": Reason.SENDER_REJECTED,
    "resolver.rst.recipsizelimit": Reason.MESSAGE_TOO_BIG,
    "queue.expired": Reason.EXPIRED,
}


def token_hint(diagnostic: str) -> Reason | None:
    lowered = diagnostic.lower()
    for token, reason in _TOKEN_HINTS.items():
        if token in lowered:
            return reason
    return None


def _starts(line: str, markers: tuple[str, ...]) -> bool:
    return line.strip().lower().startswith(markers)


def _code_text(line: str) -> str:
    """The SMTP reply an NDR line quotes, "" when it quotes none."""
    hashed = _HASH_CODE.search(line)
    if hashed:
        return hashed.group(1)
    if "'" in line:
        # From the first quote to the last: the reply itself may hold apostrophes.
        segment = line[line.index("'") + 1 :]
        segment = segment[: segment.rindex("'")] if "'" in segment else segment
        quoted = _QUOTED_CODE.match(segment)
        if quoted:
            return quoted.group(1).strip()
    return ""


def read_ndr_text(text_lines: list[str]) -> tuple[list[Failure], str]:
    """Recipients of an Exchange 2007+ NDR's text and the generating server's name.

    Reads the administrators' section first (it carries the SMTP reply); when there is
    none, the users' section ("Delivery has failed to these recipients or groups:").
    """
    found: dict[str, Failure] = {}
    generating = ""
    start = next((i for i, line in enumerate(text_lines) if _starts(line, _DIAG_MARKERS)), -1)
    if start >= 0:
        current = ""
        pending = ""
        for line in text_lines[start + 1 :]:
            if _starts(line, _END_MARKERS) or (found and _HEADER_LINE.match(line)):
                break
            gen = _GENERATING.match(line.strip())
            if gen:
                generating = gen.group(1).lower()
                continue
            recipient = _BARE_RECIPIENT.match(line)
            if recipient:
                current = recipient.group(1)
                found.setdefault(current, failure(current, ""))
                pending = ""
                continue
            if not current or not line.strip():
                continue
            if pending:  # a quoted reply wrapped over several lines
                pending += " " + line.strip()
                if "'" not in line:
                    continue
                line, pending = pending, ""
            elif "returned '" in line.lower() and line.count("'") == 1:
                pending = line.strip()
                continue
            code = _code_text(line)
            if not code or found[current].smtp_code:
                continue  # Exchange lists the latest attempt first
            remote = _REMOTE_AT.search(line)
            found[current] = failure(
                current,
                code,
                remote_mta=remote.group(1).lower() if remote else "",
                reason_hint=token_hint(code),
            )
    if not found:
        found = {f.recipient: f for f in _users_section(text_lines)}
    return list(found.values()), generating


def _users_section(text_lines: list[str]) -> list[Failure]:
    """Recipients listed under "Delivery has failed ..." with the explanation below each."""
    start = next((i for i, line in enumerate(text_lines) if _starts(line, _FAILED_MARKERS)), -1)
    if start < 0:
        return []
    found: list[Failure] = []
    explanation: list[str] = []

    def close() -> None:
        if found:
            found[-1] = failure(found[-1].recipient, " ".join(explanation))
        explanation.clear()

    for line in text_lines[start + 1 :]:
        if _starts(line, _DIAG_MARKERS + _END_MARKERS):
            break
        match = _MAILTO_RECIPIENT.match(line) or _BARE_RECIPIENT.match(line)
        if match:
            close()
            found.append(failure(match.group(1), ""))
        elif found and line.strip():
            explanation.append(line.strip())
    close()
    return found


class _Exchange2007:
    """On-premises Exchange 2007/2010/2013+: subject "Undeliverable:" and the NDR text."""

    name = "exchange2007"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        text_lines = lines(mail)
        marked = any(_starts(line, _DIAG_MARKERS + _FAILED_MARKERS) for line in text_lines)
        if not marked:
            return None
        failures, generating = read_ndr_text(text_lines)
        if not failures:  # the human part names no one: the DSN part does
            return [record_failure(r, token_hint(r.diagnostic)) for r in dsn_records(mail)]
        records = {r.recipient.lower(): r for r in dsn_records(mail)}
        merged = []
        for item in failures:
            record = records.get(item.recipient.lower())
            if record is not None:
                if not item.status or item.status.endswith(".0.0"):
                    item.status = record.status or item.status
                item.action = record.action
                item.remote_mta = item.remote_mta or record.remote_mta
                if not item.diagnostic:
                    item.diagnostic = record.diagnostic
                    item.smtp_code = failure("", record.diagnostic).smtp_code
                    item.reason_hint = token_hint(record.diagnostic)
            item.remote_mta = item.remote_mta or generating
            merged.append(item)
        return merged


# --- Exchange 2003 ---------------------------------------------------------------------

_E2003_MARKERS = (
    "did not reach the following recipient(s):",
    "your message did not reach some or all of the intended recipients",
    "the following recipient(s) could not be reached:",
)
_E2003_RECIPIENT = re.compile(
    r"^\s*(?:.*?\bSMTP=)?(" + ADDRESS.pattern + r")(?:>?\s+on\s+.*|\s*)$", re.IGNORECASE
)
_MSEXCH = re.compile(r"MSEXCH:.*?\(([0-9A-F]{8})\)\s*(.*)$")
_ANGLE_REPLY = re.compile(
    r"<\s*([^\s#<>]*)\s*#\s*([245]\.\d{1,3}\.\d{1,3})\s*(?:smtp\s*;\s*)?(.*)>\s*$", re.I
)
_E2003_CODES: dict[str, Reason] = {
    "000C05A6": Reason.USER_UNKNOWN,  # Unknown Recipient
    "00010256": Reason.SYSTEM_ERROR,  # Too many recipients
    "000D06B5": Reason.SYSTEM_ERROR,  # No proxy for recipient
    "00120270": Reason.NETWORK_ERROR,  # Too many hops
    "00050311": Reason.CONTENT_ERROR,  # Conversion to Internet format failed
    "000502CC": Reason.CONTENT_ERROR,
    "000B0981": Reason.SECURITY_ERROR,  # 502 Server does not support AUTH
    "000C0595": Reason.FILTERED,  # Ambiguous recipient
}


def _exchange2003_headers(mail: Mail) -> bool:
    mailer = mail.header("X-Mailer")
    if mailer.startswith(("Internet Mail Service (", "Microsoft Exchange Server Internet Mail")):
        return True
    if mail.header("X-MimeOLE").startswith("Produced By Microsoft Exchange"):
        return True
    if has_header(mail, "X-MS-Embedded-Report"):
        return True
    return any(" with Internet Mail Service (" in value for value in received(mail))


class _Exchange2003:
    """Exchange 5.5/2000/2003 NDRs (and their "Your message did not reach" SMTP form)."""

    name = "exchange2003"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        text_lines = lines(mail)
        lowered = mail.text.lower()
        if not any(marker in lowered for marker in _E2003_MARKERS):
            return None
        # The old wording alone is also Lotus Domino's: our header markers decide then.
        only_old_wording = "could not be reached" not in lowered and "msexch:" not in lowered
        if only_old_wording and not _exchange2003_headers(mail):
            return None
        # "The following recipient(s) could not be reached:" (2000) / "cannot be reached:" (2003)
        markers = ("did not reach the following", "could not be reached", "cannot be reached")
        start = next(
            (i for i, line in enumerate(text_lines) if any(m in line.lower() for m in markers)),
            -1,
        )
        if start < 0:
            return None
        found: list[tuple[str, list[str], str, str, Reason | None]] = []
        for line in text_lines[start + 1 :]:
            if _HEADER_LINE.match(line) and found:
                break
            recipient = _E2003_RECIPIENT.match(line)
            if recipient and not line.strip().startswith("<"):
                found.append((recipient.group(1), [], "", "", None))
                continue
            if not found or not line.strip() or "MTS-ID" in line or line.startswith(";l="):
                continue
            addr, texts, status, remote, hint = found[-1]
            msexch = _MSEXCH.search(line)
            angle = _ANGLE_REPLY.search(line)
            if msexch:
                hint = _E2003_CODES.get(msexch.group(1), hint)
                texts.append(msexch.group(2))
            elif angle:
                remote, status = angle.group(1).lower(), angle.group(2)
                texts.append(angle.group(3))
            else:
                texts.append(line.strip())
            found[-1] = (addr, texts, status, remote, hint)
        failures = []
        for addr, texts, status, remote, hint in found:
            diagnostic = sweep(" ".join(texts))
            failures.append(
                failure(
                    addr,
                    diagnostic,
                    status=status or enhanced_status(diagnostic),
                    remote_mta=remote,
                    reason_hint=hint,
                )
            )
        return failures


EXCHANGE2003 = _Exchange2003()
EXCHANGE2007 = _Exchange2007()

__all__ = ["EXCHANGE2003", "EXCHANGE2007", "address", "read_ndr_text", "token_hint"]
