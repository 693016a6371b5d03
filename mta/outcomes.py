"""Per-recipient delivery outcomes, and the ones recorded before a worker restart."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from kibamail.contracts import BounceClass, MessageStatus


@dataclass
class Outcome:
    rcpt: str
    status: MessageStatus
    code: int = 0
    text: str = ""
    bounce_class: BounceClass = BounceClass.NONE
    pool: str = ""
    source_ip: str = ""
    mx_host: str = ""
    transcript: list[str] = field(default_factory=list)
    provider_group: str = ""
    retry_after: float = 0.0
    # Ref of the signed return path this recipient was sent with (mta.return_path).
    return_ref: str = ""
    # The classifier's reason and action (kibamail.bounces) for a non-2xx reply.
    bounce_reason: str = ""
    bounce_action: str = ""


IN_DOUBT = "in_doubt"
IN_DOUBT_TEXT = (
    "outcome unknown: the end of DATA was sent and no answer was recorded (the worker "
    "died, the answer timed out or the connection dropped); not re-sent to avoid a "
    "duplicate (RFC 1047)"
)


def finished_outcomes(progress: Mapping[str, str | bytes], in_doubt: str) -> dict[str, Outcome]:
    """Outcomes recorded before a crash. A recipient whose final dot was sent but whose
    answer was never recorded is "in doubt": reported delivered (``assume_delivered``,
    exactly-once toward the receiver) or mailed again (``resend``, at-least-once)."""
    done = {}
    for rcpt, raw in progress.items():
        fields = orjson.loads(raw)
        if fields["status"] == IN_DOUBT:
            if in_doubt == "resend":
                continue
            fields.update(status="delivered", code=0, text=IN_DOUBT_TEXT)
        done[rcpt] = Outcome(
            rcpt,
            MessageStatus(fields["status"]),
            fields.get("code", 0),
            fields.get("text", ""),
            BounceClass(fields.get("bounce_class", "")),
            pool=fields.get("pool", ""),
            source_ip=fields.get("source_ip", ""),
            mx_host=fields.get("mx_host", ""),
            transcript=["(recorded before a worker restart)"],
            provider_group=fields.get("provider_group", ""),
            return_ref=fields.get("return_ref", ""),
            bounce_reason=fields.get("bounce_reason", ""),
            bounce_action=fields.get("bounce_action", ""),
        )
    return done
