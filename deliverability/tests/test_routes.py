"""The routers mounted on a FastAPI app, against the real warehouse and a loopback DNS server."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from deliverability.domain_checks import make_resolver
from deliverability.routes import MAX_BATCH, build_dmarc_router, build_validation_router
from testing.testnet import DnsServer, Zone

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent / "fixtures"
ZONE = "good.example. 60 IN MX 10 mx.good.example.\nnullmx.example. 60 IN MX 0 .\n"


@pytest.fixture
def api(dmarc_tables: Any) -> Iterator[TestClient]:
    clickhouse = dmarc_tables
    with DnsServer(zone=Zone.from_text(ZONE, catch_all=False)) as server:
        resolver = make_resolver(["127.0.0.1"], port=server.port, timeout=0.5, lifetime=1.0)
        app = FastAPI()
        app.include_router(build_validation_router(lambda: resolver))
        app.include_router(build_dmarc_router(lambda: clickhouse, lambda: "team-42"))
        with TestClient(app) as client:
            yield client


def _records(client: Any) -> int:
    return int(client.query("SELECT count() FROM raw_dmarc_records FINAL").result_rows[0][0])


def test_upload_raw_then_duplicate_then_invalid(api: TestClient, clickhouse: Any) -> None:
    body = (FIXTURES / "report-quarantine.xml").read_bytes()
    first = api.post("/v1/dmarc/reports", content=body, headers={"x-filename": "q.xml"})
    assert first.status_code == 201, first.text
    assert first.json()["stored"] == 1
    again = api.post("/v1/dmarc/reports", content=body)
    assert again.status_code == 200 and again.json()["duplicates"] == 1
    bad = api.post("/v1/dmarc/reports", content=(FIXTURES / "report-invalid.xml").read_bytes())
    assert bad.status_code == 422
    assert "not a DMARC aggregate report" in bad.json()["errors"][0]
    empty = api.post("/v1/dmarc/reports", content=b"")
    assert empty.status_code == 422
    assert _records(clickhouse) == 1
    team = clickhouse.query("SELECT DISTINCT team_id FROM raw_dmarc_records").result_rows
    assert team == [("team-42",)]


def test_multipart_upload_of_gzip(api: TestClient, clickhouse: Any) -> None:
    data = gzip.compress((FIXTURES / "report-reject.xml").read_bytes())
    response = api.post(
        "/v1/dmarc/reports", files={"file": ("report.xml.gz", data, "application/gzip")}
    )
    assert response.status_code == 201, response.text
    assert _records(clickhouse) == 1


def test_upload_of_utf16_report_stores_the_same_rows(api: TestClient, clickhouse: Any) -> None:
    xml = (FIXTURES / "report-spf-fail.xml").read_text().replace("UTF-8", "UTF-16")
    response = api.post("/v1/dmarc/reports", content=b"\xfe\xff" + xml.encode("utf-16-be"))
    assert response.status_code == 201, response.text
    row = clickhouse.query(
        "SELECT source_ip, message_count, spf_result FROM raw_dmarc_records FINAL"
    ).result_rows
    assert row == [("203.0.113.209", 2, "fail")]


def test_validate_one_and_batch(api: TestClient) -> None:
    one = api.post("/v1/validate", json={"email": "jane@gmial.com"})
    assert one.status_code == 200
    assert one.json()["suggestion"] == "jane@gmail.com"
    batch = api.post(
        "/v1/validate/batch",
        json={"emails": ["a@good.example", "a@nullmx.example", "info@good.example", "nope"]},
    )
    assert batch.status_code == 200
    body = batch.json()
    assert [r["result"] for r in body["results"]] == ["valid", "invalid", "risky", "invalid"]
    assert body["summary"] == {"valid": 1, "invalid": 2, "risky": 1}


def test_validate_rejects_bad_requests(api: TestClient) -> None:
    assert api.post("/v1/validate", json={}).status_code == 422
    assert api.post("/v1/validate", json={"email": ""}).status_code == 422
    too_many = {"emails": ["a@good.example"] * (MAX_BATCH + 1)}
    assert api.post("/v1/validate/batch", json=too_many).status_code == 422
