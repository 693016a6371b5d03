"""Order in which the mailbox providers' and gateways' formats are tried.

Specific markers first: a gateway or provider that wraps another MTA's text (Office 365
quoting a remote reply, Mimecast quoting Exchange Online) must claim the report before
the format it quotes; the Exchange text readers, which need no header marker, come after
Office 365, which does.
"""

from __future__ import annotations

from .amazonses import AMAZON_SES, SES_RECEIVING
from .base import FormatParser
from .carriers import BIGLOBE, EZWEB, KDDI, VERIZON
from .exchange import EXCHANGE2003, EXCHANGE2007
from .gateways import BARRACUDA, MESSAGELABS, MIMECAST
from .google import GMAIL, GOOGLE_GROUPS
from .mailboxes import ICLOUD, SENDGRID, YANDEX, ZOHO
from .office365 import OFFICE365, OUTLOOK_COM
from .yahoo import AOL, YAHOO

PROVIDER_FORMATS: tuple[FormatParser, ...] = (
    SES_RECEIVING,
    AMAZON_SES,
    GOOGLE_GROUPS,
    GMAIL,
    MIMECAST,
    MESSAGELABS,
    BARRACUDA,
    OFFICE365,
    OUTLOOK_COM,
    EXCHANGE2007,
    EXCHANGE2003,
    YAHOO,
    AOL,
    ZOHO,
    YANDEX,
    ICLOUD,
    SENDGRID,
    KDDI,
    EZWEB,
    VERIZON,
    BIGLOBE,
)
