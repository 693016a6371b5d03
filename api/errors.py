"""One error body shape for every failure: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, routing
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger(__name__)

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """Raise anywhere in a request; rendered in the one error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _STATUS_CODES.get(status, "error")
        self.details = details or []
        self.headers = headers


def error_response(
    status: int,
    message: str,
    code: str | None = None,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {
        "error": {
            "code": code or _STATUS_CODES.get(status, "error"),
            "message": message,
            "details": details or [],
        }
    }
    return JSONResponse(body, status_code=status, headers=headers)


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """'body.to.0' -> 'to.0': clients know which field, not FastAPI's internals."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:]
    return ".".join(parts)


_BODY_TYPE_ERRORS = frozenset({"model_attributes_type", "dict_type", "list_type"})


def _not_json_body(request: Request, exc: RequestValidationError) -> bool:
    """A JSON-body route sent another media type: FastAPI reports it as a body type error
    (422); HTTP calls it 415."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not content_type or content_type == "application/json" or content_type.endswith("+json"):
        return False
    return any(
        tuple(err.get("loc", ())) == ("body",) and err.get("type") in _BODY_TYPE_ERRORS
        for err in exc.errors()
    )


def allowed_methods(request: Request) -> set[str]:
    """Every method some route serves at this path. Starlette's own 405 names only the
    first route whose path matched, and FastAPI has one route per method."""
    matching: list[tuple[int, set[str]]] = []
    for context in routing.iter_route_contexts(request.app.routes):
        match, _ = context.matches(request.scope)
        if match != Match.NONE:
            path = getattr(context, "path_format", "")
            matching.append((path.count("{"), set(getattr(context, "methods", None) or ())))
    # `/webhooks/event-types` also matches `/webhooks/{endpoint_id}`: the literal path wins.
    fewest = min((params for params, _ in matching), default=0)
    return {m for params, methods in matching if params == fewest for m in methods}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.code, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        if _not_json_body(request, exc):
            return error_response(
                415, "the request body must be JSON (Content-Type: application/json)"
            )
        details = [
            {"path": field_path(err.get("loc", ())), "message": str(err.get("msg", ""))}
            for err in exc.errors()
        ]
        summary = "; ".join(f"{d['path'] or 'body'}: {d['message']}" for d in details[:5])
        return error_response(422, f"invalid request: {summary}", "validation_error", details)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        """Any unhandled error still answers in the one shape (the traceback is logged)."""
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal error; the request may be retried")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else {}
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(sorted(allowed_methods(request)))
        return error_response(exc.status_code, str(exc.detail), headers=headers or None)
