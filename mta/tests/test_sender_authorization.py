"""Sender authorization, played by an attacker over a real SMTP client against the MTA:
another team's verified domain (MAIL FROM or From:), the platform's notification
domain, and DKIM signing with the sending team's own key only."""

from __future__ import annotations

import smtplib
import ssl
import uuid
from typing import Any

import dkim
import pytest

from kibamail.contracts import MessageStatus
from kibamail.intake import submit
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from kibamail.system_mail import sender_address
from mta.credentials import create_smtp_credential
from mta.dkim_signing import generate_rsa_key, store_dkim_key
from mta.sender_auth import PlatformSender, header_from_domains
from testing.testnet import SinkServer

from .helpers import StatusReader, make_message, queued, status_offsets, wait_until

pytestmark = pytest.mark.integration

TLS = ssl.create_default_context()
TLS.check_hostname = False
TLS.verify_mode = ssl.CERT_NONE
VICTIM, ATTACKER = "team-victim", "team-attacker"
VICTIM_DOMAIN, ATTACKER_DOMAIN = "victim-co.test", "attacker-co.test"


def _ready(redis: Any, team: str, domain: str, selector: str = "") -> str:
    """Mark ``domain`` verified for ``team`` with its own DKIM key; returns the key's TXT."""
    pem, txt = generate_rsa_key()
    store_dkim_key(redis, team, domain, selector or f"s{team[-4:]}", "rsa-sha256", pem)
    redis.set(RedisKeys.domain_ready(team, domain), "1")
    return txt


def _client(settings: Settings, credential: tuple[str, str]) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", settings.mta.submission_port, timeout=15)
    client.starttls(context=TLS)
    client.ehlo()
    client.login(*credential)
    return client


def _message(header_from: str) -> bytes:
    return (
        f"From: {header_from}\r\nTo: cfo@example.org\r\nSubject: wire the money\r\n"
        f"Date: Sun, 06 Dec 2026 10:00:00 +0000\r\n\r\nUrgent.\r\n"
    ).encode()


def _queued(redis: Any) -> int:
    return queued(redis)


@pytest.fixture
def attacker(redis_client: Any) -> tuple[str, str]:
    """The victim has verified its domain; the attacker has only its own one."""
    _ready(redis_client, VICTIM, VICTIM_DOMAIN)
    _ready(redis_client, ATTACKER, ATTACKER_DOMAIN)
    return create_smtp_credential(redis_client, ATTACKER)


def test_another_teams_domain_in_mail_from_is_refused_at_mail(
    running_mta: Settings, attacker: tuple[str, str], redis_client: Any, sink: SinkServer
) -> None:
    before = _queued(redis_client)
    with _client(running_mta, attacker) as client:
        code, reply = client.mail(f"ceo@{VICTIM_DOMAIN}")
        assert code == 553
        assert reply.startswith(b"5.7.1") and VICTIM_DOMAIN.encode() in reply
        with pytest.raises(smtplib.SMTPSenderRefused) as info:
            client.sendmail(
                f"ceo@{VICTIM_DOMAIN}", ["cfo@example.org"], _message(f"CEO <ceo@{VICTIM_DOMAIN}>")
            )
        assert info.value.smtp_code == 553
        # A domain no team has verified is refused the same way.
        assert client.mail("x@nobody-verified.test")[0] == 553
    assert _queued(redis_client) == before
    assert redis_client.get(RedisKeys.domain_ready(VICTIM, VICTIM_DOMAIN)) == b"1"


@pytest.mark.parametrize(
    "header_from",
    [
        f"CEO <ceo@{VICTIM_DOMAIN}>",
        f'"ceo@{VICTIM_DOMAIN}" <me@{ATTACKER_DOMAIN}>',  # display-name borrowing
        f"me@{ATTACKER_DOMAIN},\r\n ceo@{VICTIM_DOMAIN}",  # a folded second mailbox
        f"=?utf-8?q?ceo=40{VICTIM_DOMAIN}?= <me@{ATTACKER_DOMAIN}>",  # encoded word
    ],
)
def test_own_envelope_with_victim_in_from_header_is_refused_at_data(
    running_mta: Settings,
    attacker: tuple[str, str],
    redis_client: Any,
    sink: SinkServer,
    header_from: str,
) -> None:
    before = _queued(redis_client)
    with _client(running_mta, attacker) as client, pytest.raises(smtplib.SMTPDataError) as info:
        client.sendmail(f"me@{ATTACKER_DOMAIN}", ["cfo@example.org"], _message(header_from))
    assert info.value.smtp_code == 553
    error = info.value.smtp_error
    assert isinstance(error, bytes) and error.startswith(b"5.7.1")
    assert VICTIM_DOMAIN.encode() in error
    assert _queued(redis_client) == before


def test_own_verified_domain_is_signed_with_the_sending_teams_key_only(
    running_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    """Two teams hold keys for the same name: each message verifies against the key of
    the team that sent it, and not against the other's."""
    shared = f"shared-{uuid.uuid4().hex[:6]}.test"
    victim_txt = _ready(redis_client, VICTIM, shared, "victimsel")
    attacker_txt = _ready(redis_client, ATTACKER, shared, "attsel")
    credential = create_smtp_credential(redis_client, ATTACKER)
    with _client(running_mta, credential) as client:
        client.mail(f"me@{shared}")
        client.rcpt("reader@example.org")
        code, reply = client.data(_message(f"Me <me@{shared}>"))
    assert code == 250
    message_id = reply.decode().rsplit(" ", 1)[1]
    assert wait_until(lambda: message_id in sink.handler.messages, timeout=20)
    signed = sink.handler.messages[message_id]
    assert f"d={shared}".encode() in signed and b"s=attsel" in signed

    def dns_of(txt: str) -> Any:
        return lambda name, timeout=5: txt.encode()

    assert dkim.verify(signed, dnsfunc=dns_of(attacker_txt))
    assert not dkim.verify(signed, dnsfunc=dns_of(victim_txt))


def test_notification_domain_is_refused_to_customers(
    running_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    """Even with a (legacy) ready flag and key for it, a customer cannot use the
    platform's domain: 553 5.7.1 on submission, failed and unsigned on delivery."""
    platform = PlatformSender.from_settings(running_mta)
    _ready(redis_client, "team-legacy", platform.domain)
    credential = create_smtp_credential(redis_client, "team-legacy")
    before = _queued(redis_client)
    with _client(running_mta, credential) as client:
        code, reply = client.mail(f"security@{platform.domain}")
    assert code == 553 and reply.startswith(b"5.7.1") and b"reserved" in reply
    assert _queued(redis_client) == before

    offsets = status_offsets(running_mta)
    forged = make_message(["x@example.org"], team="team-legacy", sender=f"a@{platform.domain}")
    own = make_message(["y@example.org"], team=platform.team_id, sender=sender_address(running_mta))
    redis_client.set(RedisKeys.domain_ready(platform.team_id, platform.domain), "1")
    submit(redis_client, forged)
    submit(redis_client, own)
    reader = StatusReader(
        running_mta, start_offsets=offsets, message_ids={forged.message_id, own.message_id}
    )
    try:
        events = reader.poll_until(
            lambda ev: (
                {e.message_id for e in ev if e.status == MessageStatus.FAILED}
                == {forged.message_id}
                and any(e.message_id == own.message_id and e.status == "delivered" for e in ev)
            )
        )
    finally:
        reader.close()
    failed = next(e for e in events if e.message_id == forged.message_id and e.status == "failed")
    assert "reserved for the platform" in failed.reason
    assert forged.message_id not in sink.handler.messages
    assert own.message_id in sink.handler.messages  # platform mail itself still flows


def test_header_from_domains_reads_the_from_field_only() -> None:
    data = (
        b'Subject: a@elsewhere.test\r\nFrom: "Bob" <bob@Own.Test>,\r\n\tcarol@other.test\r\n'
        b"X-From: z@zzz.test\r\n\r\nFrom: body@ignored.test\r\n"
    )
    assert header_from_domains(data) == ["own.test", "other.test"]
    assert header_from_domains(b"From: undisclosed\r\n\r\n") == []
