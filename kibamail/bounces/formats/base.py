"""The interface every format parser implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..mail import Mail
from ..model import Reason


@dataclass
class Failure:
    """One recipient as a format reports it, before classification."""

    recipient: str
    diagnostic: str = ""
    status: str = ""  # enhanced status code if the format gives one
    smtp_code: int = 0
    # RFC 3464 Action: failed | delayed | delivered | relayed | expanded
    action: str = "failed"
    remote_mta: str = ""
    # When the format itself states the cause (qmail's "I'm not going to try again",
    # Exim's "retry timeout exceeded"), the reason it implies; the classifier still
    # reads the diagnostic first.
    reason_hint: Reason | None = None


class FormatParser(Protocol):
    """``None`` when the message is not in this format; else its recipients."""

    name: str

    def __call__(self, mail: Mail) -> list[Failure] | None: ...
