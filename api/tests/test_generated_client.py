"""A Python client generated from docs/openapi.json (openapi-python-client, at test time,
into tmp_path) drives the API as a customer's code would: sign up, verify the address,
create a team, a domain, an API key, send an email, read its events, and handle a 4xx
through the typed error model. If the committed contract cannot express something, the
generated client cannot do it, and this test fails."""

from __future__ import annotations

import importlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.models import Domain, User
from api.openapi import SPEC_PATH
from api.services.domains import set_ready_flag
from api.services.email_verification import verification_token
from api.tests.conftest import RecordingProducer
from kibamail.contracts import ClickHouseTable
from kibamail.settings import Settings

pytestmark = pytest.mark.integration
PACKAGE = "kibamail_generated_client"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    out = tmp_path_factory.mktemp("client")
    config = out / "config.yaml"
    config.write_text(f"post_hooks: []\npackage_name_override: {PACKAGE}\n")
    tool = Path(sys.executable).parent / "openapi-python-client"
    command = [str(tool), "generate", "--path", str(SPEC_PATH), "--meta", "none"]
    command += ["--output-path", str(out / PACKAGE), "--config", str(config)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m.split(".")[0] == PACKAGE]:
            del sys.modules[name]


@pytest.fixture
def app_client(
    api_settings: Settings, redis_client: Any, warehouse_service: Any
) -> Iterator[TestClient]:
    app = create_app(api_settings, producer=RecordingProducer(), run_scheduler=False)
    with TestClient(app) as test_client:
        yield test_client


def _api(module: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.api.{module}")


class _ViaApp(httpx.BaseTransport):
    """Hands each request of a generated client to the test client that runs the app
    (one event loop, the app's lifespan), keeping the generated client's own headers."""

    def __init__(self, app_client: TestClient) -> None:
        self.app_client = app_client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer = self.app_client.request(
            request.method, str(request.url), headers=request.headers, content=request.read()
        )
        return httpx.Response(
            answer.status_code, headers=answer.headers, content=answer.content, request=request
        )


def _over_app(client: Any, app_client: TestClient, token: str | None) -> Any:
    """The generated client as built from the spec, with its HTTP going to the app."""
    _ = token  # an AuthenticatedClient sends its own `Authorization: Bearer <token>`
    client._httpx_args = {**client._httpx_args, "transport": _ViaApp(app_client)}
    return client


def _record_events(clickhouse: Any, database: str, team_id: str, message_id: str) -> None:
    """What the MTA and the pipelines write for a delivered message (they do not run
    here): its accepted and delivered events."""
    now = datetime.now(UTC).replace(tzinfo=None)
    columns = ["event_id", "event_version", "team_id", "occurred_at", "message_id", "status"]
    rows = [
        [uuid.uuid4().hex, 1, team_id, now + timedelta(seconds=i), message_id, status]
        for i, status in enumerate(("accepted", "delivered"))
    ]
    table = f"{database}.{ClickHouseTable.MESSAGE_EVENTS.value}"
    clickhouse.insert(table, rows, column_names=columns)


def test_generated_client_signs_up_sends_and_reads_events(
    generated: ModuleType,
    app_client: TestClient,
    api_settings: Settings,
    clickhouse: Any,
) -> None:
    models = importlib.import_module(f"{PACKAGE}.models")
    anonymous = _over_app(generated.Client(base_url="http://testserver"), app_client, None)
    email = f"gen-{uuid.uuid4().hex[:8]}@example.com"

    signed_up = _api("accounts.accounts_signup").sync(
        client=anonymous, body=models.SignupIn(email=email, password="long enough password")
    )
    assert not isinstance(signed_up, models.Error), signed_up

    session = _over_app(
        generated.AuthenticatedClient(base_url="http://testserver", token=signed_up["token"]),
        app_client,
        signed_up["token"],
    )
    state = app_client.app.state.km  # type: ignore[attr-defined]
    with state.sessions() as db:  # the link the verification email carries
        token = verification_token(state.signer, db.scalar(select(User).where(User.email == email)))
    verified = _api("accounts.accounts_verify_email").sync(
        client=anonymous, body=models.TokenIn(token=token)
    )
    assert verified["email_verified"] is True

    team = _api("teams.teams_new_team").sync(client=session, body=models.TeamIn(name="Generated"))
    assert not isinstance(team, models.Error), team
    team_id = team["id"]
    domain_name = f"gen{uuid.uuid4().hex[:8]}.example.com"
    domain = _api("domains.domains_add_domain").sync(
        team_id=team_id, client=session, body=models.DomainIn(name=domain_name)
    )
    assert domain["status"] == "pending"
    with state.sessions.begin() as db:  # DNS published and checked (as the API tests do)
        row = db.get(Domain, domain["id"])
        row.status = "verified"
        row.verified_at = datetime.now(UTC).replace(tzinfo=None)
        set_ready_flag(state.sync_redis, row, True)
    key = _api("teams.teams_new_key").sync(
        team_id=team_id,
        client=session,
        body=models.ApiKeyIn(name="app", scope=models.ApiKeyScope.SENDING),
    )
    sender = _over_app(
        generated.AuthenticatedClient(base_url="http://testserver", token=key["key"]),
        app_client,
        key["key"],
    )

    message = models.EmailIn.from_dict(
        {"from": f"app@{domain_name}", "to": ["reader@example.org"], "subject": "Hi", "text": "x"}
    )
    sent = _api("emails.emails_send_email").sync_detailed(
        client=sender, body=message, idempotency_key=uuid.uuid4().hex
    )
    assert sent.status_code == 200, sent.content
    message_id = sent.parsed["id"]
    assert sent.parsed["status"] == "queued"

    _record_events(clickhouse, api_settings.clickhouse.database, team_id, message_id)
    events = _api("activity.activity_message_events").sync(
        team_id=team_id, message_id=message_id, client=session
    )
    assert [e["status"] for e in events["data"]] == ["accepted", "delivered"]
    assert events["next_cursor"] is None

    # A 4xx in the typed error model: the sending-scope key may not create teams' keys,
    # and a domain that is not the team's is refused.
    refused = _api("teams.teams_new_key").sync_detailed(
        team_id=team_id, client=sender, body=models.ApiKeyIn(name="escalate")
    )
    assert refused.status_code == 403
    assert isinstance(refused.parsed, models.Error)
    assert refused.parsed.error.code == "forbidden"
    assert "cannot" in refused.parsed.error.message
    forged = models.EmailIn.from_dict(
        {"from": "ceo@not-ours.example", "to": ["x@example.org"], "subject": "s", "text": "t"}
    )
    not_ours = _api("emails.emails_send_email").sync_detailed(client=sender, body=forged)
    assert not_ours.status_code == 422
    assert isinstance(not_ours.parsed, models.Error)
    assert not_ours.parsed.error.code == "domain_not_verified"
