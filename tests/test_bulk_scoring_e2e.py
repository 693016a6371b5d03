"""Newsletter-shaped mail sent as "transactional" over SMTP is paused; real transactional
mail is not — end to end through the MTA, the broker, the scoring dataflow and ClickHouse.

Processes: `kibamail mta` (submission listener + delivery to the in-process test
internet) and `kibamail pipelines` (scoring dataflow, ClickHouse sink), against the
session's real broker, Redis and chDB gateway. Team A submits password resets, receipts
and notifications; team B the same newsletter to five recipients per message, with
List-Unsubscribe. The MTA emits submission features, scoring sets B's pause flag, and
the MTA answers B's next submissions with the pause reply.
"""

from __future__ import annotations

import random
import re
import smtplib
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from local_stack.services import kibamail_spec
from local_stack.stack import Stack
from mta.credentials import create_smtp_credential
from mta.tests.helpers import with_policy, write_policy
from pipelines.tests.traffic import newsletter, recipient, transactional
from testing.testnet import DnsServer, SinkConfig, SinkServer, Zone

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SENDER = "no-reply@shop.example"
TRANSACTIONAL_MESSAGES = 60
MAX_NEWSLETTER_MESSAGES = 150
NEWSLETTER_RECIPIENTS = 5

TLS = ssl.create_default_context()
TLS.check_hostname = False
TLS.verify_mode = ssl.CERT_NONE


def wait_until(check: Callable[[], bool], timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()


@pytest.fixture
def testnet(test_settings: Settings) -> Iterator[SinkServer]:
    sink = SinkServer(port=test_settings.mta.delivery_port, config=SinkConfig(seed=5)).start()
    dns = DnsServer(port=test_settings.mta.dns_port, zone=Zone()).start()
    yield sink
    dns.stop()
    sink.stop()


@pytest.fixture
def mta_process(
    test_settings: Settings,
    test_stack: Stack,
    tmp_path: Path,
    redis_client: Any,
    kafka_service: str,
    testnet: SinkServer,
) -> Iterator[Settings]:
    policy = write_policy(tmp_path / "policies.toml", team_per_second=1000)
    settings = with_policy(test_settings, policy)
    port = settings.mta.metrics_port
    test_stack.start(kibamail_spec(settings, "mta-bulk-e2e", ["mta"], port, "/metrics"))
    yield settings
    test_stack.stop("mta-bulk-e2e")


@pytest.fixture
def pipelines_process(
    test_settings: Settings,
    test_stack: Stack,
    redis_client: Any,
    kafka_service: str,
    warehouse_service: Any,
) -> Iterator[None]:
    port = test_settings.pipelines.metrics_port
    spec = kibamail_spec(test_settings, "pipelines-bulk-e2e", ["pipelines"], port, "/metrics")
    test_stack.start(spec)
    yield
    test_stack.stop("pipelines-bulk-e2e")


def smtp_client(settings: Settings, team: str, redis: Any) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", settings.mta.submission_port, timeout=30)
    client.starttls(context=TLS)
    client.ehlo()
    redis.set(RedisKeys.domain_ready(team, "shop.example"), "1")
    client.login(*create_smtp_credential(redis, team))
    return client


def submit(client: smtplib.SMTP, recipients: list[str], data: bytes) -> tuple[int, str]:
    """The server's answer to one submission: 250, or the refusal's code and text."""
    try:
        client.sendmail(SENDER, recipients, data)
    except smtplib.SMTPRecipientsRefused as exc:
        code, text = next(iter(exc.recipients.values()))
        return code, text.decode(errors="replace")
    except smtplib.SMTPResponseException as exc:
        error: bytes | str = exc.smtp_error
        return exc.smtp_code, error.decode(errors="replace") if isinstance(error, bytes) else error
    return 250, ""


def submit_one(client: smtplib.SMTP, to: str, data: bytes) -> tuple[int, str]:
    """One single-recipient submission step by step, so the DATA reply (which names the
    platform's message id: "queued as <id>") is kept."""
    code, reply = client.mail(SENDER)
    if code == 250:
        code, reply = client.rcpt(to)
    if code == 250:
        code, reply = client.data(data)
    else:
        client.rset()
    return code, reply.decode(errors="replace")


def with_message_id(data: bytes, message_id: str) -> bytes:
    return f"Message-ID: <{message_id}>\r\n".encode() + data


def pause_rows(ch: Any, team: str) -> int:
    return int(
        ch.query(
            "SELECT count() FROM raw_team_pauses FINAL WHERE team_id = {t:String} AND paused",
            parameters={"t": team},
        ).result_rows[0][0]
    )


@pytest.mark.timeout(300)
def test_newsletter_over_smtp_is_paused_and_transactional_is_not(
    mta_process: Settings, pipelines_process: None, redis_client: Any, testnet: SinkServer
) -> None:
    from kibamail.clients import clickhouse_client

    tuning = mta_process.pipelines.tuning
    team_a, team_b = f"shop-{uuid.uuid4().hex[:8]}", f"blast-{uuid.uuid4().hex[:8]}"
    a_rng, b_rng = random.Random(11), random.Random(12)
    a_client = smtp_client(mta_process, team_a, redis_client)
    b_client = smtp_client(mta_process, team_b, redis_client)
    a_ids: list[str] = []  # the platform's ids, from the DATA replies
    a_codes: list[int] = []

    def send_transactional() -> None:
        data, to = transactional(a_rng)
        client_id = f"a-{len(a_codes)}-{uuid.uuid4().hex[:8]}@shop.example"
        code, reply = submit_one(a_client, to, with_message_id(data, client_id))
        a_codes.append(code)
        if queued := re.search(r"queued as (\S+)", reply):
            a_ids.append(queued.group(1))

    b_accepted = 0
    refusal: tuple[int, str] | None = None
    while b_accepted < MAX_NEWSLETTER_MESSAGES:
        if len(a_codes) < TRANSACTIONAL_MESSAGES:
            send_transactional()
        data, first = newsletter(b_rng)
        to = [first] + [recipient(b_rng) for _ in range(NEWSLETTER_RECIPIENTS - 1)]
        code, text = submit(b_client, to, data)
        if code != 250:
            refusal = (code, text)
            break
        b_accepted += 1
        time.sleep(0.1)  # a steady blast, not a burst the pipeline cannot see in time
    while len(a_codes) < TRANSACTIONAL_MESSAGES:
        send_transactional()

    # B: paused by scoring within a bounded number of messages, refused from then on.
    assert refusal is not None, f"{b_accepted} newsletter messages accepted, never paused"
    assert refusal[0] == 451 and "paused" in refusal[1], refusal
    data, first = newsletter(b_rng)
    assert submit(b_client, [first], data)[0] == 451
    flag = orjson.loads(redis_client.get(RedisKeys.team_paused(team_b)))
    assert flag["paused"] and flag["source"] == "scoring"
    assert flag["score"] >= tuning.scoring_pause_threshold
    # The verdict came from the messages in the window when it was taken: few of them.
    scored = int(re.search(r"; (\d+) messages in ", flag["reason"]).group(1))
    assert tuning.scoring_min_messages <= scored <= tuning.scoring_min_messages + 10

    # A: every submission accepted and delivered, scored, never paused.
    assert a_codes == [250] * TRANSACTIONAL_MESSAGES
    assert len(set(a_ids)) == TRANSACTIONAL_MESSAGES
    a_score_key = RedisKeys.reputation_throttle("bulk_score", team_a)
    assert wait_until(lambda: redis_client.get(a_score_key) is not None, 60)
    assert float(redis_client.get(a_score_key)) < tuning.scoring_pause_threshold
    assert wait_until(lambda: set(a_ids) <= set(testnet.delivered_counts()), 60)
    assert redis_client.exists(RedisKeys.team_paused(team_a)) == 0

    # The pause event reached ClickHouse, once; none for A.
    ch = clickhouse_client(mta_process)
    assert wait_until(lambda: pause_rows(ch, team_b) >= 1, 60)
    assert pause_rows(ch, team_b) == 1
    assert pause_rows(ch, team_a) == 0
    a_client.quit()
    b_client.quit()
