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
