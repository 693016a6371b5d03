"""Trustwave Secure Email Gateway (formerly MailMarshal SMTP) non-delivery notices.

'Undeliverable Mail: "<subject>"': "Could not be delivered because of" then the reply,
then "The following recipients were affected:" and the addresses indented four spaces.
"""

from __future__ import annotations

import re

from ..mail import Mail
from .base import Failure
from .text_helpers import ADDRESS, body_lines, failure, unique


class _MailMarshal:
    name = "mailmarshal"

    def __call__(self, mail: Mail) -> list[Failure] | None:
        if not mail.subject.startswith("Undeliverable Mail:"):
            return None
        lines = body_lines(mail)
        if not any(line.strip().startswith("Could not be delivered because of") for line in lines):
            return None
        errors: list[str] = []
        addresses: list[str] = []
        remote = ""
        state = ""
        for line in lines:
            stripped = line.strip()
            if stripped.startswith("Could not be delivered because of"):
                state = "error"
            elif stripped.startswith("The following recipients were affected"):
                state = "rcpt"
            elif re.match(r"^(?:Additional Information|=+$|\++)", stripped):
                state = ""
            elif state == "error" and stripped:
                errors.append(stripped)
            elif state == "rcpt" and stripped and ADDRESS.search(stripped):
                addresses += ADDRESS.findall(stripped)
            elif stripped.startswith("Remote-MTA:"):
                remote = stripped.split(":", 1)[1].strip(" <>")
        text = " ".join(errors)
        return unique([failure(a, text, remote=remote) for a in addresses])


MAILMARSHAL = _MailMarshal()
