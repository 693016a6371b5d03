"""A report wrapped in a stray, never-closed root element (``<xs:schema ...>`` before
``<feedback>``, seen in the wild) is recovered with a warning; hostile XML still is not."""

from __future__ import annotations

import random

import pytest

from deliverability.models import AggregateReport
from deliverability.parser import parse_bytes
from deliverability.samples import aggregate_xml

pytestmark = pytest.mark.unit

XML, TOTAL = aggregate_xml(random.Random(21), 3, report_id="stray")
WRAPPER = '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" elementFormDefault="qualified">\n'


def _wrapped(xml: str, wrapper: str = WRAPPER) -> bytes:
    head, _, rest = xml.partition("\n")  # keep the XML declaration first
    return f"{head}\n{wrapper}{rest}".encode()


def test_stray_schema_root_is_recovered_with_a_warning() -> None:
    outcome = parse_bytes(_wrapped(XML), "stray.xml")
    assert outcome.errors == []
    [report] = outcome.reports
    assert isinstance(report, AggregateReport)
    assert report.total_messages == TOTAL
    assert report.report_metadata["report_id"] == "stray"
    assert any("stray unclosed root element <xs:schema>" in w for w in report.warnings)


def test_stray_root_without_declaration_is_recovered() -> None:
    xml = XML.partition("\n")[2]
    outcome = parse_bytes(WRAPPER.encode() + xml.encode(), "bare.xml")
    assert outcome.errors == []
    [report] = outcome.reports
    assert isinstance(report, AggregateReport) and report.total_messages == TOTAL
    assert report.warnings


def test_a_clean_report_gets_no_warning() -> None:
    [report] = parse_bytes(XML.encode(), "clean.xml").reports
    assert isinstance(report, AggregateReport) and report.warnings == []


def test_a_closed_wrapper_is_not_stripped() -> None:
    """A well-formed document whose root is not <feedback> is still not a report."""
    data = _wrapped(XML, "<other>\n") + b"</other>"
    outcome = parse_bytes(data, "other.xml")
    assert outcome.reports == []
    assert outcome.errors and "not a DMARC aggregate report" in outcome.errors[0]


@pytest.mark.parametrize(
    "payload",
    [
        b'<?xml version="1.0"?>\n<xs:schema xmlns:xs="x">\n<!DOCTYPE feedback '
        b'[<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n<feedback><report_metadata>'
        b"<org_name>&xxe;</org_name></report_metadata></feedback>",
        b'<xs:schema xmlns:xs="x"><!DOCTYPE lolz [<!ENTITY lol "lol">]><feedback>&lol;</feedback>',
    ],
)
def test_hostile_xml_behind_a_stray_root_is_still_refused(payload: bytes) -> None:
    outcome = parse_bytes(payload, "hostile.xml")
    assert outcome.reports == []
    assert len(outcome.errors) == 1
    assert "DOCTYPE/ENTITY declarations are not allowed" in outcome.errors[0]
