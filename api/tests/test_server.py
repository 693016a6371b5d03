"""`kibamail api` as a real process on loopback: migrate, serve, send, schedule, cancel."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from api.bootstrap import create_team_with_key
from kibamail.settings import Settings
from local_stack.services import kibamail_spec
from local_stack.stack import Stack
from testing.submissions import submission_entries

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api_server(api_settings: Settings, kafka_service: str, test_stack: Stack) -> Iterator[str]:
    spec = kibamail_spec(api_settings, "api", ["api"], api_settings.api.port, "/healthz")
    test_stack.start(spec)
    yield f"http://127.0.0.1:{api_settings.api.port}"
    test_stack.stop("api")


def test_served_api_accepts_schedules_and_cancels(
    api_server: str, api_settings: Settings, redis_client: Any
) -> None:
    domain = f"s{uuid.uuid4().hex[:8]}.example.com"
    team_id, key = create_team_with_key(
        api_settings,
        email=f"srv-{uuid.uuid4().hex[:8]}@example.com",
        team_name="srv",
        domain=domain,
    )
    auth = {"Authorization": f"Bearer {key}"}
    body = {"from": f"a@{domain}", "to": "b@example.org", "subject": "s", "text": "t"}
    with httpx.Client(base_url=api_server, timeout=10) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        sent = http.post("/v1/emails", json=body, headers=auth)
        assert sent.status_code == 200 and sent.json()["status"] == "queued"
        soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        scheduled = http.post("/v1/emails", json={**body, "send_at": soon}, headers=auth).json()
        cancelled = http.post("/v1/emails", json={**body, "send_at": later}, headers=auth).json()
        assert scheduled["status"] == cancelled["status"] == "scheduled"
        resp = http.post(f"/v1/emails/{cancelled['id']}/cancel", headers=auth)
        assert resp.status_code == 200
        assert http.post(f"/v1/emails/{cancelled['id']}/cancel", headers=auth).status_code == 404
        deadline = time.monotonic() + 15
        ids: list[str] = []
        while time.monotonic() < deadline:
            ids = [f[b"meta"].decode() for _, f in submission_entries(redis_client)]
            if len(ids) >= 2:
                break
            time.sleep(0.2)
        assert len(ids) == 2
        assert any(scheduled["id"] in meta for meta in ids)
        assert not any(cancelled["id"] in meta for meta in ids)
        assert team_id in ids[0]
        assert http.get("/docs").status_code == 200
        scrape = {"Authorization": f"Bearer {api_settings.api.metrics_token}"}
        assert "kibamail_api_requests_total" in http.get("/metrics", headers=scrape).text
