"""GET /metrics needs the operator's bearer token; without a configured token it does not exist."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.tests.conftest import RecordingProducer
from kibamail.settings import Settings

TOKEN = "metrics-token-of-the-operator"


def _client(settings: Settings, token: str) -> Iterator[TestClient]:
    api = settings.api.model_copy(update={"metrics_token": token})
    app = create_app(settings.model_copy(update={"api": api}), producer=RecordingProducer(),
                     run_scheduler=False)  # fmt: skip
    with TestClient(app) as client:
        yield client


@pytest.fixture
def guarded(api_settings: Settings, redis_client: Any) -> Iterator[TestClient]:
    yield from _client(api_settings, TOKEN)


@pytest.fixture
def unconfigured(api_settings: Settings, redis_client: Any) -> Iterator[TestClient]:
    yield from _client(api_settings, "")


def test_the_right_token_reads_the_metrics(guarded: TestClient) -> None:
    resp = guarded.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200
    assert "kibamail_api_requests_total" in resp.text


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ],
)
def test_a_scraper_without_the_token_is_refused(guarded: TestClient, headers: dict) -> None:
    for path in ("/metrics", "/metrics/"):
        resp = guarded.get(path, headers=headers)
        assert resp.status_code == 401, resp.text
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert resp.json()["error"]["message"] == "a valid metrics bearer token is required"
        assert "kibamail_api" not in resp.text


def test_no_configured_token_means_no_metrics_endpoint(unconfigured: TestClient) -> None:
    assert unconfigured.get("/metrics").status_code == 404
    # Not even with a guessed token, nor an empty bearer value.
    assert unconfigured.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404
    assert unconfigured.get("/metrics", headers={"Authorization": "Bearer x"}).status_code == 404


def test_other_routes_need_no_metrics_token(guarded: TestClient) -> None:
    assert guarded.get("/healthz").json() == {"status": "ok"}
