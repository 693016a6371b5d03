"""The local stack's DNS publishes what each sending domain added to the API must publish.

On the real internet a customer adds SPF, DKIM and DMARC records at their DNS host; the
local stack's test internet has no DNS host, so its DNS server answers, for every domain
in the API's database, exactly the records `api.services.domains.dns_records` asks for
(and the platform's own `_spf.<mta hostname>` include). `POST .../domains/{id}/verify` then
really resolves and checks them. Dev and test only: never part of the wheel.
"""

from __future__ import annotations

import time
from typing import Any

from kibamail.settings import Settings

CACHE_SECONDS = 1.0


class ApiDomainRecords:
    """``(name, qtype) -> [(type, value)]`` from the API database (None: not ours)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._sessions: Any = None
        self._cache: dict[tuple[str, str], tuple[float, list[tuple[str, str]]]] = {}

    def _session(self) -> Any:
        if self._sessions is None:
            from api.db import make_engine, make_sessionmaker

            self._sessions = make_sessionmaker(make_engine(self.settings.database.url))
        return self._sessions()

    def _answers(self, name: str, qtype: str) -> list[tuple[str, str]]:
        from sqlalchemy import select

        from api.models import Domain
        from api.services.domains import dns_records, spf_include

        if name == spf_include(self.settings) and qtype in ("TXT", "ANY"):
            return [("TXT", "v=spf1 ip4:127.0.0.0/8 -all")]
        labels = name.split(".")
        candidates = [".".join(labels[i:]) for i in range(len(labels) - 1)]
        with self._session() as session:
            domains = list(session.scalars(select(Domain).where(Domain.name.in_(candidates))))
        return [
            (record.type, record.value)
            for domain in domains
            for record in dns_records(domain, self.settings, contested=True)
            if record.name == name and qtype in (record.type, "ANY")
        ]

    def __call__(self, name: str, qtype: str) -> list[tuple[str, str]] | None:
        hit = self._cache.get((name, qtype))
        if hit is not None and hit[0] > time.monotonic():
            return hit[1] or None
        try:
            answers = self._answers(name, qtype)
        except Exception:  # no database yet (the API not migrated): nothing published
            answers = []
        self._cache[(name, qtype)] = (time.monotonic() + CACHE_SECONDS, answers)
        return answers or None
