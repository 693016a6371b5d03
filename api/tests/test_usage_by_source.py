"""Usage by API key and SMTP credential, end to end on real services: team A sends through
the API's fast path (POST /v1/emails) with its bootstrap key and through the FastAPI route
(POST /v1/emails/batch) with a second key, revoked afterwards; each team has an SMTP
credential whose submission mapping is written the way mta.server writes it (the MTA's
own test checks the session's credential lands in the mapping). The mappings in Redis go
through the real correlation dataflow, the sink's inserter into the warehouse and dbt's
marts, then the breakdown route reads them.

Attacker side: a body field naming a key is refused and queues nothing, headers naming a
key or credential change nothing, team B never sees A's keys or credentials (nor A B's),
and A's key reading B's breakdown is 404.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.bootstrap import create_team_with_key
from api.tests.conftest import RecordingProducer
from dagster_project.project import DBT_PROJECT_DIR, dbt_executable
from kibamail.contracts import (
    MessageMapping,
    MessageStatus,
    MessageStatusEvent,
    OutboundMessage,
    Topic,
    serialize,
)
from kibamail.intake import submit
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings, settings_to_env
from pipelines.tests.fakes import source_message
from pipelines.tests.test_correlation_unit import TOPIC, by_topic, run
from pipelines.tests.test_sink_arrow_integration import insert

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

FORGED = "forged-key-id"


@dataclass
class Team:
    team_id: str
    key: str
    key_id: str
    domain: str
    credential: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def _team(client: TestClient, settings: Settings, name: str) -> Team:
    suffix = uuid.uuid4().hex[:8]
    domain = f"{name}{suffix}.example.com"
    team_id, key = create_team_with_key(
        settings, email=f"{name}-{suffix}@example.com", team_name=name, domain=domain
    )
    auth = {"Authorization": f"Bearer {key}"}
    keys = client.get(f"/v1/teams/{team_id}/api-keys", headers=auth).json()["data"]
    credential = client.post(f"/v1/teams/{team_id}/smtp-credentials", headers=auth).json()
    return Team(team_id, key, keys[0]["id"], domain, credential["username"])


def _email(t: Team, *recipients: str) -> dict[str, Any]:
    return {"from": f"hello@{t.domain}", "to": list(recipients), "subject": "s", "text": "t"}


def _smtp_submission(redis: Any, t: Team, recipient: str) -> str:
    """What mta.server.handle_DATA hands over for a session authenticated as t's credential."""
    message_id = f"{uuid.uuid4().hex}@{t.domain}"
    message = OutboundMessage(
        message_id=message_id,
        team_id=t.team_id,
        mail_from=f"hello@{t.domain}",
        recipients=[recipient],
        data=b"From: hello@x\r\n\r\nhi\r\n",
        source="smtp",
    )
    submit(redis, message, MessageMapping(team_id=t.team_id, smtp_credential_id=t.credential))
    return message_id


def _accepted(redis: Any, sent: dict[str, tuple[str, list[str]]]) -> list[bytes]:
    """Accepted status events of every sent message through the correlation dataflow, the
    mappings read from the real Redis the intakes wrote."""
    now = datetime.now(UTC)
    events = [
        MessageStatusEvent(
            team_id=team_id,
            message_id=message_id,
            status=MessageStatus.ACCEPTED,
            occurred_at=now,
            recipient=rcpt,
            recipient_domain=rcpt.rpartition("@")[2],
        )
        for message_id, (team_id, recipients) in sent.items()
        for rcpt in recipients
    ]
    out = run([source_message(TOPIC, serialize(e), i) for i, e in enumerate(events)], redis)
    rows = by_topic(out, Topic.CLICKHOUSE_MESSAGES)
    assert len(rows) == len(events), [m.value for m in out]
    return [orjson.dumps(row, option=orjson.OPT_UTC_Z) for row in rows]


@pytest.fixture(scope="module")
def world(
    api_settings: Settings, isolated_warehouse: Settings, redis_service: str, tmp_path_factory: Any
) -> Iterator[tuple[TestClient, Team, Team, str]]:
    from kibamail.clients import clickhouse_client

    settings = api_settings.model_copy(update={"clickhouse": isolated_warehouse.clickhouse})
    app = create_app(settings, producer=RecordingProducer(), run_scheduler=False)
    with TestClient(app) as client:
        redis = client.app.state.km.sync_redis  # type: ignore[attr-defined]
        a, b = _team(client, settings, "alpha"), _team(client, settings, "bravo")
        second = client.post(
            f"/v1/teams/{a.team_id}/api-keys", json={"name": "batch jobs"}, headers=a.auth
        ).json()
        sent: dict[str, tuple[str, list[str]]] = {}
        forged = {"X-Kibamail-Api-Key-Id": FORGED, "X-Kibamail-Smtp-Credential": b.credential}
        one = _email(a, "u1@example.org", "u2@example.org")
        one["headers"] = {"X-Kibamail-Api-Key-Id": FORGED}
        fast = client.post("/v1/emails", json=one, headers={**a.auth, **forged})
        assert fast.status_code == 200, fast.text
        sent[fast.json()["id"]] = (a.team_id, ["u1@example.org", "u2@example.org"])
        batch = client.post(
            "/v1/emails/batch",
            json=[_email(a, "u3@example.org")],
            headers={"Authorization": f"Bearer {second['key']}"},
        )
        assert batch.status_code == 200, batch.text
        sent[batch.json()["data"][0]["id"]] = (a.team_id, ["u3@example.org"])
        sent[_smtp_submission(redis, a, "u4@example.org")] = (a.team_id, ["u4@example.org"])
        own = client.post("/v1/emails", json=_email(b, "v1@example.org"), headers=b.auth)
        sent[own.json()["id"]] = (b.team_id, ["v1@example.org"])
        sent[_smtp_submission(redis, b, "v2@example.org")] = (b.team_id, ["v2@example.org"])
        revoked = client.delete(f"/v1/teams/{a.team_id}/api-keys/{second['id']}", headers=a.auth)
        assert revoked.status_code == 200
        insert(isolated_warehouse, clickhouse_client(settings), _accepted(redis, sent), True)
        work = tmp_path_factory.mktemp("dbt")
        result = subprocess.run(
            [dbt_executable(), "run", "--select", "+fct_usage_by_source_monthly",
             "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
             "--target-path", str(work / "target"), "--log-path", str(work / "logs")],
            env={**os.environ, **settings_to_env(settings)},
            capture_output=True, text=True, check=False, timeout=800,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-3000:]
        yield client, a, b, second["id"]


def _breakdown(client: TestClient, t: Team, auth: dict[str, str] | None = None) -> Any:
    return client.get(f"/v1/teams/{t.team_id}/usage/breakdown", headers=auth or t.auth)


def test_breakdown_by_api_key_and_smtp_credential(
    world: tuple[TestClient, Team, Team, str],
) -> None:
    client, a, _b, second_id = world
    split = _breakdown(client, a).json()
    assert split["by_api_key"] == [
        {"api_key_id": a.key_id, "name": "bootstrap", "prefix": split["by_api_key"][0]["prefix"],
         "status": "active", "recipients": 2},
        {"api_key_id": second_id, "name": "batch jobs", "prefix": split["by_api_key"][1]["prefix"],
         "status": "revoked", "recipients": 1},
    ]  # fmt: skip
    assert a.key.startswith(split["by_api_key"][0]["prefix"])
    assert split["by_smtp_credential"] == [
        {"credential_id": a.credential, "username": a.credential, "recipients": 1}
    ]
    assert split["unattributed_recipients"] == 0
    assert {(r["broadcast_id"], r["recipients"]) for r in split["by_broadcast"]} == {(None, 4)}


def test_forged_ids_are_refused_or_ignored(
    world: tuple[TestClient, Team, Team, str],
) -> None:
    """A body naming a key is 422 and queues nothing; the forged headers of the fixture's
    fast-path send left the mapping with the authenticating key (checked above: 2
    recipients under A's bootstrap key, none under FORGED or B's credential)."""
    client, a, b, _ = world
    redis = client.app.state.km.sync_redis  # type: ignore[attr-defined]
    before = redis.xlen(RedisKeys.team_submission_stream(a.team_id))
    body = {**_email(a, "x@example.org"), "api_key_id": FORGED}
    refused = client.post("/v1/emails", json=body, headers=a.auth)
    assert refused.status_code == 422
    body = {**_email(a, "x@example.org"), "smtp_credential_id": b.credential}
    assert client.post("/v1/emails", json=body, headers=a.auth).status_code == 422
    assert redis.xlen(RedisKeys.team_submission_stream(a.team_id)) == before
    split = _breakdown(client, a).json()
    ids = {r["api_key_id"] for r in split["by_api_key"]}
    assert FORGED not in ids
    assert b.credential not in {r["credential_id"] for r in split["by_smtp_credential"]}


def test_each_team_sees_only_its_own_sources(
    world: tuple[TestClient, Team, Team, str],
) -> None:
    client, a, b, second_id = world
    response = _breakdown(client, b)
    split = response.json()
    assert [(r["api_key_id"], r["recipients"]) for r in split["by_api_key"]] == [(b.key_id, 1)]
    assert [r["credential_id"] for r in split["by_smtp_credential"]] == [b.credential]
    for secret in (a.key_id, second_id, a.credential):
        assert secret not in response.text
    cross = _breakdown(client, b, auth=a.auth)
    assert cross.status_code == 404 and b.key_id not in cross.text
    assert b.credential not in cross.text


def test_key_names_come_only_from_the_teams_own_keys(
    world: tuple[TestClient, Team, Team, str],
) -> None:
    """A key whose row is gone is listed by id (no name); B's key id among A's rows (which
    the mart never produces) is named from A's keys only, so B's name and prefix stay out."""
    from api.services.usage_reads import _by_api_key

    client, a, b, _ = world
    state = client.app.state.km  # type: ignore[attr-defined]
    rows = [
        {"source_id": a.key_id, "accepted_recipients": 3},
        {"source_id": "gone0000000000000000000000000000", "accepted_recipients": 2},
        {"source_id": b.key_id, "accepted_recipients": 1},
    ]
    listed = _by_api_key(state, a.team_id, rows)
    assert [(r["api_key_id"], r["name"], r["status"]) for r in listed] == [
        (a.key_id, "bootstrap", "active"),
        ("gone0000000000000000000000000000", None, "deleted"),
        (b.key_id, None, "deleted"),
    ]
    assert all(r["prefix"] is None for r in listed[1:])
