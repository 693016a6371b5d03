"""DMARC reports mailed to a `rua` address on port 25 land in ClickHouse, per team."""

from __future__ import annotations

import smtplib
from pathlib import Path
from typing import Any

import pytest

from kibamail.report_tokens import rua_tag
from kibamail.settings import Settings

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[2] / "deliverability" / "tests" / "fixtures"


def test_rua_mail_is_stored_for_the_tagged_team_and_non_reports_are_refused(
    running_mta: Settings, warehouse_service: object, clickhouse: Any
) -> None:
    rua = f"dmarc+{rua_tag(running_mta.mta.report_token_secret, 'team-rua')}@bounces.kibamail.test"
    raw = (FIXTURES / "email-source-with-zip.txt").read_bytes()
    report_mail = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # SMTP wants CRLF
    with smtplib.SMTP("127.0.0.1", running_mta.mta.inbound_port, timeout=30) as client:
        client.sendmail("noreply@reporter.example", [rua], report_mail)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail(
                "someone@example.org",
                [rua],
                b"Subject: hello\r\n\r\nnot a report\r\n",
            )
        # The session keeps serving after a refusal.
        assert client.noop()[0] == 250
    assert refused.value.smtp_code == 550
    stored = clickhouse.query(
        "SELECT count() FROM raw_dmarc_reports WHERE team_id = 'team-rua'"
    ).result_rows[0][0]
    assert stored >= 1
