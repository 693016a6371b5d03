"""schemathesis against the running API: every operation, every check, the stateful
phase driven by the spec's links; zero failures and no 5xx.

The API runs as a real process (`kibamail api`) on loopback with the harness's Redis,
Kafka and database; a seeded team has a member's session token and an API key of each
scope (api/tests/schemathesis_hooks.py picks one per operation). The seed is fixed and
the examples per operation bounded, so the run is reproducible and short; the test
prints the seed and the counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.bootstrap import create_team_with_key
from kibamail.settings import Settings
from local_stack.services import kibamail_spec
from local_stack.stack import Stack
from testing.testnet.dns_server import DnsServer, Zone

pytestmark = pytest.mark.integration

SEED = 1515
MAX_EXAMPLES = 8
REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def live_api(
    api_settings: Settings, kafka_service: str, warehouse_service: Any, test_stack: Stack
) -> Iterator[tuple[str, Settings]]:
    """The API process, its DNS answered by a loopback test server with an empty zone
    (domain verification and address validation get quick, local NXDOMAINs)."""
    with DnsServer(zone=Zone(catch_all=False)) as dns:
        mta = api_settings.mta.model_copy(update={"dns_port": dns.port})
        settings = api_settings.model_copy(update={"mta": mta})
        spec = kibamail_spec(settings, "api", ["api"], settings.api.port, "/healthz")
        test_stack.start(spec)
        yield f"http://127.0.0.1:{settings.api.port}", settings
        test_stack.stop("api")


def _seed(base: str, settings: Settings) -> dict[str, str]:
    """A team (verified sender and domain) with a session, a key per scope, and a second
    member whose session the fuzzer may log out."""
    suffix = uuid.uuid4().hex[:8]
    email = f"fuzz-{suffix}@example.com"
    team_id, full_key = create_team_with_key(
        settings, email=email, team_name="fuzz", domain=f"f{suffix}.example.com"
    )
    with httpx.Client(base_url=base, timeout=30) as http:
        session = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert session.status_code == 200, session.text
        auth = {"Authorization": f"Bearer {session.json()['token']}"}
        sending = http.post(
            f"/v1/teams/{team_id}/api-keys",
            json={"name": "fuzz sending", "scope": "sending"},
            headers=auth,
        )
        assert sending.status_code == 201, sending.text
        throwaway = http.post(
            "/v1/auth/signup",
            json={"email": f"fuzz-out-{suffix}@example.com", "password": PASSWORD},
        )
        assert throwaway.status_code == 201, throwaway.text
    return {
        "KM_TEAM_ID": team_id,
        "KM_SESSION": session.json()["token"],
        "KM_FULL_KEY": full_key,
        "KM_SENDING_KEY": sending.json()["key"],
        "KM_THROWAWAY_SESSION": throwaway.json()["token"],
        "KM_METRICS_TOKEN": settings.api.metrics_token,
    }


CONFIG = """
seed = {seed}
hooks = "api.tests.schemathesis_hooks"

[parameters]
"path.team_id" = "${{KM_TEAM_ID}}"

[generation]
max-examples = {max_examples}

# Answers the schema cannot predict from a well-formed request, each the documented one:
# a random If-Match is not the resource's ETag (412); a random token was not signed by
# the API (400 invalid_token).
[[operations]]
include-operation-id = {if_match_ops}
checks.positive_data_acceptance.expected-statuses = {expected_if_match}

[[operations]]
include-path = {token_paths}
checks.positive_data_acceptance.expected-statuses = {expected_token}

# 422 with a named code for what the request refers to, not its shape: an unverified
# sender domain, an unknown list or custom field, a template that does not compile, a
# webhook URL the SSRF filter refuses, the platform's own domain, a file that holds no
# DMARC report.
[[operations]]
include-operation-id = {business_ops}
checks.positive_data_acceptance.expected-statuses = {expected_business}
"""
BUSINESS_RULE_OPERATIONS = [
    "emails_send_email",
    "emails_send_batch",
    "broadcasts_create",
    "broadcasts_edit",
    "broadcasts_launch",
    "contacts_add_contact",
    "contacts_patch_contact",
    "templates_create",
    "templates_update",
    "templates_preview",
    "webhooks_create",
    "webhooks_update",
    "domains_add_domain",
    "dmarc_upload_report",
]
# Extra `st run` arguments from the environment (e.g. to focus a local re-run).
EXTRA_ARGS = os.environ.get("KM_SCHEMATHESIS_ARGS", "").split()
POSITIVE = ["2xx", "3xx", "401", "403", "404", "409", "429"]
TOKEN_PATHS = ["/v1/auth/verify-email", "/v1/invitations/accept", "/confirm/{token}"]


def _if_match_operations() -> list[str]:
    spec = json.loads((REPO / "docs" / "openapi.json").read_text())
    return sorted(
        op["operationId"]
        for item in spec["paths"].values()
        for op in item.values()
        if any(p["name"] == "If-Match" for p in op.get("parameters", []))
    )


def _counts(report: dict[str, Any]) -> tuple[int, int, int, int]:
    """(operations tested, generated requests, failing test cases, errors) from st's
    JSON run report."""
    cases = report["test_cases"]
    errors = sum(int(e.get("count", 1)) for e in report.get("errors", []))
    return report["operations"]["tested"], cases["generated"], cases["with_failures"], errors


def test_schemathesis_finds_nothing(
    live_api: tuple[str, Settings], redis_client: Any, tmp_path: Path
) -> None:
    base, settings = live_api
    env = {**os.environ, **_seed(base, settings), "PYTHONPATH": str(REPO)}
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        CONFIG.format(
            seed=SEED,
            max_examples=MAX_EXAMPLES,
            if_match_ops=json.dumps(_if_match_operations()),
            expected_if_match=json.dumps([*POSITIVE, "412"]),
            token_paths=json.dumps(TOKEN_PATHS),
            expected_token=json.dumps([*POSITIVE, "400"]),
            business_ops=json.dumps(BUSINESS_RULE_OPERATIONS),
            expected_business=json.dumps([*POSITIVE, "412", "422"]),
        )
    )
    st = Path(sys.executable).parent / "st"
    command = [
        str(st),
        "--config-file",
        str(config),
        "run",
        f"{base}/openapi.json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--workers",
        "1",
        *EXTRA_ARGS,
        "--no-color",
        "--report",
        "json",
        "--report-dir",
        str(tmp_path),
        "--request-timeout",
        "30",
    ]
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    print(result.stdout)
    print(result.stderr[-5000:])
    reports = list(tmp_path.glob("*.json"))
    assert reports, "schemathesis wrote no report"
    report = json.loads(reports[0].read_text())
    operations, requests, failures, errors = _counts(report)
    print(
        f"schemathesis seed={SEED} operations={operations} requests={requests} "
        f"failures={failures} errors={errors}"
    )
    assert result.returncode == 0, "schemathesis reported failures (output above)"
    assert failures == 0 and errors == 0
    assert operations == report["operations"]["selected"]
    if not EXTRA_ARGS:
        assert operations == report["operations"]["total"], "every operation is tested"
