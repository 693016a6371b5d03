"""Generated DMARC aggregate reports for tests and ``bench/dmarc.py`` (deterministic by seed)."""

from __future__ import annotations

import gzip
import io
import random
import zipfile
from dataclasses import dataclass
from xml.sax.saxutils import escape

RESULTS = ("pass", "fail")
DISPOSITIONS = ("none", "quarantine", "reject")


@dataclass(slots=True)
class SampleReport:
    """A generated report and the truth the parser must reproduce."""

    name: str
    data: bytes
    record_count: int
    total_messages: int


def aggregate_xml(
    rng: random.Random,
    records: int,
    *,
    report_id: str = "r-1",
    domain: str = "example.com",
    rfc9990: bool = False,
    sloppy: bool = False,
) -> tuple[str, int]:
    """XML text of one aggregate report and its message total."""
    namespace = ' xmlns="urn:ietf:params:xml:ns:dmarc-2.0"' if rfc9990 else ""
    org = "AT&T Mail" if sloppy else "Example Receiver"
    org_text = org if sloppy else escape(org)
    disposition_case = str.upper if sloppy else str
    parts = [
        f'<?xml version="1.0" encoding="UTF-8"?>\n<feedback{namespace}>',
        "<version>1.0</version>" if rfc9990 else "",
        f"<report_metadata><org_name>{org_text}</org_name>"
        "<email>dmarc@receiver.example</email>"
        f"<report_id>{report_id}</report_id>"
        "<date_range><begin>1700000000</begin><end>1700086399</end></date_range>"
        + ("<generator>kibamail-samples 1.0</generator>" if rfc9990 else "")
        + "</report_metadata>",
        f"<policy_published><domain>{domain}</domain><adkim>r</adkim><aspf>r</aspf>"
        "<p>quarantine</p>"
        + (
            "<np>reject</np><testing>n</testing><discovery_method>treewalk</discovery_method>"
            if rfc9990
            else "<sp>none</sp><pct>100</pct>"
        )
        + "</policy_published>",
    ]
    total = 0
    for index in range(records):
        count = rng.randint(1, 5000)
        total += count
        dkim, spf = rng.choice(RESULTS), rng.choice(RESULTS)
        ip = f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{index % 250 + 1}"
        parts.append(
            f"<record><row><source_ip>{ip}</source_ip><count>{count}</count>"
            f"<policy_evaluated><disposition>{disposition_case(rng.choice(DISPOSITIONS))}"
            f"</disposition><dkim>{dkim}</dkim><spf>{spf}</spf></policy_evaluated></row>"
            f"<identifiers><header_from>{domain}</header_from></identifiers>"
            f"<auth_results><dkim><domain>{domain}</domain><selector>s{index % 3}</selector>"
            f"<result>{dkim}</result></dkim>"
            f"<spf><domain>bounce.{domain}</domain><result>{spf}</result></spf>"
            "</auth_results></record>"
        )
    parts.append("</feedback>\n")
    return "".join(parts), total


def zipped(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def generate(count: int, seed: int = 7) -> list[SampleReport]:
    """Mixed sizes (mostly small, a long tail up to 300 records) and formats (xml/gz/zip)."""
    rng = random.Random(seed)
    samples = []
    for index in range(count):
        roll = rng.random()
        records = rng.randint(1, 4) if roll < 0.7 else rng.randint(5, 40)
        if roll > 0.98:
            records = rng.randint(100, 300)
        xml, total = aggregate_xml(
            rng,
            records,
            report_id=f"bench-{index}",
            domain=f"d{index % 97}.example",
            rfc9990=index % 5 == 0,
        )
        data = xml.encode()
        name = f"receiver.example!d{index % 97}.example!{index}.xml"
        fmt = index % 3
        if fmt == 1:
            data, name = gzip.compress(data, mtime=0), name + ".gz"
        elif fmt == 2:
            data, name = zipped(name, data), name.removesuffix(".xml") + ".zip"
        samples.append(SampleReport(name, data, records, total))
    return samples
