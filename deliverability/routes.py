"""FastAPI routers for the API service to mount (it owns auth, teams and clients).

    from deliverability.routes import build_dmarc_router, build_validation_router
    app.include_router(build_validation_router(get_resolver), dependencies=[Depends(auth)])
    app.include_router(build_dmarc_router(get_clickhouse, get_team_id))

Each ``get_*`` is an ordinary FastAPI dependency (callable, may itself depend on
the request/auth); pass ``lambda: None`` as the resolver for offline-only checks.
"""

# No `from __future__ import annotations`: FastAPI must evaluate the Annotated[..., Depends(x)]
# hints eagerly, because x is a local of the factory functions below.
import asyncio
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from deliverability.ingest import ingest_bytes
from deliverability.validation import validate_address, validate_batch

MAX_UPLOAD_BYTES = 16 * 1024 * 1024
MAX_BATCH = 1000


class ValidateRequest(BaseModel):
    email: str = Field(min_length=1, max_length=1024)


class ValidateBatchRequest(BaseModel):
    emails: list[str] = Field(min_length=1, max_length=MAX_BATCH)


def build_validation_router(get_resolver: Callable[..., Any]) -> APIRouter:
    """POST /v1/validate and /v1/validate/batch (DNS via the injected resolver)."""
    router = APIRouter(prefix="/v1/validate", tags=["validation"])

    @router.post("")
    async def validate_one(
        body: ValidateRequest, resolver: Annotated[Any, Depends(get_resolver)]
    ) -> dict[str, Any]:
        result = await asyncio.to_thread(validate_address, body.email, resolver)
        return result.as_dict()

    @router.post("/batch")
    async def validate_many(
        body: ValidateBatchRequest, resolver: Annotated[Any, Depends(get_resolver)]
    ) -> dict[str, Any]:
        if any(len(e) > 1024 for e in body.emails):
            raise HTTPException(422, "each email must be at most 1024 characters")
        results = await asyncio.to_thread(validate_batch, body.emails, resolver)
        counts: dict[str, int] = {}
        for result in results:
            counts[result.result] = counts.get(result.result, 0) + 1
        return {"results": [r.as_dict() for r in results], "summary": counts}

    return router


async def _read_upload(request: Request) -> tuple[bytes, str]:
    """The raw body (any report format), or the first file of a multipart form."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, f"upload larger than {MAX_UPLOAD_BYTES} bytes")
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        for value in form.values():
            if hasattr(value, "read"):
                data = await value.read(MAX_UPLOAD_BYTES + 1)
                return data, getattr(value, "filename", None) or "upload"
        raise HTTPException(422, "multipart upload without a file field")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"upload larger than {MAX_UPLOAD_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks), request.headers.get("x-filename", "upload")


def build_dmarc_router(
    get_clickhouse: Callable[..., Any], get_team_id: Callable[..., Any]
) -> APIRouter:
    """POST /v1/dmarc/reports: upload XML/.gz/.zip/email/TLS-RPT JSON.

    201 when new reports were stored, 200 when all were already known, 422 with
    the reasons (and nothing stored) when the upload holds no valid report.
    """
    router = APIRouter(prefix="/v1/dmarc", tags=["dmarc"])

    @router.post("/reports")
    async def upload_report(
        request: Request,
        clickhouse: Annotated[Any, Depends(get_clickhouse)],
        team_id: Annotated[str, Depends(get_team_id)],
    ) -> JSONResponse:
        data, name = await _read_upload(request)
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"upload larger than {MAX_UPLOAD_BYTES} bytes")
        if not data:
            raise HTTPException(422, "empty upload: send a report file as the request body")
        result = await asyncio.to_thread(
            ingest_bytes, data, clickhouse, name=name, team_id=team_id, via="api"
        )
        if not result.accepted:
            return JSONResponse(
                status_code=422,
                content={"detail": "no valid report in the upload", **result.as_dict()},
            )
        return JSONResponse(status_code=201 if result.stored else 200, content=result.as_dict())

    return router
