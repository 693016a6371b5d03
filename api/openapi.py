"""The OpenAPI 3.1 contract: FastAPI's document completed with what clients need.

FastAPI documents each route's parameters, body and success code. This adds, per
operation, every status it can return in the one error model (api.errors), the
security it accepts (API key or session token, both bearer tokens told apart by their
prefix: api.deps.get_principal), rate-limit and ETag headers, links from each create to
the operations on what it created (schemathesis' stateful phase follows them), examples,
and the webhook events with their payloads and signature headers.

`docs/openapi.json` is this document, committed; api/tests/test_openapi_contract.py
keeps the two equal and `python -m api.openapi` rewrites the file.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi

from api.deps import current_user_id, get_principal, sending_context
from api.openapi_catalog import (
    CREATED,
    ERROR_EXAMPLES,
    EXTRA_STATUSES,
    RESPONSE_EXAMPLES,
    SENT,
    TOKEN_IN_BODY,
    WAREHOUSE_PATHS,
    WAREHOUSE_PREFIXES,
)
from api.openapi_webhooks import add_webhooks
from api.routers.emails import BATCH_SCHEMA

SPEC_PATH = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
ERROR_REF = {"$ref": "#/components/schemas/Error"}
METHODS = ("get", "put", "post", "patch", "delete")
ERROR_TEXT = {
    400: "Bad request (wrong credential kind for the route, invalid or expired token).",
    401: "Missing, unknown, expired or revoked bearer token (or wrong password).",
    403: "Authenticated, but the role or API-key scope does not allow this.",
    404: "Not found, or belongs to another team (never tells which).",
    409: "Conflicts with the resource's current state.",
    412: "If-Match names a version that is no longer current; nothing was changed.",
    413: "Request body larger than the API accepts.",
    415: "Request body is not JSON.",
    422: "Invalid parameters or body; `details` lists each field (`path`, `message`).",
    429: "Rate limited: retry after `Retry-After` seconds.",
}
SECURITY_SCHEMES = {
    "ApiKey": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "km_<random>",
        "description": "A team's API key (`Authorization: Bearer km_...`), created with "
        "POST /v1/teams/{team_id}/api-keys. Acts for its team only, with its scope "
        "(`full` or `sending`) and at most its creator's role. Rate limited per key.",
    },
    "SessionToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "kms_<random>",
        "description": "A member's session token (`Authorization: Bearer kms_...`) from "
        "POST /v1/auth/login or /v1/auth/signup; valid 14 days or until logout.",
    },
    "MetricsToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The operator's `api.metrics_token` (Prometheus scrapes only).",
    },
}
_INT_HEADER = {"schema": {"type": "integer", "minimum": 0}}
RATE_HEADERS = {
    "RateLimit-Limit": {"description": "The key's burst size.", **_INT_HEADER},
    "RateLimit-Remaining": {"description": "Requests left in the bucket.", **_INT_HEADER},
    "RateLimit-Reset": {"description": "Seconds until the bucket is full.", **_INT_HEADER},
    "RateLimit-Policy": {"description": "`<burst>;w=<window s>`", "schema": {"type": "string"}},
}
RETRY_AFTER = {
    "description": "Seconds to wait before retrying.",
    "required": True,
    "schema": {"type": "integer", "minimum": 0},
}
ETAG = {
    "description": "The version of the resource; send it back in If-Match to update safely.",
    "required": True,
    "schema": {"type": "string"},
}


def operation_id(route: routing.APIRoute) -> str:
    """`<tag>_<function>`, e.g. `templates_update`: the method names of generated clients."""
    tag = str(route.tags[0]) if route.tags else "api"
    return f"{tag}_{route.name}".replace("-", "_")


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dep in dependant.dependencies:
        if dep.call is not None:
            yield dep.call
        yield from _calls(dep)


def auth_kind(path: str, dependant: Dependant) -> str:
    """'session' (members only), 'team' (API key or session), 'metrics' or 'none'."""
    if path == "/metrics":
        return "metrics"
    calls = set(_calls(dependant))
    if current_user_id in calls:
        return "session"
    if get_principal in calls or sending_context in calls:
        return "team"
    return "none"


def statuses(method: str, path: str, operation: dict[str, Any], kind: str) -> set[int]:
    """The error statuses this operation can answer (see the module doc)."""
    params = operation.get("parameters", [])
    body = operation.get("requestBody", {}).get("content", {})
    codes = {413} | EXTRA_STATUSES.get((method, path), set())
    if kind in {"session", "team"}:
        codes |= {401, 403, 429}
    if kind == "team" and "{team_id}" not in path:
        codes.add(400)  # a session token where only an API key names the team
    if any(p["in"] == "path" for p in params) or (kind == "team" and "{team_id}" in path):
        codes.add(404)
    if body or any(p["in"] in {"query", "header"} for p in params):
        codes.add(422)
    if "application/json" in body:
        codes |= {400, 415}  # 400: a body that is not UTF-8 JSON text
    if any(p["in"] == "header" and p["name"] == "If-Match" for p in params):
        codes.add(412)
    return codes


def _error_response(status: int) -> dict[str, Any]:
    code, message = ERROR_EXAMPLES[status]
    response: dict[str, Any] = {
        "description": ERROR_TEXT[status],
        "content": {
            "application/json": {
                "schema": ERROR_REF,
                "example": {"error": {"code": code, "message": message, "details": []}},
            }
        },
    }
    if status == 429:
        response["headers"] = {"Retry-After": RETRY_AFTER, **RATE_HEADERS}
    if status == 401:
        response["headers"] = {
            "WWW-Authenticate": {
                "description": "`Bearer` challenge when no bearer token was sent.",
                "schema": {"type": "string"},
            }
        }
    return response


def _server_error(path: str) -> dict[str, Any]:
    warehouse = path in WAREHOUSE_PATHS or path.startswith(WAREHOUSE_PREFIXES)
    text = "Server error in the error model (500 internal_error"
    text += ", 503 unavailable: the event store is down)." if warehouse else ")."
    return {"description": text, "content": {"application/json": {"schema": ERROR_REF}}}


def _etagged(path: str, method: str, spec: dict[str, Any]) -> bool:
    """GET/PUT/PATCH of a resource whose writes take If-Match carry an ETag."""
    item = spec["paths"].get(path, {})
    writes = [item[m] for m in ("put", "patch", "delete") if m in item]
    takes_if_match = any(p["name"] == "If-Match" for op in writes for p in op.get("parameters", []))
    return takes_if_match and method in {"get", "put", "patch"}


def _link_target(spec: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for method in METHODS:
        if method in spec["paths"].get(path, {}):
            yield method, spec["paths"][path][method]


def _links(spec: dict[str, Any], path: str, ids: dict[str, str]) -> dict[str, Any]:
    """OpenAPI links from a response to each operation on the detail paths `ids` names."""
    links: dict[str, Any] = {}
    detail_paths = CREATED[path][2] if path in CREATED else SENT[1]
    for target in detail_paths:
        for _method, op in _link_target(spec, target):
            parameters: dict[str, str] = {}
            for param in re.findall(r"{(\w+)}", target):
                parameters[f"path.{param}"] = ids.get(param, f"$request.path.{param}")
            if any(p["name"] == "If-Match" for p in op.get("parameters", [])):
                parameters["header.If-Match"] = "$response.header.ETag"
            name = op["operationId"]
            links[name] = {"operationId": name, "parameters": parameters}
    return links


def _add_links(spec: dict[str, Any]) -> None:
    for path, (field, param, _targets) in CREATED.items():
        response = spec["paths"][path]["post"]["responses"]["201"]
        ids = {param: f"$response.body#/{field}"}
        if path == "/v1/teams":
            ids = {"team_id": "$response.body#/id"}
        response["links"] = _links(spec, path, ids)
    send = spec["paths"][SENT[0]]["post"]["responses"]["200"]
    # The send route takes no team id: the API key names the team, so its events are
    # read with the team id the caller already knows (the link leaves it to the client).
    send["links"] = {
        name: link
        for name, link in _links(spec, SENT[0], {"message_id": "$response.body#/id"}).items()
        if "path.team_id" not in link["parameters"]
    }


def _error_schemas() -> dict[str, Any]:
    return {
        "ErrorDetail": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "The field, e.g. `to.0`."},
                "message": {"type": "string"},
            },
            "required": ["path", "message"],
        },
        "ErrorBody": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "Stable, machine-readable."},
                "message": {"type": "string", "description": "Readable, may change."},
                "details": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/ErrorDetail"},
                },
            },
            "required": ["code", "message", "details"],
        },
        "Error": {
            "type": "object",
            "properties": {"error": {"$ref": "#/components/schemas/ErrorBody"}},
            "required": ["error"],
        },
    }


def _complete_operation(
    spec: dict[str, Any], path: str, method: str, op: dict[str, Any], kind: str
) -> None:
    op["security"] = {
        "none": [],
        "session": [{"SessionToken": []}],
        "team": [{"ApiKey": []}, {"SessionToken": []}],
        "metrics": [{"MetricsToken": []}],
    }[kind]
    responses = op["responses"]
    responses.pop("422", None)  # FastAPI's HTTPValidationError: the API answers Error
    for status in sorted(statuses(method, path, op, kind)):
        responses[str(status)] = _error_response(status)
    responses["5XX"] = _server_error(path)
    for status, response in responses.items():
        if not status.startswith("2"):
            continue
        headers = response.setdefault("headers", {})
        if kind == "team":
            headers.update(RATE_HEADERS)
        created = status == "201" and path in CREATED
        if _etagged(path, method, spec) or (created and _etagged(_detail(path), "get", spec)):
            headers["ETag"] = ETAG
        if any(p["name"] == "Idempotency-Key" for p in op.get("parameters", [])):
            headers["Idempotent-Replayed"] = {
                "description": "`true` when this is the stored answer to an earlier "
                "request with the same Idempotency-Key.",
                "schema": {"type": "string", "enum": ["true"]},
            }
        if not headers:
            del response["headers"]
        example = RESPONSE_EXAMPLES.get((method, path))
        if example is not None:
            response.setdefault("content", {}).setdefault("application/json", {})["example"] = (
                example
            )


def _detail(path: str) -> str:
    return CREATED[path][2][0] if path in CREATED else path


def _describe_parameters(op: dict[str, Any]) -> None:
    if "requestBody" in op and op["operationId"] in TOKEN_IN_BODY:
        # The documented way is the body (`?token=` also works): required, never null.
        content = op["requestBody"]["content"]["application/json"]
        content["schema"] = {"$ref": "#/components/schemas/TokenIn"}
        if op["operationId"] == "teams_accept_invitation":
            content["schema"] = {"$ref": "#/components/schemas/AcceptIn"}
        op["requestBody"]["required"] = True
    for param in op.get("parameters", []):
        schema = param.get("schema", {})
        variants = [v for v in schema.get("anyOf", []) if v.get("type") != "null"]
        if param["in"] in {"query", "header"} and len(variants) == 1:
            # Optional means "may be absent": a query or header has no null to send.
            param["schema"] = {**variants[0], **{k: v for k, v in schema.items() if k != "anyOf"}}
        if param["name"] == "Idempotency-Key":
            param["description"] = (
                "Any unique string (<= 256 characters), e.g. a UUID. Retrying with the same "
                "key and body within 24 h returns the first answer (`Idempotent-Replayed: "
                "true`) and sends nothing again; the same key with another body is 409 "
                "`idempotency_key_reused`, and while the first request runs, 409 `in_progress`."
            )
        elif param["name"] == "cursor":
            param["description"] = (
                "Opaque: the `next_cursor` of the previous page (absent for the first page)."
            )
        elif param["name"] == "limit" and param["in"] == "query":
            param["description"] = "Page size."


def _document_dmarc_upload(op: dict[str, Any]) -> None:
    """The route reads its raw body itself, so FastAPI documents none."""
    report = {"type": "string", "format": "binary", "minLength": 1}
    op["requestBody"] = {
        "required": True,
        "description": "A DMARC aggregate or failure report, TLS-RPT JSON, .gz, .zip or an "
        "email carrying one; or a multipart form with the file.",
        "content": {
            "application/octet-stream": {"schema": report},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": report},
                    "required": ["file"],
                }
            },
        },
    }
    rejected = {
        "type": "object",
        "properties": {"detail": {"type": "string"}},
        "required": ["detail"],
        "description": "No valid report in the upload: the reasons, nothing stored.",
    }
    op["responses"]["201"] = {
        "description": "New reports stored.",
        "content": {"application/json": {"schema": {"type": "object"}}},
        "headers": op["responses"]["200"].get("headers", {}),
    }
    op["responses"]["200"]["description"] = "Every report in the upload was already known."
    op["responses"]["422"] = {
        "description": ERROR_TEXT[422],
        "content": {"application/json": {"schema": {"oneOf": [ERROR_REF, rejected]}}},
    }


def build_spec(app: FastAPI) -> dict[str, Any]:
    spec = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version="3.1.0",
        description=app.description,
        routes=app.routes,
    )
    spec["servers"] = [{"url": "/", "description": "This API's own origin"}]
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas.update(_error_schemas())
    spec["components"]["securitySchemes"] = SECURITY_SCHEMES
    dependants = {
        (method.lower(), context.path_format): context.dependant
        for context in routing.iter_route_contexts(app.routes)
        if isinstance(context.original_route, routing.APIRoute)
        for method in context.methods or ()
    }
    for path, item in spec["paths"].items():
        for method, op in item.items():
            _describe_parameters(op)
            _complete_operation(spec, path, method, op, auth_kind(path, dependants[(method, path)]))
    # FastAPI merges its own `list[dict]` schema into the batch's: keep only EmailIn items.
    batch = spec["paths"]["/v1/emails/batch"]["post"]["requestBody"]["content"]
    batch["application/json"]["schema"] = BATCH_SCHEMA
    _document_dmarc_upload(spec["paths"]["/v1/dmarc/reports"]["post"])
    _add_links(spec)
    add_webhooks(spec)
    return spec


def install_openapi(app: FastAPI) -> None:
    """Serve the completed document at /openapi.json (built once per process)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_spec(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def render(spec: dict[str, Any]) -> str:
    return json.dumps(spec, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> None:
    """`python -m api.openapi` writes docs/openapi.json (`--check`: exit 1 if it differs)."""
    from api.app import create_app
    from kibamail.settings import Settings

    text = render(create_app(Settings(environment="development")).openapi())
    if "--check" in sys.argv[1:]:
        sys.exit(0 if SPEC_PATH.read_text() == text else 1)
    SPEC_PATH.write_text(text)
    print(f"wrote {SPEC_PATH}")


if __name__ == "__main__":
    main()
