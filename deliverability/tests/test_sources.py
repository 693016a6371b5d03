"""Source enrichment from loopback reverse DNS and small offline mmdb files, into storage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deliverability.domain_checks import make_resolver
from deliverability.ingest import ingest_bytes
from deliverability.sources import SourceEnricher
from testing.testnet import DnsServer, Zone

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent / "fixtures"
ZONE = "209.113.0.203.in-addr.arpa. 60 IN PTR a7-5.smtp-out.amazonses.com.\n"


def _write_mmdbs(tmp_path: Path) -> tuple[str, str]:
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    asn = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-ASN")
    asn.insert_network(
        IPSet(["203.0.113.0/24"]),
        {"autonomous_system_number": 64500, "autonomous_system_organization": "EXAMPLE-NET"},
    )
    city = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-City")
    city.insert_network(IPSet(["203.0.113.0/24"]), {"country": {"iso_code": "NL"}})
    asn.to_db_file(str(tmp_path / "asn.mmdb"))
    city.to_db_file(str(tmp_path / "city.mmdb"))
    return str(tmp_path / "asn.mmdb"), str(tmp_path / "city.mmdb")


def test_enriched_sources_land_in_the_records_table(tmp_path: Path, dmarc_tables: Any) -> None:
    clickhouse = dmarc_tables
    asn_db, city_db = _write_mmdbs(tmp_path)
    with DnsServer(zone=Zone.from_text(ZONE, catch_all=False)) as server:
        resolver = make_resolver(["127.0.0.1"], port=server.port, timeout=0.5, lifetime=1.0)
        enricher = SourceEnricher(resolver, asn_db=asn_db, country_db=city_db)
        info = enricher.lookup("203.0.113.209")
        assert (info.reverse_dns, info.sending_service) == (
            "a7-5.smtp-out.amazonses.com",
            "Amazon SES",
        )
        assert (info.asn, info.as_org, info.country) == (64500, "EXAMPLE-NET", "NL")
        assert enricher.lookup("198.51.100.1").asn == 0  # not in the db: no data, no error
        data = (FIXTURES / "report-valid.xml").read_bytes()
        result = ingest_bytes(data, clickhouse, name="v.xml", enricher=enricher)
    assert result.stored
    row = clickhouse.query(
        "SELECT reverse_dns, asn, as_org, country, sending_service FROM raw_dmarc_records FINAL"
    ).result_rows[0]
    assert tuple(row) == ("a7-5.smtp-out.amazonses.com", 64500, "EXAMPLE-NET", "NL", "Amazon SES")
