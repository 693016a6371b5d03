"""Email templates (sandboxed Jinja2), checked for syntax when saved.

Preview renders with the same work budget as sending (api.services.templating): an
expensive template gets 422 template_too_expensive. The routes are plain ``def``, so
FastAPI runs them, rendering included, in its worker threads, not on the event loop.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from api.deps import DbDep, TeamCampaigns, TeamContentWrite
from api.errors import ApiError
from api.models import Template
from api.routers.etag import IfMatch, check_if_match, tagged
from api.routers.pagination import Cursor, Limit, paginate
from api.schemas import SafeLine
from api.services.templating import MAX_OUTPUT_CHARS, check_template, render_parts

router = APIRouter(prefix="/v1/teams/{team_id}/templates", tags=["templates"])


class TemplateIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    subject: SafeLine = Field(min_length=1, max_length=998)
    html: str = Field(default="", max_length=MAX_OUTPUT_CHARS)
    text: str = Field(default="", max_length=MAX_OUTPUT_CHARS)


class PreviewIn(BaseModel):
    variables: dict[str, Any] = Field(default_factory=dict)


def _out(t: Template) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "subject": t.subject, "html": t.html, "text": t.text}


def _get(db: DbDep, team_id: str, template_id: str) -> Template:
    row = db.get(Template, template_id)
    if row is None or row.team_id != team_id:
        raise ApiError(404, "template not found")
    return row


def _check(body: TemplateIn) -> None:
    for source in (body.subject, body.html, body.text):
        check_template(source)


@router.get("", summary="Templates")
def list_templates(
    team_id: str, ctx: TeamCampaigns, db: DbDep, cursor: Cursor = None, limit: Limit = 100
) -> dict[str, Any]:
    return paginate(
        db,
        select(Template).where(Template.team_id == ctx.team_id),
        Template.id,
        cursor,
        limit,
        _out,
    )


@router.post("", status_code=201, summary="Create a template")
def create(
    team_id: str, body: TemplateIn, ctx: TeamContentWrite, db: DbDep, response: Response
) -> dict[str, Any]:
    _check(body)
    row = Template(team_id=ctx.team_id, **body.model_dump())
    db.add(row)
    db.flush()
    return tagged(response, _out(row))


@router.get("/{template_id}", summary="One template (with its ETag)")
def get(
    team_id: str, template_id: str, ctx: TeamCampaigns, db: DbDep, response: Response
) -> dict[str, Any]:
    return tagged(response, _out(_get(db, ctx.team_id, template_id)))


@router.put("/{template_id}", summary="Replace a template (If-Match: no lost update)")
def update(
    team_id: str,
    template_id: str,
    body: TemplateIn,
    ctx: TeamContentWrite,
    db: DbDep,
    response: Response,
    if_match: IfMatch = None,
) -> dict[str, Any]:
    row = _get(db, ctx.team_id, template_id)
    check_if_match(if_match, _out(row))
    _check(body)
    for name, value in body.model_dump().items():
        setattr(row, name, value)
    return tagged(response, _out(row))


@router.delete("/{template_id}", summary="Delete a template")
def delete(
    team_id: str, template_id: str, ctx: TeamContentWrite, db: DbDep, if_match: IfMatch = None
) -> dict[str, Any]:
    row = _get(db, ctx.team_id, template_id)
    check_if_match(if_match, _out(row))
    db.delete(row)
    return {"deleted": template_id}


@router.post("/{template_id}/preview", summary="Render with variables")
def preview(
    team_id: str, template_id: str, body: PreviewIn, ctx: TeamCampaigns, db: DbDep
) -> dict[str, Any]:
    row = _get(db, ctx.team_id, template_id)
    subject, html, text = render_parts(row.subject, row.html, row.text, body.variables)
    return {"subject": subject, "html": html or "", "text": text or ""}
