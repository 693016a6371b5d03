"""IMAP polling of a `rua` mailbox against an in-process IMAP server and the real warehouse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deliverability.ingest import MailboxConfig, poll_imap
from deliverability.tests.imapserver import Mailbox, loopback_imap

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent / "fixtures"


def test_poll_ingests_reports_marks_seen_and_skips_bad_mail(dmarc_tables: Any) -> None:
    clickhouse = dmarc_tables
    box = Mailbox(
        "rua@kibamail.test",
        "secret",
        [
            (FIXTURES / "email-source-with-gz.txt").read_bytes(),
            b"From: someone@example.com\r\nSubject: hello\r\n\r\nnot a report\r\n",
            (FIXTURES / "email-source-with-zip.txt").read_bytes(),
        ],
    )
    with loopback_imap(box) as port:
        config = MailboxConfig("127.0.0.1", port, box.username, box.password, use_ssl=False)
        results = poll_imap(config, clickhouse, team_id="team-7")
        assert [r.accepted for r in results] == [True, False, True]
        assert "no DMARC or SMTP TLS report" in results[1].errors[0]
        assert box.seen == {1, 2, 3}
        assert poll_imap(config, clickhouse, team_id="team-7") == []  # nothing unseen left
        box.seen.clear()  # the mailbox forgets: re-ingesting (same team) must not duplicate
        again = poll_imap(config, clickhouse, team_id="team-7")
        assert sum(len(r.duplicates) for r in again) == 2
    rows = clickhouse.query(
        "SELECT domain, sum(message_count) FROM raw_dmarc_records FINAL GROUP BY domain"
        " ORDER BY domain"
    ).result_rows
    assert rows == [("lets.poker", 22), ("vecttor.co", 1)]


def test_wrong_password_raises(clickhouse: Any) -> None:
    import imaplib

    box = Mailbox("rua@kibamail.test", "secret", [])
    with loopback_imap(box) as port:
        config = MailboxConfig("127.0.0.1", port, box.username, "wrong", use_ssl=False)
        with pytest.raises(imaplib.IMAP4.error):
            poll_imap(config, clickhouse)
