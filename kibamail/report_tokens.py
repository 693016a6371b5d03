"""Unforgeable tags in the addresses that reports come back to.

Anyone can mail a bounce, a complaint or a DMARC report to port 25, so the address a
report arrives at must prove we handed it out:

- the return path (VERP envelope sender) of every delivery is
  ``bounces+<ref>.<mac>@<return-path domain>``: ``ref`` is a keyed hash of the message
  id and the transaction's recipients (the MTA maps it back through
  ``RedisKeys.return_path``), ``mac`` signs ``ref``, so a tampered token is refused
  before any lookup;
- a team's DMARC ``rua`` address is ``dmarc+<team id>.<mac>@...``: the team id is
  recoverable, and only the platform can sign it, so no one files reports for a team by
  guessing its id.

One secret (``settings.mta.report_token_secret``) keys both; the purposes are
domain-separated. The API and the MTA share this module (both derive the same tags).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

RETURN_PATH_MAILBOX = "bounces"
RUA_MAC_CHARS = 20
REF_CHARS = 16
VERP_MAC_CHARS = 10


def _mac(secret: str, purpose: str, value: str, chars: int) -> str:
    digest = hmac.new(secret.encode(), f"{purpose}\x1f{value}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode().lower()[:chars]


def rua_tag(secret: str, team_id: str) -> str:
    """The `+tag` of a team's DMARC report address: ``<team id>.<mac>``."""
    return f"{team_id}.{_mac(secret, 'rua', team_id, RUA_MAC_CHARS)}"


def verify_rua_tag(secret: str, tag: str) -> str | None:
    """The team id a signed rua tag names; None for a bare or wrongly signed tag."""
    team_id, dot, mac = tag.rpartition(".")
    if not dot or not team_id or len(mac) != RUA_MAC_CHARS:
        return None
    expected = _mac(secret, "rua", team_id, RUA_MAC_CHARS)
    return team_id if hmac.compare_digest(mac.lower(), expected) else None


def return_path_ref(secret: str, message_id: str, recipients: Iterable[str]) -> str:
    """Short keyed id of (message, recipients of one transaction); deterministic, so a
    retried or resumed delivery uses the same return path."""
    rcpts = ",".join(sorted(r.lower() for r in recipients))
    return _mac(secret, "verp-ref", f"{message_id}\x1f{rcpts}", REF_CHARS)


def return_path_token(secret: str, ref: str) -> str:
    return f"{ref}.{_mac(secret, 'verp', ref, VERP_MAC_CHARS)}"


def return_path_address(secret: str, ref: str, domain: str) -> str:
    return f"{RETURN_PATH_MAILBOX}+{return_path_token(secret, ref)}@{domain}"


def verify_return_path(secret: str, local_part: str) -> str | None:
    """The ref of a signed ``bounces+<ref>.<mac>`` local part; None if absent or forged."""
    box, plus, token = local_part.partition("+")
    if box.lower() != RETURN_PATH_MAILBOX or not plus:
        return None
    ref, dot, mac = token.lower().partition(".")
    if not dot or len(ref) != REF_CHARS or len(mac) != VERP_MAC_CHARS:
        return None
    expected = _mac(secret, "verp", ref, VERP_MAC_CHARS)
    return ref if hmac.compare_digest(mac, expected) else None
