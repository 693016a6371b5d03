"""schemathesis hooks for test_schemathesis.py (loaded by the `st` subprocess through its
config file; the tokens come from the environment the test sets).

Which credential a generated request carries: a member's session token for the
session-only and team routes (the member is the seeded team's Administrator), the
sending-scope API key for the send and validation routes (they take the team from the
key), the full-scope key for DMARC uploads, a throwaway member's session for logout (so
the fuzzer cannot log the main member out mid-run), the metrics token for /metrics.
Webhook URLs are pinned to a loopback address: the API resolves a webhook's host when it
is registered, and the run must not send DNS queries off the machine.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

LOOPBACK_HOOK_URL = "http://127.0.0.1:9/kibamail-hook"
KEY_ROUTES = ("/v1/emails", "/v1/validate")


def token_for(path: str) -> str:
    if path == "/metrics":
        return os.environ["KM_METRICS_TOKEN"]
    if path == "/v1/auth/logout":
        return os.environ["KM_THROWAWAY_SESSION"]
    if path.startswith(KEY_ROUTES):
        return os.environ["KM_SENDING_KEY"]
    if path.startswith("/v1/dmarc"):
        return os.environ["KM_FULL_KEY"]
    return os.environ["KM_SESSION"]


@schemathesis.auth()
class KibamailAuth:
    def get(self, case: Any, ctx: Any) -> str:
        return "per-operation"

    def set(self, case: Any, data: str, ctx: Any) -> None:
        case.headers = dict(case.headers or {})
        case.headers["Authorization"] = f"Bearer {token_for(case.operation.path)}"


@schemathesis.hook
def before_call(ctx: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if "/webhooks" in case.operation.path and isinstance(case.body, dict) and "url" in case.body:
        case.body["url"] = LOOPBACK_HOOK_URL
