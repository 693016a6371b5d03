"""The Prometheus scrape config targets the ports the stack actually serves metrics on."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kibamail.settings import Settings

pytestmark = pytest.mark.unit

CONFIG = Path(__file__).resolve().parents[1] / "infra" / "prometheus" / "prometheus.yml"


def test_scrape_targets_match_default_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in [k for k in os.environ if k.startswith("KIBAMAIL_")]:
        monkeypatch.delenv(key)
    settings = Settings()
    config = yaml.safe_load(CONFIG.read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"][0] for job in config["scrape_configs"]
    }
    assert targets == {
        "kibamail-api": f"127.0.0.1:{settings.api.port}",
        "kibamail-mta": f"127.0.0.1:{settings.mta.metrics_port}",
        "kibamail-pipelines": f"127.0.0.1:{settings.pipelines.metrics_port}",
    }


def test_api_scrape_sends_the_metrics_token_from_a_file() -> None:
    """The API's /metrics needs a bearer token; the config names a file, never the token."""
    config = yaml.safe_load(CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    auth = jobs["kibamail-api"]["authorization"]
    assert auth["type"] == "Bearer"
    assert auth["credentials_file"].startswith("/")
    assert "credentials" not in auth
    for job in config["scrape_configs"]:
        assert "bearer_token" not in job and "basic_auth" not in job
