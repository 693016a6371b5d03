"""Lean ASGI handlers for the three hot endpoints: POST /v1/emails, the open pixel and
the click redirect.

Why: FastAPI's routing, dependency resolution and response machinery cost more CPU per
request than the send itself (profiled: ~65% of a send). These handlers serve only the
happy path — a valid JSON body with a known API key, a valid tracking token — with the
same models, checks and Redis/Kafka hand-over as the FastAPI routes. Anything else
(session token, missing/unknown/revoked key, invalid body, unverified domain, template,
`send_at` in the future, forged token...) is handed, body included, to the FastAPI route,
which stays the reference: it answers errors in the one error shape and documents the
endpoints in OpenAPI. The middleware sits inside the metrics and body-limit middlewares,
so those apply to both paths.
"""

from __future__ import annotations

import gc
from types import SimpleNamespace
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse

from api.errors import ApiError, error_response
from api.fastpath.send_script import (
    QUEUED,
    RATE_LIMITED,
    REPLAY,
    STALE_KEY,
    SUPPRESSED,
    forget_key,
    key_record,
    send_in_one_trip,
)
from api.routers.tracking import NO_CACHE_HEADERS, PIXEL_GIF, click_event, open_event
from api.schemas import EmailIn
from api.services.accounts import touch_api_key
from api.services.event_producer import event_outbox
from api.services.idempotency import IdempotencyClaim, stored_response
from api.services.ratelimit import RateDecision, team_refusal
from api.services.security import sha256_hex
from api.services.send_time import in_future
from api.services.sending import prepare, suppressed_error
from api.state import AppState
from kibamail.contracts import Topic

Scope = dict[str, Any]
Message = dict[str, Any]

# scope["route"] stand-ins, so the metrics middleware labels hot requests like FastAPI's.
_SEND_ROUTE = SimpleNamespace(path="/v1/emails")
_OPEN_ROUTE = SimpleNamespace(path="/t/o/{token}")
_CLICK_ROUTE = SimpleNamespace(path="/t/c/{token}")

_NO_CACHE = NO_CACHE_HEADERS["Cache-Control"]
_PIXEL_START: Message = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"image/gif"),
        (b"content-length", str(len(PIXEL_GIF)).encode()),
        (b"cache-control", _NO_CACHE.encode()),
    ],
}
_PIXEL_BODY: Message = {"type": "http.response.body", "body": PIXEL_GIF}


def freeze_startup_heap() -> None:
    """Move everything alive now (modules, the app, routers, models: ~all of a worker's
    heap) to the GC's permanent generation.

    Why: a full (gen2) collection traverses the whole heap; in ``bench.api``'s paced run
    each uvicorn worker paused 150-225 ms for it (``bench.api_probe``: gc.callbacks and
    event-loop lag), which is the p99.9 of the send. Frozen objects are never traversed,
    so later full collections only walk what serving allocates. Called once per worker,
    on its first HTTP request (after the lifespan start-up); no ``gc.collect()`` first,
    which would itself stall that request as long as the pause it removes."""
    gc.freeze()


class HotPaths:
    """ASGI middleware: serve the hot endpoints' happy path, delegate everything else."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._heap_frozen = False

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            if not self._heap_frozen:
                self._heap_frozen = True
                freeze_startup_heap()
            method, path = scope["method"], scope["path"]
            if method == "POST" and path == "/v1/emails":
                scope["route"] = _SEND_ROUTE
                await self._send_email(scope, receive, send)
                return
            if method == "GET" and path.startswith("/t/o/"):
                scope["route"] = _OPEN_ROUTE
                if await self._open(scope, path[5:]):
                    await send(_PIXEL_START)
                    await send(_PIXEL_BODY)
                    return
                del scope["route"]
            elif method == "GET" and path.startswith("/t/c/"):
                scope["route"] = _CLICK_ROUTE
                url = await self._click(scope, path[5:])
                if url is not None:
                    response = RedirectResponse(url, 302, headers={"Cache-Control": _NO_CACHE})
                    await response(scope, receive, send)
                    return
                del scope["route"]
        await self.app(scope, receive, send)

    async def _send_email(self, scope: Scope, receive: Any, send: Any) -> None:
        body = await _read_body(receive)
        try:
            answered = await _fast_send(scope, body, send)
        except ApiError as exc:
            response = error_response(exc.status, exc.message, exc.code, exc.details, exc.headers)
            await response(scope, receive, send)
            return
        if not answered:
            del scope["route"]  # the router sets the real one
            await self.app(scope, _replay(body, receive), send)

    @staticmethod
    async def _open(scope: Scope, token: str) -> bool:
        state: AppState = scope["app"].state.km
        try:
            event = open_event(state.signer, token, *_client(scope))
        except ApiError:  # forged or odd: the FastAPI route answers it
            return False
        await event_outbox(state).add(Topic.EMAIL_OPENS, event, key=event.message_id)
        return True

    @staticmethod
    async def _click(scope: Scope, token: str) -> str | None:
        state: AppState = scope["app"].state.km
        try:
            event = click_event(state.signer, token, *_client(scope))
        except ApiError:
            return None
        await event_outbox(state).add(Topic.EMAIL_CLICKS, event, key=event.message_id)
        return event.url


async def _read_body(receive: Any) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while message.get("more_body", False):
        message = await receive()
        chunks.append(message.get("body", b""))
    return b"".join(chunks)


def _replay(body: bytes, receive: Any) -> Any:
    """A receive() that hands the already-read body to the FastAPI route once."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return dict(await receive())

    return replayed


def _client(scope: Scope) -> tuple[str, str]:
    client = scope.get("client")
    user_agent = b""
    for name, value in scope["headers"]:
        if name == b"user-agent":
            user_agent = value
            break
    return (client[0] if client else ""), user_agent.decode("latin-1")[:1000]


def is_json_content_type(content_type: bytes | None) -> bool:
    """The content types FastAPI parses as JSON for a body model (strict_content_type, its
    default: a request without Content-Type is not JSON)."""
    if content_type is None:
        return False
    main = content_type.partition(b";")[0].strip().lower()
    return main == b"application/json" or (
        main.startswith(b"application/") and main.endswith(b"+json")
    )


async def _fast_send(scope: Scope, body: bytes, send: Any) -> bool:
    """Answer POST /v1/emails, or return False (nothing stored) to let FastAPI answer."""
    authorization = content_type = idempotency_key = None
    for name, value in scope["headers"]:  # the first of repeated headers, as Starlette reads
        if name == b"authorization":
            authorization = authorization if authorization is not None else value
        elif name == b"content-type":
            content_type = content_type if content_type is not None else value
        elif name == b"idempotency-key":
            idempotency_key = idempotency_key if idempotency_key is not None else value
    if authorization is None or not is_json_content_type(content_type):
        return False
    scheme, _, raw_token = authorization.partition(b" ")
    token = raw_token.strip()
    if scheme.lower() != b"bearer" or not token.startswith(b"km_"):
        return False
    try:
        email = EmailIn.model_validate_json(body)
    except ValidationError:
        return False
    if email.send_at is not None and in_future(email.send_at):
        return False
    state: AppState = scope["app"].state.km
    key_hash = sha256_hex(token.decode("latin-1"))
    key = await key_record(state, key_hash)
    if key is None:
        return False
    try:
        claim = (
            IdempotencyClaim(state, key.team_id, idempotency_key.decode("latin-1"), body)
            if idempotency_key is not None
            else None
        )
        message, mapping = await prepare(
            state, key.team_id, email, api_key_id=key.id, check_suppression=False
        )
    except ApiError:
        return False  # the FastAPI route refuses it the same way (and counts the token)
    result = await send_in_one_trip(state, key, message, mapping, claim)
    if result.outcome == STALE_KEY:
        forget_key(state, key_hash)
        return False
    limiter = state.limiter
    decision = RateDecision(
        result.outcome != RATE_LIMITED, result.tokens, limiter.rate, limiter.burst, False, None
    )
    if result.outcome == RATE_LIMITED:
        raise ApiError(
            429,
            "rate limit exceeded for this API key",
            headers={**decision.headers(), "Retry-After": decision.retry_after()},
        )
    if result.first_use:
        await run_in_threadpool(touch_api_key, state.sessions, key.id)
    if result.team is not None:  # TEAM_REFUSED: pause, bulk score, team rate or daily cap
        raise team_refusal(result.team, state.settings.sending)
    replayed = result.outcome == REPLAY
    if replayed:
        assert claim is not None
        answer = stored_response(result.detail, claim.fingerprint)
    elif result.outcome == SUPPRESSED:
        lowered = set(orjson.loads(result.detail))
        error = suppressed_error([r for r in message.recipients if r.lower() in lowered])
        stored = await claim.replay_if_stored() if claim is not None else None
        if stored is None:
            raise error
        answer, replayed = stored, True
    else:
        assert result.outcome == QUEUED
        answer = {"id": message.message_id, "status": "queued"}
    await _json_response(send, answer, decision.headers(), replayed)
    return True


async def _json_response(
    send: Any, answer: dict[str, Any], headers: dict[str, str], replayed: bool
) -> None:
    payload = orjson.dumps(answer)
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in headers.items()),
    ]
    if replayed:
        raw_headers.append((b"idempotent-replayed", b"true"))
    await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})
