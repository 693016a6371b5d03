"""Outside development, the service refuses to start with well-known secrets."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from kibamail.settings import (
    DEV_SECRET_KEY,
    ApiSettings,
    ClickHouseSettings,
    MtaSettings,
    RedisSettings,
    Settings,
)

REAL_MTA = MtaSettings(report_token_secret="a-real-report-secret")

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("KIBAMAIL_")]:
        monkeypatch.delenv(key)


def test_development_runs_on_the_defaults() -> None:
    settings = Settings()
    assert settings.environment == "development"
    assert settings.api.secret_key == DEV_SECRET_KEY and settings.clickhouse.password == ""


def test_production_with_the_default_secret_key_is_refused() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(
            environment="production",
            clickhouse=ClickHouseSettings(password="wh-token"),
            mta=REAL_MTA,
        )
    message = str(refused.value)
    assert "refusing to start in environment 'production'" in message
    assert "api.secret_key is the development default (KIBAMAIL_API__SECRET_KEY)" in message
    assert "clickhouse.password" not in message


def test_production_with_an_empty_clickhouse_password_is_refused() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(environment="staging", api=ApiSettings(secret_key="a-real-secret"), mta=REAL_MTA)
    message = str(refused.value)
    assert "clickhouse.password is empty (KIBAMAIL_CLICKHOUSE__PASSWORD)" in message
    assert "api.secret_key" not in message


def test_production_with_both_defaults_names_both() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(environment="production")
    message = str(refused.value)
    assert "api.secret_key" in message and "clickhouse.password" in message
    assert "mta.report_token_secret is the development default" in message


def test_production_with_the_default_report_secret_is_refused() -> None:
    """It signs return paths and rua tags: known, anyone forges bounces and reports."""
    with pytest.raises(ValidationError) as refused:
        Settings(
            environment="production",
            api=ApiSettings(secret_key="a-real-secret"),
            clickhouse=ClickHouseSettings(password="wh-token"),
        )
    assert "mta.report_token_secret is the development default" in str(refused.value)


def test_production_with_real_secrets_starts() -> None:
    settings = Settings(
        environment="production",
        api=ApiSettings(secret_key="a-real-secret"),
        clickhouse=ClickHouseSettings(password="wh-token"),
        mta=REAL_MTA,
    )
    assert settings.environment == "production"


def test_a_process_started_from_the_environment_refuses_readably() -> None:
    """The way an operator meets it: KIBAMAIL_* variables, a process that does not start."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIBAMAIL_")}
    env["KIBAMAIL_ENVIRONMENT"] = "production"
    env["KIBAMAIL_CLICKHOUSE__PASSWORD"] = "wh-token"
    result = subprocess.run(
        [sys.executable, "-c", "from kibamail.settings import get_settings; get_settings()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "api.secret_key is the development default" in result.stderr


def test_replica_wait_is_refused_until_every_intake_waits() -> None:
    """An acknowledgement must mean durable on every path: a mode only some intakes honour
    is refused at start-up rather than silently weaker on the others."""
    with pytest.raises(ValueError, match="replica_wait is not honoured by every intake"):
        Settings(redis=RedisSettings(durability="replica_wait"))
