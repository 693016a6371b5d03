"""Customer templates rendered in Jinja2's sandbox: no attribute games, no file access."""

from __future__ import annotations

from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from api.errors import ApiError

_ENV = ImmutableSandboxedEnvironment(autoescape=False, undefined=StrictUndefined)
_HTML_ENV = ImmutableSandboxedEnvironment(autoescape=True, undefined=StrictUndefined)


def render_template(source: str, variables: dict[str, Any], *, html: bool = False) -> str:
    env = _HTML_ENV if html else _ENV
    try:
        return env.from_string(source).render(**variables)
    except TemplateError as exc:
        raise ApiError(422, f"template error: {exc}", "template_error") from exc


def check_template(source: str) -> None:
    """Parse only: refuse broken templates when they are saved, not when sent."""
    try:
        _ENV.parse(source)
    except TemplateError as exc:
        raise ApiError(422, f"template syntax error: {exc}", "template_error") from exc
