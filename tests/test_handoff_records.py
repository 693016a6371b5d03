"""Every path that hands mail to the MTA writes the same record, through kibamail.intake.

Six writers once built the submission stream entry and the message mapping each in its
own way; a field added in one place and not another would only show up as a delivery
worker or correlation failure in production. This runs each path for real (Redis, the
API app, the broadcast worker, the SMTP listener) and compares what it wrote, field by
field, and checks statically that no other module writes either key.
"""

from __future__ import annotations

import ast
import asyncio
import smtplib
import ssl
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from api import routers
from api.jobs.worker import build_worker
from api.services.sending import release_due
from api.tests import conftest as api_fixtures
from api.tests.conftest import SendingTeam
from kibamail.contracts import OutboundMessage
from kibamail.intake import MAPPING_TTL_SECONDS, message_id_of
from kibamail.redis_keys import RedisKeys, slot_group
from kibamail.settings import Settings
from kibamail.system_mail import send_system_email
from mta.config import QueueConfig
from mta.credentials import create_smtp_credential
from mta.queue import SubmissionQueue
from mta.tests.conftest import start_mta
from mta.tests.helpers import with_policy, write_policy
from testing.submissions import submission_entries

pytestmark = pytest.mark.integration

# The API's fixtures (the app on the harness's Redis, a team with a verified domain).
api_settings = api_fixtures.api_settings
producer = api_fixtures.producer
client = api_fixtures.client
team = api_fixtures.team

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION_PACKAGES = (
    "api",
    "mta",
    "pipelines",
    "kibamail",
    "deliverability",
    "dagster_project",
    "console",
)
INTAKE = ROOT / "kibamail" / "intake.py"

TLS = ssl.create_default_context()
TLS.check_hostname = False
TLS.verify_mode = ssl.CERT_NONE


def _email(team: SendingTeam, **extra: Any) -> dict[str, Any]:
    return {
        "from": f"Acme <hello@{team.domain}>",
        "to": ["bob@example.org"],
        "subject": "Receipt",
        "html": '<p>Thanks <a href="https://acme.test/x">x</a></p>',
        "text": "Thanks",
        "tags": ["receipt"],
        **extra,
    }


@pytest.fixture
def submission_listener(
    test_settings: Settings, redis_client: Any, kafka_service: str, tmp_path: Path
) -> Iterator[Settings]:
    """The MTA's SMTP listeners without delivery workers, so queued entries stay put."""
    from local_stack.stack import tcp_open

    settings = with_policy(test_settings, write_policy(tmp_path / "policies.toml"))
    _thread, stop = start_mta(settings, delivery=False)
    deadline = time.monotonic() + 10
    while not tcp_open(settings.mta.submission_port) and time.monotonic() < deadline:
        time.sleep(0.05)
    yield settings
    stop()


def _smtp_submit(settings: Settings, redis: Any, team_id: str) -> str:
    redis.set(RedisKeys.domain_ready(team_id, "sender.example"), "1")
    credential = create_smtp_credential(redis, team_id)
    data = (
        b"From: a@sender.example\r\nTo: r@example.org\r\nSubject: s\r\n"
        b"Message-ID: <client-chosen@sender.example>\r\n\r\nHello.\r\n"
    )
    with smtplib.SMTP("127.0.0.1", settings.mta.submission_port, timeout=15) as smtp:
        smtp.starttls(context=TLS)
        smtp.ehlo()
        smtp.login(*credential)
        smtp.mail("a@sender.example")
        smtp.rcpt("r@example.org")
        code, reply = smtp.data(data)
    assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[-1]


def _broadcast(client: TestClient, team: SendingTeam, settings: Settings) -> None:
    base = f"/v1/teams/{team.team_id}"
    lst = client.post(f"{base}/lists", json={"name": "L"}, headers=team.auth).json()["id"]
    csv = b"email,first_name\nc0@example.org,Ann\n"
    assert client.post(f"{base}/lists/{lst}/import", content=csv, headers=team.auth).is_success
    body = {
        "name": "Launch",
        "list_id": lst,
        "from": f"news@{team.domain}",
        "variants": [{"id": "a", "subject": "Hi {{ first_name }}", "html": "<p>A</p>"}],
    }
    made = client.post(f"{base}/broadcasts", json=body, headers=team.auth)
    assert made.status_code == 201, made.text
    url = f"{base}/broadcasts/{made.json()['id']}/launch"
    assert client.post(url, json={}, headers=team.auth).json()["status"] == "sending"
    worker = build_worker(settings, claim_idle_ms=60_000)
    while worker.run_once(block_ms=50):
        pass


async def _release_and_retry(redis_url: str, retried: OutboundMessage) -> None:
    """Scheduled release (api.services.sending) and a due retry (mta.queue)."""
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    try:
        assert await release_due(redis, now=time.time() + 7 * 24 * 3600) == 1
        queue = SubmissionQueue(redis, QueueConfig(), "handoff-test")
        pipe = redis.pipeline(transaction=True)
        queue.schedule(pipe, slot_group(retried.team_id), retried, due_at=0)
        await pipe.execute()
        assert await queue.move_due() == 1
    finally:
        await redis.aclose()


def _entries(redis: Any) -> dict[str, tuple[dict[bytes, bytes], dict[str, Any]]]:
    """message id -> (stream fields, decoded meta); one entry per message id."""
    entries: dict[str, tuple[dict[bytes, bytes], dict[str, Any]]] = {}
    for _entry_id, fields in submission_entries(redis):
        meta = orjson.loads(fields[b"meta"])
        entries.setdefault(meta["message_id"], (fields, meta))
    return entries


def test_every_handoff_path_writes_the_same_record(
    client: TestClient,
    team: SendingTeam,
    api_settings: Settings,
    redis_client: Any,
    redis_service: str,
    submission_listener: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fastapi_sends: list[str] = []
    original_send_now = routers.emails.send_now

    async def recording_send_now(*args: Any, **kwargs: Any) -> Any:
        fastapi_sends.append("fastapi")
        return await original_send_now(*args, **kwargs)

    monkeypatch.setattr(routers.emails, "send_now", recording_send_now)

    paths: dict[str, str] = {}
    first = client.post("/v1/emails", json=_email(team), headers=team.auth)
    assert first.status_code == 200, first.text
    paths["api send (FastAPI route, send_now)"] = first.json()["id"]
    second = client.post("/v1/emails", json=_email(team), headers=team.auth)
    assert second.status_code == 200, second.text
    assert fastapi_sends == ["fastapi"]  # the second took the fast path
    paths["api send (fast path, send_in_one_trip)"] = second.json()["id"]
    batch = client.post("/v1/emails/batch", json=[_email(team)], headers=team.auth)
    assert batch.status_code == 200, batch.text
    paths["api batch (submit_async)"] = batch.json()["data"][0]["id"]
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    scheduled = client.post("/v1/emails", json=_email(team, send_at=later), headers=team.auth)
    assert scheduled.json()["status"] == "scheduled", scheduled.text
    paths["api scheduled (release_due)"] = scheduled.json()["id"]

    _broadcast(client, team, api_settings)
    broadcast_ids = [
        meta["message_id"]
        for _f, meta in _entries(redis_client).values()
        if meta["source"] == "broadcast"
    ]
    assert len(broadcast_ids) == 1
    paths["broadcast hand-over"] = broadcast_ids[0]

    paths["smtp submission"] = _smtp_submit(
        submission_listener, redis_client, f"team-{uuid.uuid4().hex[:6]}"
    )
    system_id = send_system_email(
        redis_client, api_settings, to=["new@example.org"], subject="Welcome", text="Hi"
    )
    assert system_id is not None
    paths["platform mail (submit)"] = system_id

    fields, _meta = _entries(redis_client)[system_id]
    retried = OutboundMessage.from_stream_fields(fields).model_copy(update={"attempt": 1})
    asyncio.run(_release_and_retry(redis_service, retried))

    entries_by_id = _entries(redis_client)
    retry_entry = next(
        (f, m)
        for f, m in ((f, orjson.loads(f[b"meta"])) for _e, f in submission_entries(redis_client))
        if m["attempt"] == 1
    )

    shapes: dict[str, tuple[Any, ...]] = {}
    for path, message_id in paths.items():
        assert message_id in entries_by_id, f"{path}: no stream entry for {message_id}"
        fields, meta = entries_by_id[message_id]
        assert meta["message_id"] == message_id
        assert message_id_of(fields[b"data"]) == message_id, f"{path}: id header"
        key = RedisKeys.message_mapping(meta["team_id"], meta["message_id"])
        raw = redis_client.get(key)
        assert raw is not None, f"{path}: no mapping at {key}"
        mapping = orjson.loads(raw)
        assert mapping["team_id"] == meta["team_id"], path
        ttl = redis_client.ttl(key)
        assert 0 < ttl <= MAPPING_TTL_SECONDS, f"{path}: mapping TTL {ttl}"
        shapes[path] = (
            frozenset(fields),
            frozenset((k, type(v).__name__) for k, v in meta.items()),
            frozenset(mapping),
        )
    reference_path, reference = next(iter(shapes.items()))
    for path, shape in shapes.items():
        for part, (mine, theirs) in enumerate(zip(shape, reference, strict=True)):
            what = ("stream fields", "meta keys/types", "mapping keys")[part]
            assert mine == theirs, f"{path} vs {reference_path}: {what} {mine ^ theirs}"

    # The retry re-queue (no mapping: it was written at the first hand-over) matches too.
    retry_fields, retry_meta = retry_entry
    assert frozenset(retry_fields) == reference[0]
    assert frozenset((k, type(v).__name__) for k, v in retry_meta.items()) == reference[1]
    assert message_id_of(retry_fields[b"data"]) == retry_meta["message_id"] == system_id


def _production_sources() -> Iterator[Path]:
    for package in PRODUCTION_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).parts
            if "tests" in relative or ".venv" in relative or path == INTAKE:
                continue
            yield path


_WRITES = {"set", "setex", "psetex", "setnx", "getset", "mset", "msetnx", "hset", "append"}


_STREAM_MARKERS = ("SUBMISSION_STREAM", "submission_stream", "mta:submissions")


def _violations(path: Path) -> list[str]:
    source = path.read_text()
    tree = ast.parse(source)
    touches_stream = any(marker in source for marker in _STREAM_MARKERS)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            lua = node.value.upper().replace('"', "'")
            if "'XADD'" in lua and touches_stream:
                found.append(f"{path}:{node.lineno}: Lua XADD beside the submission stream")
            if "MSGMAP:" in lua and "REDIS.CALL" in lua:
                found.append(f"{path}:{node.lineno}: formats the mapping key itself")
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        name = node.func.attr.lower()
        first = ast.unparse(node.args[0]) if node.args else ""
        if name == "xadd" and any(marker in first for marker in _STREAM_MARKERS):
            found.append(f"{path}:{node.lineno}: XADD to the submission stream")
        if name in _WRITES and "message_mapping" in first:
            found.append(f"{path}:{node.lineno}: writes the message mapping")
    return found


def test_only_the_intake_writes_the_submission_stream_and_the_mapping() -> None:
    """A static net under the record test: direct XADDs to the stream and direct writes
    of the mapping key (Python calls or Lua literals) anywhere but kibamail/intake.py."""
    sources = list(_production_sources())
    assert len(sources) > 100  # the scan really covers the packages
    violations = [v for path in sources for v in _violations(path)]
    assert violations == []
    intake = INTAKE.read_text()
    assert "redis.call('XADD'" in intake and "pipe.xadd(" in intake


def test_api_clients_cannot_set_the_platform_id_header() -> None:
    """Bounces are correlated by X-Kibamail-Message-ID first: a client choosing it could
    aim another team's message (and suppression list) with its own bounces."""
    from pydantic import ValidationError

    from api.schemas import EmailIn

    email = {"from": "a@x.example", "to": ["b@example.org"], "subject": "s", "text": "t"}
    EmailIn.model_validate(email)
    with pytest.raises(ValidationError, match="set by Kibamail"):
        EmailIn.model_validate({**email, "headers": {"x-kibamail-message-id": "<v@x.example>"}})
