"""Inbound mail cannot stall the MTA: reports are parsed in worker processes with caps on
size, MIME parts, nesting, time and memory, and refused beyond them (552/554)."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import threading
import time
from typing import Any

import pytest
from prometheus_client import REGISTRY

from kibamail.mime_limits import MAX_DEPTH, MAX_PARTS, MAX_REPORT_BYTES, MimeLimitError
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from mta.credentials import create_smtp_credential
from mta.inbound import parse_report_capped
from mta.report_pool import JobLimitError, PoolBusy, ReportPool

from .helpers import wait_until
from .test_units import DSN

TLS = ssl.create_default_context()
TLS.check_hostname = False
TLS.verify_mode = ssl.CERT_NONE
HEAD = (
    b"From: MAILER-DAEMON@mx.example.org\r\nSubject: report\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/report; report-type=delivery-status; boundary="Z"\r\n\r\n'
)


def many_parts(parts: int, lines_per_part: int = 1, line: bytes = b"xxxxxx") -> bytes:
    part = b"--Z\r\nContent-Type: text/plain\r\n\r\n" + (line + b"\r\n") * lines_per_part
    return HEAD + part * parts + b"--Z--\r\n"


def nested(depth: int) -> bytes:
    opening = b"".join(
        b'--N%d\r\nContent-Type: multipart/mixed; boundary="N%d"\r\n\r\n' % (i, i + 1)
        for i in range(depth)
    )
    closing = b"".join(b"--N%d--\r\n" % i for i in reversed(range(depth + 1)))
    head = HEAD.replace(b'boundary="Z"', b'boundary="N0"')
    return head + opening + b"--N%d\r\nContent-Type: text/plain\r\n\r\nx\r\n" % depth + closing


def test_parse_caps_refuse_parts_nesting_and_size() -> None:
    assert len(parse_report_capped(DSN)) == 1
    with pytest.raises(MimeLimitError, match="too many MIME parts"):
        parse_report_capped(many_parts(MAX_PARTS + 1))
    with pytest.raises(MimeLimitError, match="nested too deep"):
        parse_report_capped(nested(MAX_DEPTH + 2))
    with pytest.raises(MimeLimitError, match="too large"):
        parse_report_capped(b"x" * (MAX_REPORT_BYTES + 1))


def test_report_pool_enforces_time_memory_and_queue_bounds() -> None:
    async def scenario() -> None:
        pool = ReportPool(workers=1, max_pending=1, memory_bytes=1024**3)
        try:
            with pytest.raises(JobLimitError, match="too long"):
                await pool.run(time.sleep, 60, seconds=0.5)
            with pytest.raises(JobLimitError, match="memory"):
                await pool.run(bytearray, 2 * 1024**3, seconds=30)
            running = asyncio.ensure_future(pool.run(time.sleep, 60, seconds=1))
            await asyncio.sleep(0)
            with pytest.raises(PoolBusy):
                await pool.run(len, b"x", seconds=5)
            with pytest.raises(JobLimitError):
                await running
            assert await pool.run(len, b"xyz", seconds=5) == 3  # the pool still works
        finally:
            pool.close()

    asyncio.run(scenario())


def _processing() -> float:
    return REGISTRY.get_sample_value("kibamail_mta_inbound_reports_processing") or 0.0


def _submit(settings: Settings, credential: tuple[str, str]) -> str:
    """A whole submission transaction on the submission port; returns the DATA reply."""
    with smtplib.SMTP("127.0.0.1", settings.mta.submission_port, timeout=30) as client:
        assert client.ehlo()[0] == 250
        client.starttls(context=TLS)
        client.ehlo()
        client.login(*credential)
        assert client.mail("a@sender.example")[0] == 250
        assert client.rcpt("someone@example.org")[0] == 250
        code, reply = client.data(b"From: a@sender.example\r\nSubject: s\r\n\r\nHello.\r\n")
    assert code == 250, reply
    return reply.decode()


@pytest.mark.integration
def test_over_cap_reports_are_refused_over_smtp(running_mta: Settings) -> None:
    with smtplib.SMTP("127.0.0.1", running_mta.mta.inbound_port, timeout=60) as client:
        for data, expected in (
            (many_parts(MAX_PARTS + 50), b"too many MIME parts"),
            (nested(MAX_DEPTH + 2), b"nested too deep"),
        ):
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail("", ["bounces@bounces.kibamail.test"], data)
            assert refused.value.smtp_code == 554 and expected in refused.value.smtp_error
        assert client.noop()[0] == 250  # the session keeps serving


@pytest.mark.integration
def test_a_huge_report_never_stalls_submission(running_mta: Settings, redis_client: Any) -> None:
    team = "team-limits"
    redis_client.set(RedisKeys.domain_ready(team, "sender.example"), "1")
    credential = create_smtp_credential(redis_client, team)
    # ~20 MiB in 50,000 parts of short lines: seconds of pure-Python parsing.
    report = many_parts(50_000, lines_per_part=50)
    assert len(report) > 19 * 1024 * 1024

    inbound = smtplib.SMTP("127.0.0.1", running_mta.mta.inbound_port, timeout=120)
    inbound.ehlo()
    assert inbound.mail("")[0] == 250
    assert inbound.rcpt("bounces@bounces.kibamail.test")[0] == 250
    inbound.putcmd("data")
    assert inbound.getreply()[0] == 354
    half = len(report) // 2
    assert inbound.sock is not None
    inbound.sock.sendall(report[:half])
    # Mid-upload (we hold the rest): submission answers.
    assert "queued as" in _submit(running_mta, credential)

    reply: dict[str, tuple[int, bytes]] = {}

    def finish() -> None:
        assert inbound.sock is not None
        inbound.sock.sendall(report[half:] + b".\r\n")
        reply["data"] = inbound.getreply()

    sender = threading.Thread(target=finish, daemon=True)
    sender.start()
    try:
        # The upload is complete and the report is with a worker: submission still answers,
        # and the parse is provably still running when the submission has finished.
        assert wait_until(lambda: _processing() >= 1 or "data" in reply, timeout=120)
        assert "data" not in reply
        assert "queued as" in _submit(running_mta, credential)
        assert _processing() >= 1 and "data" not in reply
        sender.join(180)
        assert reply["data"][0] == 554 and b"too many MIME parts" in reply["data"][1]
    finally:
        sender.join(180)
        inbound.close()
