"""What FastAPI cannot see in a route's signature: statuses raised deep in services,
the links between operations, and the example bodies (used by api.openapi)."""

from __future__ import annotations

from typing import Any

# Statuses an operation raises beyond those api.openapi derives from its signature
# (401/403/429 from authentication, 404 from path ids, 422 from parameters, ...).
# Read off the routers and the services they call.
EXTRA_STATUSES: dict[tuple[str, str], set[int]] = {
    ("post", "/v1/emails"): {403, 409},
    ("post", "/v1/emails/batch"): {403, 409},
    ("post", "/v1/emails/{message_id}/cancel"): {409},
    ("get", "/t/c/{token}"): {400},
    ("get", "/metrics"): {401, 404},
    ("post", "/v1/auth/signup"): {409, 429},
    ("post", "/v1/auth/login"): {401, 429},
    ("post", "/v1/auth/2fa/enroll"): {409},
    ("post", "/v1/auth/2fa/verify"): {409},
    ("post", "/v1/auth/2fa/disable"): {409},
    ("get", "/v1/auth/verify-email"): {400},
    ("post", "/v1/auth/verify-email"): {400},
    ("post", "/v1/auth/verify-email/resend"): {409},
    ("patch", "/v1/teams/{team_id}/members/{user_id}"): {409},
    ("delete", "/v1/teams/{team_id}/members/{user_id}"): {409},
    ("get", "/v1/invitations/accept"): {400},
    ("post", "/v1/invitations/accept"): {400},
    ("post", "/v1/teams/{team_id}/domains"): {409},
    ("post", "/v1/teams/{team_id}/fields"): {409},
    ("post", "/v1/teams/{team_id}/lists/{list_id}/contacts"): {409},
    ("get", "/confirm/{token}"): {400},
    ("post", "/confirm/{token}"): {400},
    ("put", "/v1/teams/{team_id}/broadcasts/{broadcast_id}"): {409},
    ("delete", "/v1/teams/{team_id}/broadcasts/{broadcast_id}"): {409},
    ("post", "/v1/teams/{team_id}/broadcasts/{broadcast_id}/launch"): {409},
    ("post", "/v1/teams/{team_id}/broadcasts/{broadcast_id}/pause"): {409},
    ("post", "/v1/teams/{team_id}/broadcasts/{broadcast_id}/resume"): {409},
    ("post", "/v1/teams/{team_id}/broadcasts/{broadcast_id}/cancel"): {409},
}

# Take their token as a JSON body or as ?token= (the mailed link): the body is documented.
TOKEN_IN_BODY = {"accounts_verify_email", "teams_accept_invitation"}

# Reads served from the warehouse: 503 unavailable when it is down (never "no data").
WAREHOUSE_PREFIXES = ("/v1/teams/{team_id}/messages", "/v1/teams/{team_id}/contacts/{contact_id}/")
WAREHOUSE_PATHS = {"/v1/teams/{team_id}/broadcasts/{broadcast_id}/stats", "/v1/dmarc/reports"}

# Where a created resource is read, changed and deleted. key: the creating operation's
# path; value: (the field of the 201 body that names it, path parameter, detail paths).
CREATED: dict[str, tuple[str, str, list[str]]] = {
    "/v1/teams": ("id", "team_id", ["/v1/teams/{team_id}"]),
    "/v1/teams/{team_id}/api-keys": ("id", "key_id", ["/v1/teams/{team_id}/api-keys/{key_id}"]),
    "/v1/teams/{team_id}/smtp-credentials": (
        "username",
        "username",
        ["/v1/teams/{team_id}/smtp-credentials/{username}"],
    ),
    "/v1/teams/{team_id}/domains": (
        "id",
        "domain_id",
        [
            "/v1/teams/{team_id}/domains/{domain_id}",
            "/v1/teams/{team_id}/domains/{domain_id}/verify",
        ],
    ),
    "/v1/teams/{team_id}/lists": (
        "id",
        "list_id",
        [
            "/v1/teams/{team_id}/lists/{list_id}",
            "/v1/teams/{team_id}/lists/{list_id}/contacts",
            "/v1/teams/{team_id}/lists/{list_id}/import",
        ],
    ),
    "/v1/teams/{team_id}/lists/{list_id}/contacts": (
        "id",
        "contact_id",
        [
            "/v1/teams/{team_id}/contacts/{contact_id}",
            "/v1/teams/{team_id}/contacts/{contact_id}/timeline",
        ],
    ),
    "/v1/teams/{team_id}/suppressions": (
        "email",
        "email",
        ["/v1/teams/{team_id}/suppressions/{email}"],
    ),
    "/v1/teams/{team_id}/templates": (
        "id",
        "template_id",
        [
            "/v1/teams/{team_id}/templates/{template_id}",
            "/v1/teams/{team_id}/templates/{template_id}/preview",
        ],
    ),
    "/v1/teams/{team_id}/broadcasts": (
        "id",
        "broadcast_id",
        [
            "/v1/teams/{team_id}/broadcasts/{broadcast_id}",
            "/v1/teams/{team_id}/broadcasts/{broadcast_id}/launch",
            "/v1/teams/{team_id}/broadcasts/{broadcast_id}/pause",
            "/v1/teams/{team_id}/broadcasts/{broadcast_id}/resume",
            "/v1/teams/{team_id}/broadcasts/{broadcast_id}/cancel",
            "/v1/teams/{team_id}/broadcasts/{broadcast_id}/stats",
        ],
    ),
    "/v1/teams/{team_id}/webhooks": (
        "id",
        "endpoint_id",
        [
            "/v1/teams/{team_id}/webhooks/{endpoint_id}",
            "/v1/teams/{team_id}/webhooks/{endpoint_id}/rotate-secret",
            "/v1/teams/{team_id}/webhooks/{endpoint_id}/drop-old-secrets",
            "/v1/teams/{team_id}/webhooks/{endpoint_id}/deliveries",
        ],
    ),
}
# A sent email's id leads to its events and (when scheduled) its cancellation.
SENT: tuple[str, list[str]] = (
    "/v1/emails",
    ["/v1/teams/{team_id}/messages/{message_id}/events", "/v1/emails/{message_id}/cancel"],
)

ERROR_EXAMPLES: dict[int, tuple[str, str]] = {
    400: ("bad_request", "this endpoint needs an API key (or a team id in the path)"),
    401: ("unauthorized", "missing bearer token"),
    403: ("forbidden", "role author may not domains:manage"),
    404: ("not_found", "team not found"),
    409: ("conflict", "this domain is already registered"),
    412: ("precondition_failed", "the resource changed since you read it"),
    413: ("payload_too_large", "request body exceeds 10485760 bytes"),
    415: ("unsupported_media_type", "the request body must be JSON"),
    422: ("validation_error", "invalid request: name: String should have at least 1 character"),
    429: ("rate_limited", "rate limit exceeded for this API key"),
}

# Success examples of the operations a newcomer calls first.
RESPONSE_EXAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/v1/auth/signup"): {
        "user": {"id": "usr_01", "email": "ada@example.com", "email_verified": False},
        "verification_email_sent": True,
        "token": "kms_...",
        "expires_at": "2025-01-15T09:30:00Z",
    },
    ("post", "/v1/auth/login"): {"token": "kms_...", "expires_at": "2025-01-15T09:30:00Z"},
    ("post", "/v1/teams"): {
        "id": "tm_01",
        "name": "Acme",
        "role": "administrator",
        "your_role": "administrator",
        "created_at": "2025-01-01T09:30:00Z",
    },
    ("post", "/v1/emails"): {"id": "msg_01", "status": "queued"},
    ("post", "/v1/teams/{team_id}/api-keys"): {
        "id": "key_01",
        "name": "production",
        "prefix": "km_AbCd",
        "scope": "sending",
        "role": "administrator",
        "created_at": "2025-01-01T09:30:00Z",
        "last_used_at": None,
        "revoked": False,
        "key": "km_...",
    },
}
