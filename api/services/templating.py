"""Customer templates rendered in Jinja2's sandbox: no attribute games, no file access."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from api.errors import ApiError

_ENV = ImmutableSandboxedEnvironment(autoescape=False, undefined=StrictUndefined)
_HTML_ENV = ImmutableSandboxedEnvironment(autoescape=True, undefined=StrictUndefined)


@lru_cache(maxsize=2048)
def _compiled(source: str, html: bool) -> Template:
    """Compiling is ~100x the cost of rendering; broadcasts render one source per contact."""
    return (_HTML_ENV if html else _ENV).from_string(source)


def render_template(source: str, variables: dict[str, Any], *, html: bool = False) -> str:
    try:
        return _compiled(source, html).render(**variables)
    except TemplateError as exc:
        raise ApiError(422, f"template error: {exc}", "template_error") from exc


def check_template(source: str) -> None:
    """Parse only: refuse broken templates when they are saved, not when sent."""
    try:
        _ENV.parse(source)
    except TemplateError as exc:
        raise ApiError(422, f"template syntax error: {exc}", "template_error") from exc
