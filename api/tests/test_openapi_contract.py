"""docs/openapi.json is what the app serves, and it is complete enough for generated
clients: every operation declares its errors in the one model, its security, and the
headers the API really sends."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.openapi import SPEC_PATH, render

pytestmark = pytest.mark.unit


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, item in spec["paths"].items() for m, op in item.items()]


LISTS = [
    f"/v1/teams/{{team_id}}/{name}"
    for name in (
        "members",
        "api-keys",
        "smtp-credentials",
        "domains",
        "lists",
        "fields",
        "lists/{list_id}/contacts",
        "suppressions",
        "templates",
        "broadcasts",
        "webhooks",
        "webhooks/event-types",
        "webhooks/{endpoint_id}/deliveries",
        "messages/{message_id}/events",
        "contacts/{contact_id}/timeline",
    )
]


def test_committed_spec_equals_the_generated_one(client: TestClient) -> None:
    served = client.get("/openapi.json").json()
    assert SPEC_PATH.read_text() == render(served), (
        "docs/openapi.json is stale: run `python -m api.openapi` (docs/api.md)"
    )


def test_every_operation_declares_errors_security_and_5xx() -> None:
    spec = json.loads(SPEC_PATH.read_text())
    assert spec["openapi"] == "3.1.0"
    assert set(spec["components"]["securitySchemes"]) == {"ApiKey", "SessionToken", "MetricsToken"}
    for method, path, op in _operations(spec):
        responses = op["responses"]
        assert "5XX" in responses, (method, path)
        assert "security" in op, (method, path)
        for status, response in responses.items():
            if status[0] in "45" and path != "/v1/dmarc/reports":
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)
        if op["security"] and path != "/metrics":
            assert {"401", "403", "429"} <= set(responses), (method, path)
            assert "Retry-After" in responses["429"]["headers"]
        if "{" in path:
            assert "404" in responses, (method, path)
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]


def test_security_follows_the_credential_each_route_takes() -> None:
    spec = json.loads(SPEC_PATH.read_text())
    paths = spec["paths"]
    assert paths["/v1/me"]["get"]["security"] == [{"SessionToken": []}]
    assert paths["/v1/emails"]["post"]["security"] == [{"ApiKey": []}, {"SessionToken": []}]
    assert paths["/v1/auth/login"]["post"]["security"] == []
    assert paths["/metrics"]["get"]["security"] == [{"MetricsToken": []}]


def test_links_etags_idempotency_pagination_and_webhooks() -> None:
    spec = json.loads(SPEC_PATH.read_text())
    paths = spec["paths"]
    created = paths["/v1/teams/{team_id}/templates"]["post"]["responses"]["201"]
    assert created["headers"]["ETag"]["required"] is True
    update = created["links"]["templates_update"]["parameters"]
    assert update == {
        "path.team_id": "$request.path.team_id",
        "path.template_id": "$response.body#/id",
        "header.If-Match": "$response.header.ETag",
    }
    put = paths["/v1/teams/{team_id}/templates/{template_id}"]["put"]
    assert "412" in put["responses"]
    send = paths["/v1/emails"]["post"]
    assert any(p["name"] == "Idempotency-Key" for p in send["parameters"])
    assert "Idempotent-Replayed" in send["responses"]["200"]["headers"]
    assert "RateLimit-Remaining" in send["responses"]["200"]["headers"]
    for path in LISTS:
        names = {p["name"] for p in paths[path]["get"].get("parameters", [])}
        assert {"cursor", "limit"} <= names, path
    hooks = spec["webhooks"]
    assert "email.delivered" in hooks and "team.unpaused" in hooks
    headers = {p["name"] for p in hooks["email.delivered"]["post"]["parameters"]}
    assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}
