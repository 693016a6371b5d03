"""The README's "Your first email", run as written: its shell block (curl and swaks as
subprocesses) against the embedded stack started by the harness: the API, the MTA, the
pipelines and the test internet with its mailboxes and published domain records.

Only the variables the block reads are set (ports, mailbox dir, fresh addresses); the
commands are the README's own, so the documentation cannot drift from what works.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.demo import mark_platform_sender_ready
from kibamail.settings import REPO_ROOT, Settings
from local_stack import up
from local_stack.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

BLOCK = re.compile(r"<!-- first-email:begin -->\n```sh\n(.*?)```\n<!-- first-email:end -->", re.S)


def readme_block() -> str:
    match = BLOCK.search((REPO_ROOT / "README.md").read_text())
    assert match, "README.md has no first-email block"
    return match.group(1)


@pytest.fixture(scope="module")
def local_stack(
    test_settings: Settings,
    test_stack: Stack,
    kafka_service: str,
    redis_service: str,
    warehouse_service: object,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Settings, Path]]:
    from api.db import migrate

    migrate(test_settings.database.url)
    mailboxes = tmp_path_factory.mktemp("mailboxes")
    options = up.TestnetOptions(
        defer_share=0.0, bounce_share=0.0, mailbox_dir=str(mailboxes), publish_api_domains=True
    )
    test_stack.start(up.testnet_spec(test_settings, options))
    specs = up.app_specs(test_settings)
    names = ("api", "mta", "pipelines")
    for name in names:
        test_stack.start(specs[name])
    mark_platform_sender_ready(test_settings)  # as `kibamail up` does
    yield test_settings, mailboxes
    for name in (*reversed(names), "testnet"):
        test_stack.stop(name)


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("swaks")), reason="curl/swaks")
def test_readme_first_email_runs_as_written(local_stack: tuple[Settings, Path]) -> None:
    settings, mailboxes = local_stack
    run = uuid.uuid4().hex[:8]
    domain, to = f"mail{run}.example.com", f"grace{run}@example.org"
    env = {
        **os.environ,
        "API": settings.api.public_url,
        "SMTP_PORT": str(settings.mta.submission_port),
        "MAILBOXES": str(mailboxes),
        "EMAIL": f"ada{run}@example.com",
        "DOMAIN": domain,
        "TO": to,
    }
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_block()],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=500, check=False,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert '"email_verified":true' in result.stdout  # the link from the mailbox worked
    assert "\nverified\n" in result.stdout  # the domain's verify answer: status verified
    assert "<~  250" in out or "<-  250" in out  # swaks: the message was accepted
    delivered = [p for p in (mailboxes / to).glob("*.eml") if b"My first email" in p.read_bytes()]
    assert len(delivered) == 2
    for path in delivered:
        head = path.read_bytes().split(b"\r\n\r\n", 1)[0]
        assert re.search(rb"DKIM-Signature:[^\n]*(\n[ \t][^\n]*)*d=" + domain.encode(), head)
    assert '"status":"accepted"' in result.stdout and '"status":"delivered"' in result.stdout
