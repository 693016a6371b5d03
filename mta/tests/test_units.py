"""Pure units: bounce classification on real provider texts, config validation, parsers."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from kibamail.contracts import BounceClass, MessageStatus
from mta.bounces import classify, enhanced_code
from mta.config import ConfigError, QueueConfig, WarmupConfig, load_config
from mta.features import simhash, submission_features
from mta.inbound import parse_report
from mta.policies import PolicyChain, provider_group
from mta.queue import backoff_seconds
from mta.server import check_message, ensure_message_id
from testing.testnet.provider_texts import ANSWERS

pytestmark = pytest.mark.unit

SHIPPED = Path(__file__).resolve().parents[1] / "config" / "policies.toml"


@pytest.mark.parametrize("answer", ANSWERS, ids=lambda a: f"{a.provider}-{a.code}-{a.enhanced}")
def test_bounce_classification_of_real_provider_answers(answer: object) -> None:
    a = answer
    assert classify(a.code, a.enhanced, a.text).value == a.bounce_class  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("code", "text", "expected"),
    [
        (250, "2.0.0 OK", BounceClass.NONE),
        (550, "5.1.1 <x@y>: Recipient address rejected: User unknown", BounceClass.HARD),
        (450, "4.1.1 mailbox unavailable (try later)", BounceClass.SOFT),  # 4xx never hard
        (552, "5.2.2 Mailbox full", BounceClass.QUOTA),
        (
            554,
            "5.7.1 Service unavailable; client host blocked using zen.spamhaus.org",
            BounceClass.BLOCK,
        ),
        (
            550,
            "5.7.26 Unauthenticated email from example.com is not accepted due to DMARC policy",
            BounceClass.POLICY,
        ),
        (421, "4.7.0 Try again later, closing connection.", BounceClass.SOFT),
        # An unknown 5xx is not "user unknown" (issue 13): retried, never suppressed.
        (550, "something nobody wrote down", BounceClass.SOFT),
        (503, "Error: send HELO first", BounceClass.POLICY),  # our protocol error
        (555, "5.5.4 MAIL FROM parameters not recognized", BounceClass.POLICY),
    ],
)
def test_bounce_classification_rules(code: int, text: str, expected: BounceClass) -> None:
    assert classify(code, enhanced_code(text), text) == expected


def test_shipped_policy_file_is_valid() -> None:
    config = load_config(SHIPPED)
    chain = PolicyChain(config)
    assert chain.names("submission") == [
        "authenticated",
        "sender_authorized",
        "team_paused",
        "bulk_gate",
        "rate_limit",
    ]
    assert chain.names("delivery") == [
        "sender_authorized",
        "team_paused",
        "suppression",
        "domain_ready",
        "pool_choice",
        "reputation_throttle",
        "warmup",
    ]
    assert provider_group(config, "gmail.com") == "google"
    assert (
        provider_group(config, "corp.example", "corp-example.mail.protection.outlook.com")
        == "microsoft"
    )
    assert provider_group(config, "example.org", "mx.example.org") == "default"


def test_config_refuses_shared_pool_ips_unknown_policies_and_bad_params(tmp_path: Path) -> None:
    bad = tmp_path / "p.toml"
    bad.write_text(
        '[pools.a]\nkind = "transactional"\nsource_ips = ["10.0.0.1"]\n'
        '[pools.b]\nkind = "marketing"\nsource_ips = ["10.0.0.1"]\n'
    )
    with pytest.raises(ConfigError, match="share IPs"):
        load_config(bad)
    bad.write_text('[[policies]]\nname = "no_such_policy"\n')
    with pytest.raises(ConfigError, match="unknown policy"):
        PolicyChain(load_config(bad))
    bad.write_text('[[policies]]\nname = "rate_limit"\nper_second = -1\nburst = 1\nper_day = 1\n')
    with pytest.raises(ConfigError, match="per_second"):
        PolicyChain(load_config(bad))
    bad.write_text("[queue]\nretry_base_seconds = 'soon'\n")
    with pytest.raises(ConfigError, match=r"queue\.retry_base_seconds"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


def test_warmup_schedule_caps_by_day() -> None:
    warmup = WarmupConfig(
        schedule=[(1, 200), (3, 1000), (10, 50000)], ip_start_dates={"10.0.0.9": date(2026, 11, 1)}
    )
    assert warmup.daily_cap("10.0.0.9", date(2026, 11, 1)) == 200
    assert warmup.daily_cap("10.0.0.9", date(2026, 11, 2)) == 200
    assert warmup.daily_cap("10.0.0.9", date(2026, 11, 5)) == 1000
    assert warmup.daily_cap("10.0.0.9", date(2026, 11, 10)) == 50000
    assert warmup.daily_cap("10.0.0.9", date(2026, 11, 11)) is None  # warmed up
    assert warmup.daily_cap("10.0.0.8", date(2026, 11, 1)) is None  # not under warm-up


def test_backoff_grows_and_is_capped() -> None:
    config = QueueConfig(retry_base_seconds=60, retry_max_seconds=600)
    first, third, tenth = (backoff_seconds(config, n) for n in (1, 3, 10))
    assert 54 <= first <= 66 and 216 <= third <= 264 and 540 <= tenth <= 660


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"From: a@x.example\nSubject: s\n\nbody\n", "Bare LF"),
        (b"From: a@x.example\r\nSubject: s\r\nbody without separator\r\n", "separator"),
        (b"From: a@x.example\r\nBcc victim@example.org\r\n\r\nx\r\n", "Malformed header line"),
        (b"From: a@x.example\r\nFrom: b@x.example\r\n\r\nx\r\n", "exactly one From"),
        (b" folded: first\r\nFrom: a@x.example\r\n\r\nx\r\n", "Malformed header section"),
    ],
)
def test_check_message_refuses_malformed_mail(data: bytes, fragment: str) -> None:
    assert fragment in check_message(data)


def test_check_message_accepts_good_mail_and_message_id_is_canonical() -> None:
    data = (
        b"From: a@x.example\r\nSubject: s\r\n\tfolded\r\nMessage-ID: <abc@x.example>\r\n\r\nhi\r\n"
    )
    assert check_message(data) == ""
    # The client's Message-ID is kept; the platform id rides beside it.
    message_id, stamped = ensure_message_id(data, "x.example")
    assert message_id != "abc@x.example" and message_id.endswith("@x.example")
    assert stamped == f"X-Kibamail-Message-ID: <{message_id}>\r\n".encode() + data
    no_id = b"From: a@x.example\r\n\r\nhi\r\n"
    message_id, added = ensure_message_id(no_id, "x.example")
    assert message_id.endswith("@x.example") and added.startswith(
        f"Message-ID: <{message_id}>".encode()
    )


def test_simhash_near_duplicates_are_close_and_features_detect_markers() -> None:
    text = b"Your order 1234 has shipped and will arrive on Tuesday. Track it in your account. " * 5
    near = text.replace(b"1234", b"9876")
    other = b"Big summer sale! 50% off everything, limited time only, unsubscribe here." * 5
    distance = lambda a, b: bin((simhash(a) ^ simhash(b)) & (2**64 - 1)).count("1")  # noqa: E731
    assert distance(text, near) < distance(text, other)
    features = submission_features(
        "t1",
        "m1@x",
        ["a@gmail.com", "b@gmail.com"],
        b"From: a@x\r\nSubject: Sale\r\nList-Unsubscribe: <mailto:u@x>\r\n\r\n" + other,
    )
    assert features.recipient_domains == ["gmail.com"] and features.has_list_unsubscribe
    assert {"unsubscribe_link", "promo_words"} <= set(features.marketing_markers)


DSN = b"""From: MAILER-DAEMON@mx.example.org\r
To: bounces@bounces.kibamail.test\r
Subject: Undelivered Mail Returned to Sender\r
MIME-Version: 1.0\r
Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r
\r
--B\r
Content-Type: text/plain\r
\r
Your message could not be delivered.\r
--B\r
Content-Type: message/delivery-status\r
\r
Reporting-MTA: dns; mx.example.org\r
\r
Final-Recipient: rfc822; gone@example.org\r
Action: failed\r
Status: 5.1.1\r
Diagnostic-Code: smtp; 550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown\r
\r
Final-Recipient: rfc822; later@example.org\r
Action: delayed\r
Status: 4.4.1\r
--B\r
Content-Type: text/rfc822-headers\r
\r
From: news@sender.example\r
Message-ID: <orig-1@sender.example>\r
--B--\r
"""

ARF = b"""From: feedback@yahoo.com\r
To: fbl@bounces.kibamail.test\r
Subject: FW: Your receipt\r
MIME-Version: 1.0\r
Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r
\r
--F\r
Content-Type: text/plain\r
\r
This is an email abuse report.\r
--F\r
Content-Type: message/feedback-report\r
\r
Feedback-Type: abuse\r
User-Agent: Yahoo!-Mail-Feedback/2.0\r
Version: 1\r
Original-Rcpt-To: <angry@yahoo.com>\r
\r
--F\r
Content-Type: message/rfc822\r
\r
From: news@sender.example\r
To: angry@yahoo.com\r
Message-ID: <orig-2@sender.example>\r
Subject: Your receipt\r
\r
body\r
--F--\r
"""


def test_parse_dsn_and_arf() -> None:
    (bounce,) = parse_report(DSN)  # the "delayed" block is not a bounce
    assert (bounce.message_id, bounce.recipient, bounce.status) == (
        "orig-1@sender.example",
        "gone@example.org",
        MessageStatus.BOUNCED,
    )
    assert bounce.code == 550 and bounce.enhanced == "5.1.1"
    (complaint,) = parse_report(ARF)
    assert (complaint.message_id, complaint.recipient, complaint.status) == (
        "orig-2@sender.example",
        "angry@yahoo.com",
        MessageStatus.COMPLAINED,
    )
    assert parse_report(b"From: a@x\r\nSubject: hi\r\n\r\nnot a report\r\n") == []


def test_in_doubt_recipients_after_a_crash() -> None:
    import orjson

    from mta.outcomes import IN_DOUBT_TEXT, finished_outcomes

    progress = {
        "sent@x.org": orjson.dumps({"status": "in_doubt", "pool": "p", "source_ip": "10.0.0.1"}),
        "done@x.org": orjson.dumps({"status": "delivered", "code": 250, "text": "2.0.0 OK"}),
        "gone@x.org": orjson.dumps({"status": "bounced", "code": 550, "bounce_class": "hard"}),
    }
    assumed = finished_outcomes(progress, "assume_delivered")
    assert assumed["sent@x.org"].status == MessageStatus.DELIVERED
    assert assumed["sent@x.org"].text == IN_DOUBT_TEXT and assumed["sent@x.org"].pool == "p"
    assert assumed["done@x.org"].code == 250
    assert assumed["gone@x.org"].bounce_class == BounceClass.HARD
    resend = finished_outcomes(progress, "resend")
    assert "sent@x.org" not in resend and set(resend) == {"done@x.org", "gone@x.org"}
