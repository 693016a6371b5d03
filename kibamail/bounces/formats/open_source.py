"""Order in which the open-source MTAs' plain-text formats are tried.

Parsers recognised by a header or sender of their own come first; the broad readers
(qmail's greeting, Postfix's signature, Sendmail's sections, Exim's opening sentence,
which clones reuse) come last, Exim after the clones that copy its wording.
"""

from __future__ import annotations

from .appliances import IMAIL, INTERSCAN, MAILFOUNDRY, MCAFEE, MESSAGING_SERVER, MFILTER
from .base import FormatParser
from .courier import COURIER
from .domino import DOMINO, NOTES
from .exim import EXIM, MAILRU, MXLOGIC
from .fml import FML
from .gmx import GMX
from .james import JAMES
from .mailmarshal import MAILMARSHAL
from .opensmtpd import OPENSMTPD
from .postfix import POSTFIX
from .qmail import QMAIL
from .sendmail import SENDMAIL
from .smail import SMAIL
from .unknown_mtas import X1, X3, X6

OPEN_SOURCE_FORMATS: tuple[FormatParser, ...] = (
    MXLOGIC,
    MCAFEE,
    MFILTER,
    FML,
    MAILRU,
    GMX,
    SMAIL,
    JAMES,
    MAILMARSHAL,
    DOMINO,
    NOTES,
    COURIER,
    OPENSMTPD,
    MAILFOUNDRY,
    IMAIL,
    INTERSCAN,
    MESSAGING_SERVER,
    X1,
    X3,
    X6,
    QMAIL,
    POSTFIX,
    SENDMAIL,
    EXIM,
)
