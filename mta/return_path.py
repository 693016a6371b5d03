"""The signed return path (VERP envelope sender) of every delivery.

MAIL FROM is ``bounces+<ref>.<mac>@<domain>`` (``kibamail.report_tokens``): a DSN or
complaint coming back to it names the message and the transaction's recipients, and
only we can produce the token. The per-recipient record the token is checked against is
written with the delivered outcome (``mta.commit.record_sent``).

The domain keeps SPF/DMARC alignment as the API documents it (api/services/domains.py,
record ``return_path``): a sending domain that published ``bounces.<domain>`` as a
CNAME to the MTA hostname gets ``bounces.<domain>`` (SPF passes for it and aligns
relaxed with the From domain); otherwise, the CNAME being optional, the platform's
inbound domain, which always receives our bounces (SPF passes, DMARC aligns through the
DKIM signature with ``d=`` the sending domain). A DNS failure falls back to the latter.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import dns.asyncresolver
import dns.exception

from kibamail.report_tokens import return_path_address, return_path_ref
from kibamail.settings import Settings

from .coalesce import SingleFlight
from .config import MtaConfig
from .resolver import async_resolver

CACHE_SECONDS = 300.0


class ReturnPaths:
    def __init__(self, settings: Settings, config: MtaConfig) -> None:
        mta = settings.mta
        self.secret = mta.report_token_secret
        inbound = config.submission.inbound_domains
        self.platform_domain = (inbound[0] if inbound else mta.hostname).lower()
        self.target = mta.hostname.lower().rstrip(".")
        self._resolver = async_resolver(mta, lifetime=5.0)
        self._cache: dict[str, tuple[float, str]] = {}
        self._lookups = SingleFlight()

    async def domain_for(self, sender_domain: str) -> str:
        sender_domain = sender_domain.lower().rstrip(".")
        cached = self._cache.get(sender_domain)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        return await self._lookups.run(sender_domain, lambda: self._resolve(sender_domain))

    async def _resolve(self, sender_domain: str) -> str:
        host = f"bounces.{sender_domain}"
        try:
            answer = await self._resolver.resolve(host, "CNAME")
            targets = {r.target.to_text(omit_final_dot=True).lower() for r in answer}
        except dns.exception.DNSException:
            targets = set()
        domain = host if self.target in targets else self.platform_domain
        self._cache[sender_domain] = (time.monotonic() + CACHE_SECONDS, domain)
        return domain

    async def address(
        self, message_id: str, sender_domain: str, recipients: Iterable[str]
    ) -> tuple[str, str]:
        """(MAIL FROM address, ref) for one transaction of ``message_id``."""
        ref = return_path_ref(self.secret, message_id, recipients)
        domain = await self.domain_for(sender_domain)
        return return_path_address(self.secret, ref, domain), ref
