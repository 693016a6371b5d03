"""Auto-replies and challenge-response mails: answers from a robot, never a bounce.

RFC 3834 ``Auto-Submitted``, the de-facto ``X-Autoreply``/``X-Autorespond``/
``Precedence: auto_reply``/``X-Apple-Action: vacation`` headers, out-of-office subjects in
the languages providers localise them into, and the challenge-response systems (TMDA,
Boxbe, SpamArrest, "please confirm you sent this" robots). Bounces carry
``Auto-Submitted: auto-replied`` too (RFC 3464 says so), so anything from a mailer daemon,
with a delivery-status part or a bounce-like subject, is left to the bounce readers.
"""

from __future__ import annotations

import re

from .mail import Mail

DAEMON = re.compile(
    r"mailer-daemon|postmaster|mail delivery|maildelivery|^\s*root@|<root@|mdaemon"
    r"|mail administrator|microsoftexchange",
    re.IGNORECASE,
)
BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (?:status|fail|report|notification|has failed|problem)"
    r"|non[- ]?delivery|failure notice|returned mail|mail delivery failed|returned to sender"
    r"|delivery failure|could not be delivered|(?:message|mail) (?:was )?rejected"
    r"|mail system error|nicht zustellbar|unzustellbar|non remis|no entregado|non recapitato"
    r"|niet bezorgd|delayed mail"
    r"|warning: could not send|mail failure|message not delivered|unable to deliver",
    re.IGNORECASE,
)
_AUTO_HEADERS = re.compile(r"^auto-(?:replied|generated|notified)", re.IGNORECASE)
# Subjects alone are weak evidence (a newsletter may say "vacation"): the phrase must
# open the subject, after any reply prefix, or be one of the unmistakable ones.
_OOO_ANYWHERE = re.compile(
    r"out of (?:the )?office|automatic reply|auto[- ]?reply|auto[- ]?response|autoresponder"
    r"|automatische antwort|réponse automatique|respuesta automática|risposta automatica"
    r"|automatisch antwoord|automatiskt svar|автоответ|автоматический ответ"
    r"|自動応答|自動返信|自动回复",
    re.IGNORECASE,
)
_OOO_SUBJECT = re.compile(
    r"^\s*(?:(?:re|aw|sv|vs|antw|r|rif|fwd?)\s*:\s*)*\[?(?:"
    r"out of (?:the )?office|automatic reply|auto(?:matic)?[ -]?(?:reply|response|responder)"
    r"|^\s*auto:|autoreply|vacation|on holiday|away from (?:the|my) (?:office|desk|mail)"
    r"|abwesenheit|automatische antwort|nicht im büro|außer haus|réponse automatique"
    r"|absence|absent du bureau|respuesta automática|respuesta automatica|fuera de la oficina"
    r"|ausente|risposta automatica|fuori (?:sede|ufficio)|resposta automática|fora do escritório"
    r"|automatisch antwoord|afwezig|niet aanwezig|autosvar|automatiskt svar|frånvaro|fravær"
    r"|automaattinen vastaus|poissa|odpowiedź automatyczna|nieobecność|automatická odpověď"
    r"|автоответ|автоматический ответ|нет в офисе|отпуск|自動応答|自動返信|不在|自动回复|休假"
    r"|자동 응답|부재중|otomatik yan\u0131t|ofis d\u0131\u015f\u0131nda|automatikus válasz)",
    re.IGNORECASE,
)
_CHALLENGE_SENDER = re.compile(
    r"@(?:[\w.-]+\.)?(?:boxbe\.com|spamarrest\.com|mailblocks\.com|sendio\.com"
    r"|earthlink\.net.*spamblocker)|tmda|confirm[-+]",
    re.IGNORECASE,
)
_CHALLENGE_SUBJECT = re.compile(
    r"please confirm|confirm (?:your|that you)|verify (?:your|that you)|verification required"
    r"|approval required|request for approval|is awaiting your|sender verification"
    r"|challenge|whitelist|pending (?:message|delivery)|boxbe|spam ?arrest",
    re.IGNORECASE,
)
_CHALLENGE_HEADERS = ("X-Delivery-Agent", "X-Boxbe-Mail-Id", "X-SpamArrest-Challenge", "X-TMDA")
_CHALLENGE_TEXT = re.compile(
    r"(?:your (?:message|e-?mail)|you sent|messages? (?:you|sent) to)[^\n]{0,200}"
    r"(?:confirm|verif|approv|whitelist)|(?:confirm|verif)[^\n]{0,120}(?:your (?:message|e-?mail)|"
    r"you sent|you are a (?:real )?(?:person|human))",
    re.IGNORECASE,
)
_DMARC_SUBJECT = re.compile(r"report[ _-]?domain\s*:|dmarc", re.IGNORECASE)


def _is_report_like(mail: Mail) -> bool:
    if DAEMON.search(mail.sender) or BOUNCE_SUBJECT.search(mail.subject):
        return True
    if _DMARC_SUBJECT.search(mail.subject):
        return True
    ctype = str(mail.message.get("Content-Type", "")).lower()
    return "multipart/report" in ctype


def auto_reply_rule(mail: Mail) -> str:
    """Why ``mail`` is an auto-reply ("" when it is not): a header, subject or system name."""
    if _is_report_like(mail):
        return ""
    headers = mail.message
    for name in _CHALLENGE_HEADERS:
        value = str(headers.get(name, ""))
        if value and (name != "X-Delivery-Agent" or "tmda" in value.lower()):
            return f"challenge:{name.lower()}"
    challenge_subject = bool(_CHALLENGE_SUBJECT.search(mail.subject))
    if _CHALLENGE_SENDER.search(mail.sender) and (challenge_subject or "confirm" in mail.text):
        return "challenge:sender"
    submitted = str(headers.get("Auto-Submitted", "")).strip()
    if _AUTO_HEADERS.match(submitted):
        return "auto-submitted"
    if headers.get("X-Autoreply") or headers.get("X-Autorespond") or headers.get("X-Autoresponder"):
        return "x-autoreply"
    if str(headers.get("Precedence", "")).strip().lower() == "auto_reply":
        return "precedence"
    if "vacation" in str(headers.get("X-Apple-Action", "")).lower():
        return "x-apple-action"
    if headers.get("List-Id") or headers.get("List-Unsubscribe"):
        return ""  # a newsletter or a list: its subject proves nothing
    if _OOO_ANYWHERE.search(mail.subject) or _OOO_SUBJECT.search(mail.subject):
        return "subject"
    if challenge_subject and _CHALLENGE_TEXT.search(mail.text):
        return "challenge:text"
    return ""


# "This email inbox info@... is no longer in use": the answer of a retired mailbox, which
# the reference reads as a suspended address (still an auto-reply: never suppressed).
_RETIRED = re.compile(
    r"this e-?mail (?:inbox|address|account)\b[^\n]{0,120}?"
    r"\bis no longer (?:in use|used|monitored)",
    re.IGNORECASE,
)


def retired_mailbox(mail: Mail) -> bool:
    """Whether an auto-reply says the mailbox is no longer in use."""
    return bool(_RETIRED.search(mail.text[:2000]))
