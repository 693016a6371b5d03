"""The daily DMARC digest a customer receives per domain (built by the Dagster job).

Reads the raw tables with FINAL (so re-ingested reports never double a number)
and keeps the content small: volumes, pass rates, the sources that fail, and
what receivers did with the failing mail.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from kibamail.contracts import ClickHouseTable

_RECORDS = ClickHouseTable.DMARC_RECORDS.value


def build_digest(client: Any, domain: str, day: date, top: int = 10) -> dict[str, Any]:
    """Totals and per-source breakdown of one domain's reports for one day."""
    params = {"domain": domain.lower(), "day": day}
    where = "domain = %(domain)s AND day = %(day)s"
    totals = client.query(
        f"SELECT sum(message_count), sumIf(message_count, dmarc_pass = 1),"
        f" sumIf(message_count, spf_aligned = 1), sumIf(message_count, dkim_aligned = 1),"
        f" uniqExact(report_key), uniqExact(org_name)"
        f" FROM {_RECORDS} FINAL WHERE {where}",
        parameters=params,
    ).result_rows[0]
    messages, passed, spf_ok, dkim_ok, reports, reporters = (int(v or 0) for v in totals)
    sources = client.query(
        f"SELECT source_ip, any(reverse_dns), any(sending_service), any(country),"
        f" sum(message_count) AS total, sumIf(message_count, dmarc_pass = 0) AS failed"
        f" FROM {_RECORDS} FINAL WHERE {where}"
        f" GROUP BY source_ip ORDER BY failed DESC, total DESC LIMIT %(top)s",
        parameters={**params, "top": top},
    ).result_rows
    dispositions = client.query(
        f"SELECT disposition, sum(message_count) FROM {_RECORDS} FINAL"
        f" WHERE {where} GROUP BY disposition ORDER BY disposition",
        parameters=params,
    ).result_rows
    return {
        "domain": domain.lower(),
        "day": day.isoformat(),
        "reports": reports,
        "reporters": reporters,
        "messages": messages,
        "dmarc_pass": passed,
        "dmarc_pass_rate": round(passed / messages, 4) if messages else None,
        "spf_aligned": spf_ok,
        "dkim_aligned": dkim_ok,
        "dispositions": {name: int(count) for name, count in dispositions},
        "sources": [
            {
                "source_ip": ip,
                "reverse_dns": rdns,
                "sending_service": service,
                "country": country,
                "messages": int(total),
                "failed": int(failed),
            }
            for ip, rdns, service, country, total, failed in sources
        ],
    }


def render_text(digest: dict[str, Any]) -> str:
    """Plain-text body of the digest email."""
    if not digest["messages"]:
        return f"No DMARC reports for {digest['domain']} on {digest['day']}."
    rate = digest["dmarc_pass_rate"] * 100
    lines = [
        f"DMARC digest for {digest['domain']} on {digest['day']}",
        f"{digest['messages']} messages in {digest['reports']} reports from "
        f"{digest['reporters']} receivers; {rate:.1f}% passed DMARC.",
        "Receiver actions: "
        + ", ".join(f"{k} {v}" for k, v in sorted(digest["dispositions"].items())),
        "",
        "Sources (failing first):",
    ]
    for source in digest["sources"]:
        name = source["sending_service"] or source["reverse_dns"] or "unknown sender"
        lines.append(
            f"  {source['source_ip']:<39} {name:<28} {source['messages']:>9} msgs"
            f" {source['failed']:>9} failed"
        )
    return "\n".join(lines)
