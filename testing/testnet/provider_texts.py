"""Real mailbox-provider SMTP answers (as seen in bounce logs), with their bounce class.

The sink answers with these so the delivery side meets the texts it meets in
production; the bounce classifier is tested against the same table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProviderAnswer:
    provider: str
    code: int
    enhanced: str
    text: str
    # Expected class: hard | soft | block | policy | quota
    bounce_class: str

    def line(self) -> str:
        """The reply line aiosmtpd sends (enhanced code first, like the providers do)."""
        return f"{self.code} {self.enhanced} {self.text}".replace("  ", " ").strip()


GOOGLE = "google"
MICROSOFT = "microsoft"
YAHOO = "yahoo"
GENERIC = "generic"

ANSWERS: tuple[ProviderAnswer, ...] = (
    # Gmail
    ProviderAnswer(
        GOOGLE,
        550,
        "5.1.1",
        "The email account that you tried to reach does not exist. Please try "
        "double-checking the recipient's email address for typos or unnecessary spaces. "
        "https://support.google.com/mail/?p=NoSuchUser - gsmtp",
        "hard",
    ),
    ProviderAnswer(
        GOOGLE,
        421,
        "4.7.28",
        "Our system has detected an unusual rate of unsolicited mail originating from your "
        "IP address. To protect our users from spam, mail sent from your IP address has been "
        "temporarily rate limited. - gsmtp",
        "block",
    ),
    ProviderAnswer(
        GOOGLE,
        450,
        "4.2.1",
        "The user you are trying to contact is receiving mail at a rate that prevents "
        "additional messages from being delivered. - gsmtp",
        "soft",
    ),
    ProviderAnswer(
        GOOGLE,
        552,
        "5.2.2",
        "The recipient's inbox is out of storage space. Please direct the recipient to "
        "https://support.google.com/mail/?p=OverQuotaPerm - gsmtp",
        "quota",
    ),
    ProviderAnswer(
        GOOGLE,
        550,
        "5.7.26",
        "This mail has been blocked because the sender is unauthenticated. Gmail requires "
        "all senders to authenticate with either SPF or DKIM. - gsmtp",
        "policy",
    ),
    ProviderAnswer(
        GOOGLE,
        550,
        "5.7.1",
        "Our system has detected that this message is likely unsolicited mail. To reduce the "
        "amount of spam sent to Gmail, this message has been blocked. - gsmtp",
        "policy",  # spam detected in the content: fix our side, not an IP block
    ),
    # Outlook / Microsoft 365
    ProviderAnswer(
        MICROSOFT,
        550,
        "5.5.0",
        "Requested action not taken: mailbox unavailable (S2017062302). "
        "[AM4PEPF00027A6C.eurprd04.prod.outlook.com]",
        "hard",
    ),
    ProviderAnswer(
        MICROSOFT,
        550,
        "5.7.1",
        "Unfortunately, messages from [192.0.2.10] weren't sent. Please contact your Internet "
        "service provider since part of their network is on our block list (S3150).",
        "block",
    ),
    ProviderAnswer(
        MICROSOFT,
        451,
        "4.7.500",
        "Server busy. Please try again later from [192.0.2.10]. (S77719)",
        "soft",
    ),
    ProviderAnswer(
        MICROSOFT,
        550,
        "5.7.515",
        "Access denied, sending domain example.com doesn't meet the required authentication level.",
        "policy",
    ),
    # Yahoo / AOL
    ProviderAnswer(
        YAHOO,
        421,
        "4.7.0",
        "[TSS04] Messages from 192.0.2.10 temporarily deferred due to unexpected volume or "
        "user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
        "block",
    ),
    ProviderAnswer(
        YAHOO,
        554,
        "5.7.9",
        "Message not accepted for policy reasons. See https://postmaster.yahooinc.com/error-codes",
        "policy",
    ),
    ProviderAnswer(
        YAHOO,
        554,
        "",
        "delivery error: dd This user doesn't have a yahoo.com account (x@yahoo.com) [0] - "
        "mta4321.mail.gq1.yahoo.com",
        "hard",
    ),
    ProviderAnswer(
        YAHOO,
        452,
        "4.2.2",
        "Mailbox full",
        "quota",
    ),
    # Postfix / generic MTAs
    ProviderAnswer(
        GENERIC,
        450,
        "4.2.0",
        "<x@example.org>: Recipient address rejected: Greylisted, see "
        "http://postgrey.schweikert.ch/help/example.org.html",
        "soft",
    ),
    ProviderAnswer(
        GENERIC,
        550,
        "5.1.1",
        "<x@example.org>: Recipient address rejected: User unknown in virtual mailbox table",
        "hard",
    ),
    ProviderAnswer(
        GENERIC,
        554,
        "5.7.1",
        "Service unavailable; Client host [192.0.2.10] blocked using zen.spamhaus.org",
        "block",
    ),
    ProviderAnswer(
        GENERIC,
        421,
        "4.4.2",
        "mx.example.org Error: timeout exceeded",
        "soft",
    ),
)

_DOMAIN_PROVIDERS: dict[str, str] = {
    "gmail.com": GOOGLE,
    "googlemail.com": GOOGLE,
    "outlook.com": MICROSOFT,
    "hotmail.com": MICROSOFT,
    "live.com": MICROSOFT,
    "msn.com": MICROSOFT,
    "yahoo.com": YAHOO,
    "ymail.com": YAHOO,
    "aol.com": YAHOO,
}


def provider_of_domain(domain: str) -> str:
    return _DOMAIN_PROVIDERS.get(domain.lower(), GENERIC)


def answers_for(provider: str, temporary: bool) -> list[ProviderAnswer]:
    """Answers of one provider (generic if it has none) that are 4xx or 5xx."""
    picked = [a for a in ANSWERS if a.provider == provider and (a.code < 500) == temporary]
    return picked or [a for a in ANSWERS if a.provider == GENERIC and (a.code < 500) == temporary]


# Answers used for the tempfail@ / permfail@ local parts, per provider.
def user_unknown(provider: str) -> ProviderAnswer:
    return next(a for a in answers_for(provider, False) if a.bounce_class == "hard")


def rate_limited(provider: str) -> ProviderAnswer:
    return answers_for(provider, True)[0]
