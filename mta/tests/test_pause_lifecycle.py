"""A sending pause's life cycle (kibamail.team_pauses): evidence, lift, confirm, review,
audit, the `team.unpaused` event and the scoring-window reset, and end to end over SMTP: a
"transactional" newsletter burst pauses the team (451), an operator lifts the pause, the
next message is accepted and the old burst does not pause the team again.
"""

from __future__ import annotations

import random
import smtplib
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from kibamail import team_pauses
from kibamail.contracts import SubmissionFeatures, TeamPauseEvent, Topic, deserialize
from kibamail.redis_keys import RedisKeys, slot_group
from kibamail.settings import PipelineTuning, Settings
from local_stack.services import kibamail_spec
from local_stack.stack import Stack
from mta.credentials import create_smtp_credential
from mta.tests.helpers import with_policy, write_policy
from pipelines.scoring import ScoringLogic, Verdict
from pipelines.tests.traffic import newsletter, recipient, transactional
from testing.testnet import DnsServer, SinkConfig, SinkServer, Zone

REASON = (
    "bulk score 0.93 (threshold 0.70): of the last 33 messages 100% carry List-Unsubscribe "
    "or marketing markers and 97% have near-identical bodies; 33 messages in 15 min, 3.3x "
    "the team's baseline, to 18 recipient domains"
)


def paused_team(redis: Any) -> str:
    team = f"pz-{uuid.uuid4().hex[:8]}"
    flag = {"event_id": "e1", "team_id": team, "occurred_at": "2026-01-01T00:00:00Z",
            "paused": True, "score": 0.93, "reason": REASON, "source": "scoring"}  # fmt: skip
    redis.set(RedisKeys.team_paused(team), orjson.dumps(flag))
    redis.set(RedisKeys.reputation_throttle("bulk_score", team), "0.93")
    pipe = redis.pipeline(transaction=True)
    team_pauses.queue_sample_subject(pipe, team, b"Subject: Big =?utf-8?q?sale?=\r\n\r\nhi")
    team_pauses.queue_sample_subject(pipe, team, b"Subject: Spring\r\n  deals\r\n\r\nbody")
    pipe.execute()
    return team


def outbox_events(redis: Any, team: str) -> list[TeamPauseEvent]:
    found = []
    # The lift's MULTI writes it to the team's group outbox (the MTA's publisher drains it).
    for _id, fields in redis.xrange(RedisKeys.event_outbox(slot_group(team))):
        if fields[b"topic"] == Topic.TEAM_PAUSES.value.encode():
            event = deserialize(TeamPauseEvent, fields[b"value"])
            if event.team_id == team:
                found.append(event)
    return found


@pytest.mark.integration
def test_evidence_lift_confirm_review_and_audit(redis_client: Any) -> None:
    team = paused_team(redis_client)
    record = team_pauses.read_pause(redis_client, team)
    assert record is not None and record.state == "paused" and record.score == 0.93
    assert record.components["marketing_share"] == 1.0
    assert record.components["window_messages"] == 33
    assert record.sample_subjects == ["Spring deals", "Big =?utf-8?q?sale?="]
    assert team in {r.team_id for r in team_pauses.list_pauses(redis_client)}

    with pytest.raises(team_pauses.PauseError, match="reason is required"):
        team_pauses.lift(redis_client, team, operator="ops", reason=" ")
    assert redis_client.exists(RedisKeys.team_paused(team)) == 1  # nothing changed

    reviewed = team_pauses.request_review(redis_client, team, requested_by="u1", note="fixed")
    assert reviewed.review is not None and reviewed.review["by"] == "u1"
    with pytest.raises(team_pauses.PauseError, match="already requested"):
        team_pauses.request_review(redis_client, team, requested_by="u1", note="again")
    confirmed = team_pauses.confirm(redis_client, team, operator="ops", reason="real newsletter")
    assert confirmed.state == "confirmed"
    flag = orjson.loads(redis_client.get(RedisKeys.team_paused(team)))
    assert flag["reason"] == REASON  # the MTA keeps answering with the verdict's reason

    event = team_pauses.lift(redis_client, team, operator="ops", reason="customer fixed it")
    assert redis_client.exists(RedisKeys.team_paused(team)) == 0
    assert redis_client.exists(RedisKeys.reputation_throttle("bulk_score", team)) == 0
    assert team_pauses.scoring_reset_at(redis_client, team) == pytest.approx(time.time(), abs=60)
    assert outbox_events(redis_client, team) == [event]
    assert not event.paused and event.source == "api" and "customer fixed it" in event.reason
    actions = [e["action"] for e in team_pauses.audit_log(redis_client, team)]
    assert actions == ["lift", "confirm", "review_requested"]
    with pytest.raises(team_pauses.PauseError, match="not paused"):
        team_pauses.lift(redis_client, team, operator="ops", reason="twice")
    assert len(outbox_events(redis_client, team)) == 1


def features(team: str, at: datetime, n: int, bulk: bool) -> SubmissionFeatures:
    return SubmissionFeatures(
        event_id=f"f{n}-{bulk}", team_id=team, occurred_at=at, message_id=f"m{n}",
        recipient_count=5 if bulk else 1,
        recipient_domains=[f"d{n % 20}.example"] if bulk else ["a.example"],
        body_simhash=0x1234_5678_9ABC_DEF0 if bulk else n * 0x9E37_79B9_7F4A_7C15 % 2**63,
        has_list_unsubscribe=bulk, marketing_markers=["unsubscribe", "view_online"] if bulk else [],
    )  # fmt: skip


@pytest.mark.unit
def test_scoring_window_is_reset_by_a_lift() -> None:
    tuning = PipelineTuning()
    start = datetime(2026, 5, 1, 12, tzinfo=UTC)
    burst = [features("t", start + timedelta(seconds=i), i, True) for i in range(40)]
    reset = {"t": 0.0}
    logic = ScoringLogic(tuning, None, lambda team: reset[team])
    out, _ = logic.on_batch(burst)
    assert any(isinstance(v, Verdict) for v in out)
    lifted_at = start + timedelta(seconds=60)
    reset["t"] = lifted_at.timestamp()
    late = [features("t", start + timedelta(seconds=41 + i), 41 + i, True) for i in range(5)]
    after = [features("t", lifted_at + timedelta(seconds=i), 100 + i, False) for i in range(40)]
    out, _ = logic.on_batch(late + after)  # the burst's stragglers arrive after the lift
    assert not any(isinstance(v, Verdict) for v in out)
    assert out[-1].score < tuning.scoring_pause_threshold  # scored again, on new mail only
    assert len(logic.snapshot().entries) == 40


# --- end to end over SMTP ---------------------------------------------------------------

TLS = ssl.create_default_context()
TLS.check_hostname = False
TLS.verify_mode = ssl.CERT_NONE
SENDER = "no-reply@shop.example"


def wait_until(check: Callable[[], bool], timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()


@pytest.fixture
def stack_processes(
    test_settings: Settings,
    test_stack: Stack,
    tmp_path: Path,
    redis_client: Any,
    kafka_service: str,
    warehouse_service: Any,
) -> Iterator[Settings]:
    sink = SinkServer(port=test_settings.mta.delivery_port, config=SinkConfig(seed=7)).start()
    dns = DnsServer(port=test_settings.mta.dns_port, zone=Zone()).start()
    settings = with_policy(test_settings, write_policy(tmp_path / "p.toml", team_per_second=1000))
    mta = kibamail_spec(settings, "mta-pauses", ["mta"], settings.mta.metrics_port, "/metrics")
    port = settings.pipelines.metrics_port
    pipelines = kibamail_spec(settings, "pipelines-pauses", ["pipelines"], port, "/metrics")
    test_stack.start(mta)
    test_stack.start(pipelines)
    try:
        yield settings
    finally:
        test_stack.stop("pipelines-pauses")
        test_stack.stop("mta-pauses")
        dns.stop()
        sink.stop()


def submit(client: smtplib.SMTP, to: list[str], data: bytes) -> tuple[int, str]:
    try:
        client.sendmail(SENDER, to, data)
    except smtplib.SMTPRecipientsRefused as exc:
        code, text = next(iter(exc.recipients.values()))
        return code, text.decode(errors="replace")
    except smtplib.SMTPResponseException as exc:
        error = exc.smtp_error
        return exc.smtp_code, error.decode(errors="replace") if isinstance(error, bytes) else error
    return 250, ""


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_burst_pauses_operator_lifts_and_the_burst_does_not_pause_again(
    stack_processes: Settings, redis_client: Any
) -> None:
    from kibamail.clients import clickhouse_client

    settings = stack_processes
    tuning = settings.pipelines.tuning
    team = f"burst-{uuid.uuid4().hex[:8]}"
    client = smtplib.SMTP("127.0.0.1", settings.mta.submission_port, timeout=30)
    client.starttls(context=TLS)
    client.ehlo()
    redis_client.set(RedisKeys.domain_ready(team, "shop.example"), "1")
    client.login(*create_smtp_credential(redis_client, team))
    rng = random.Random(21)
    refusal = None
    for _ in range(150):
        data, first = newsletter(rng)
        code, text = submit(client, [first] + [recipient(rng) for _ in range(4)], data)
        if code != 250:
            refusal = (code, text)
            break
        time.sleep(0.1)
    assert refusal is not None and refusal[0] == 451 and "paused" in refusal[1], refusal
    record = team_pauses.read_pause(redis_client, team)
    assert record is not None and record.components["marketing_share"] > 0.5
    assert record.sample_subjects  # the newsletter's subjects, recorded by the MTA

    event = team_pauses.lift(redis_client, team, operator="ops", reason="customer moved it")
    data, to = transactional(rng)
    assert submit(client, [to], data) == (250, "")  # the next message is accepted
    codes = []
    for _ in range(40):  # a steady stream, longer than the dataflow's reset cache (1 s)
        data, to = transactional(rng)
        codes.append(submit(client, [to], data)[0])
        time.sleep(0.1)
    assert codes == [250] * 40
    # Scored again on the new mail only (a fresh window, no cool-down), below the threshold.
    score_key = RedisKeys.reputation_throttle("bulk_score", team)
    assert wait_until(lambda: redis_client.get(score_key) is not None, 60)
    assert float(redis_client.get(score_key)) < tuning.scoring_pause_threshold
    assert redis_client.exists(RedisKeys.team_paused(team)) == 0
    client.quit()

    ch: Any = clickhouse_client(settings)

    def unpaused_rows() -> int:
        sql = (
            "SELECT count() FROM raw_team_pauses FINAL WHERE team_id = {t:String} "
            "AND NOT paused AND event_id = {e:String}"
        )
        result = ch.query(sql, parameters={"t": team, "e": event.event_id})
        return int(result.result_rows[0][0])

    # The running MTA's outbox publisher drains the team's group outbox to Kafka.
    assert wait_until(lambda: unpaused_rows() == 1, 90)
