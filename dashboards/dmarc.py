"""The DMARC dashboard: what receivers report about mail claiming our customers' domains.

Reads the dbt mart fct_dmarc_daily (one row per team, domain, day and sending source
IP, from the aggregate reports deliverability/ ingests). Message counts are the reporters'.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards.panels import country_map, new_dashboard, number, rows, series

DAYS = "$__timeFilter(day)"
MART = "fct_dmarc_daily"


def dmarc() -> dashboard.Dashboard:
    return (
        new_dashboard(
            "kibamail-dmarc",
            "DMARC",
            "DMARC aggregate reports per domain: pass rate, sources (IP, ASN, country),"
            " SPF/DKIM alignment and the disposition receivers applied.",
        )
        .with_panel(number("Messages reported", f"SELECT sum(messages) FROM {MART} WHERE {DAYS}"))
        .with_panel(
            number(
                "DMARC pass rate",
                "SELECT if(sum(messages) = 0, 0, sum(dmarc_pass) / sum(messages))"
                f" FROM {MART} WHERE {DAYS}",
                unit="percentunit",
            )
        )
        .with_panel(
            number(
                "Quarantined or rejected",
                "SELECT sum(disposition_quarantine) + sum(disposition_reject)"
                f" FROM {MART} WHERE {DAYS}",
            )
        )
        .with_panel(
            number("Sending sources", f"SELECT uniqExact(source_ip) FROM {MART} WHERE {DAYS}")
        )
        .with_panel(
            series(
                "DMARC pass rate per domain",
                "SELECT toDateTime(day) AS time, domain,"
                " if(sum(messages) = 0, 0, sum(dmarc_pass) / sum(messages)) AS pass_rate"
                f" FROM {MART} WHERE {DAYS} GROUP BY time, domain ORDER BY time",
                unit="percentunit",
                width=24,
            )
        )
        .with_panel(
            series(
                "SPF and DKIM alignment",
                "SELECT toDateTime(day) AS time,"
                " if(sum(messages) = 0, 0, sum(dkim_aligned) / sum(messages)) AS dkim_aligned,"
                " if(sum(messages) = 0, 0, sum(spf_aligned) / sum(messages)) AS spf_aligned"
                f" FROM {MART} WHERE {DAYS} GROUP BY time ORDER BY time",
                unit="percentunit",
            )
        )
        .with_panel(
            series(
                "Disposition applied by receivers",
                "SELECT toDateTime(day) AS time, sum(disposition_none) AS none,"
                " sum(disposition_quarantine) AS quarantine, sum(disposition_reject) AS reject"
                f" FROM {MART} WHERE {DAYS} GROUP BY time ORDER BY time",
            )
        )
        .with_panel(
            country_map(
                "Reported volume by source country",
                f"SELECT country, sum(messages) AS reported FROM {MART}"
                f" WHERE {DAYS} AND country != '' GROUP BY country ORDER BY reported DESC",
                "reported",
            )
        )
        .with_panel(
            rows(
                "Volume by source network (ASN)",
                "SELECT asn, as_org, sum(messages) AS reported, sum(dmarc_pass) AS passed,"
                " if(reported = 0, 0, passed / reported) AS pass_rate,"
                " uniqExact(source_ip) AS source_ips"
                f" FROM {MART} WHERE {DAYS} GROUP BY asn, as_org ORDER BY reported DESC LIMIT 50",
                width=12,
            )
        )
        .with_panel(
            rows(
                "Volume by sending source",
                "SELECT source_ip, any(reverse_dns) AS reverse_dns,"
                " any(sending_service) AS sending_service, any(country) AS country,"
                " sum(messages) AS reported,"
                " if(reported = 0, 0, sum(dmarc_pass) / reported) AS pass_rate"
                f" FROM {MART} WHERE {DAYS} GROUP BY source_ip ORDER BY reported DESC LIMIT 50",
                width=12,
            )
        )
        .with_panel(
            rows(
                "Top failing sources",
                "SELECT domain, source_ip, any(reverse_dns) AS reverse_dns, any(asn) AS asn,"
                " any(as_org) AS as_org, any(country) AS country, sum(dmarc_fail) AS failed,"
                " sum(messages) AS reported, sum(disposition_quarantine) AS quarantined,"
                " sum(disposition_reject) AS rejected"
                f" FROM {MART} WHERE {DAYS} AND dmarc_fail > 0"
                " GROUP BY domain, source_ip ORDER BY failed DESC LIMIT 25",
            )
        )
    )
