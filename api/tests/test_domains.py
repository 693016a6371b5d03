"""Domains: DKIM keys, the records to publish, verification over real DNS on loopback."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import dkim
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.db import utcnow
from api.domains import recheck_due_domains
from api.models import Domain
from api.tests.conftest import RecordingProducer, signup
from api.tests.dns_fixture import ZoneResolver, start_dns
from infra.stack import free_port
from kibamail.settings import Settings
from pipelines.contracts import RedisKeys

pytestmark = pytest.mark.integration


@pytest.fixture
def zone(api_settings: Settings, redis_client: Any) -> Iterator[tuple[ZoneResolver, TestClient]]:
    """A loopback DNS server on its own port and an app whose resolver points at it."""
    port = free_port()
    resolver, server = start_dns(port)
    settings = api_settings.model_copy(
        update={"mta": api_settings.mta.model_copy(update={"dns_port": port})}
    )
    app = create_app(settings, producer=RecordingProducer(), run_scheduler=False)
    with TestClient(app) as client:
        yield resolver, client
    server.stop()


def test_add_domain_publish_records_and_verify(
    zone: tuple[ZoneResolver, TestClient], redis_client: Any
) -> None:
    resolver, client = zone
    auth = signup(client)
    team = client.post("/v1/teams", json={"name": "D"}, headers=auth).json()["id"]
    base = f"/v1/teams/{team}/domains"
    assert client.post(base, json={"name": "not a domain"}, headers=auth).status_code == 422
    domain = client.post(base, json={"name": "Mail.Acme-Verify.test"}, headers=auth).json()
    assert domain["name"] == "mail.acme-verify.test" and domain["status"] == "pending"
    records = {r["record"]: r for r in domain["records"]}
    assert set(records) == {"spf", "dkim_rsa", "dkim_ed25519", "dmarc", "return_path", "tracking"}
    assert records["dkim_ed25519"]["value"].startswith("v=DKIM1; k=ed25519; p=")
    rsa_public = base64.b64decode(records["dkim_rsa"]["value"].split("p=")[1])
    assert len(rsa_public) > 256  # 2048-bit SubjectPublicKeyInfo

    checked = client.post(f"{base}/{domain['id']}/verify", headers=auth).json()
    assert checked["status"] == "pending"
    assert {r["status"] for r in checked["records"]} == {"missing"}
    assert redis_client.get(RedisKeys.domain_ready("mail.acme-verify.test")) is None

    for key in ("spf", "dkim_rsa", "dmarc"):
        resolver.add(records[key]["name"], records[key]["type"], records[key]["value"])
    resolver.add(records["return_path"]["name"], "CNAME", "elsewhere.example.")
    verified = client.post(f"{base}/{domain['id']}/verify", headers=auth).json()
    status = {r["record"]: r["status"] for r in verified["records"]}
    assert verified["status"] == "verified"
    assert status == {
        "spf": "verified",
        "dkim_rsa": "verified",
        "dmarc": "verified",
        "dkim_ed25519": "missing",
        "return_path": "mismatch",
        "tracking": "missing",
    }
    assert redis_client.get(RedisKeys.domain_ready("mail.acme-verify.test")) == b"1"
    key = redis_client.hgetall(RedisKeys.dkim_key("mail.acme-verify.test"))
    assert key[b"algorithm"] == b"rsa-sha256"
    message = b"From: a@mail.acme-verify.test\r\nTo: b@x.com\r\nSubject: s\r\n\r\nbody\r\n"
    signed = dkim.sign(message, key[b"selector"], b"mail.acme-verify.test", key[b"private_key"])
    txt = records["dkim_rsa"]["value"].encode()
    assert dkim.verify(signed + message, dnsfunc=lambda name, timeout=5: txt)

    # The periodic re-check notices a record that disappeared and clears the ready flag.
    state = client.app.state.km  # type: ignore[attr-defined]
    resolver.records.pop(("_dmarc.mail.acme-verify.test", "TXT"))
    with state.sessions.begin() as db:
        db.get(Domain, domain["id"]).last_checked_at = utcnow() - timedelta(days=1)
    assert recheck_due_domains(state.sessions, state.settings, redis_client) >= 1
    assert client.get(f"{base}/{domain['id']}", headers=auth).json()["status"] == "pending"
    assert redis_client.get(RedisKeys.domain_ready("mail.acme-verify.test")) is None

    again = client.post(base, json={"name": "mail.acme-verify.test"}, headers=auth)
    assert again.status_code == 409
    assert client.delete(f"{base}/{domain['id']}", headers=auth).status_code == 200
    assert redis_client.get(RedisKeys.domain_ready("mail.acme-verify.test")) is None
    assert not redis_client.exists(RedisKeys.dkim_key("mail.acme-verify.test"))
