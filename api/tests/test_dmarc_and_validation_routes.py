"""DMARC upload and email validation, mounted in the API behind its authorization."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.tests.conftest import SendingTeam

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[2] / "deliverability" / "tests" / "fixtures"


def test_validation_needs_a_key_and_explains_its_verdict(
    client: TestClient, team: SendingTeam
) -> None:
    assert client.post("/v1/validate", json={"email": "a@b.com"}).status_code == 401
    resp = client.post("/v1/validate", json={"email": "not an address"}, headers=team.auth)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["result"] == "invalid"
    assert body["reasons"]


def test_dmarc_upload_stores_once_and_refuses_non_reports(
    client: TestClient, team: SendingTeam, warehouse_service: object
) -> None:
    report = (FIXTURES / "report-valid.xml").read_bytes()
    first = client.post("/v1/dmarc/reports", content=report, headers=team.auth)
    assert first.status_code == 201, first.text
    again = client.post("/v1/dmarc/reports", content=report, headers=team.auth)
    assert again.status_code == 200, again.text
    bad = client.post(
        "/v1/dmarc/reports",
        content=(FIXTURES / "report-invalid.xml").read_bytes(),
        headers=team.auth,
    )
    assert bad.status_code == 422
    assert "not a DMARC aggregate report" in bad.text
