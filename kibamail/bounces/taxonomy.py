"""The bounce taxonomy (``taxonomy.toml``), validated and compiled once at import.

The rules are data so that a provider's new wording is a one-line change with its example
beside it; pydantic refuses an unknown reason or action, an unknown key, a status pattern
that is not ``x.S.D``/``x.S`` and a regex that does not compile, so a bad file fails the
import (and every test) instead of misclassifying in production.
"""

from __future__ import annotations

import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .model import Action, Reason

TAXONOMY_PATH = Path(__file__).with_name("taxonomy.toml")

_STATUS_PATTERN = re.compile(r"^[x245]\.\d{1,3}(?:\.\d{1,3})?$")
_SUPPRESS_WHEN_PERMANENT = frozenset(
    {Reason.USER_UNKNOWN, Reason.HOST_UNKNOWN, Reason.HAS_MOVED, Reason.NULL_MX}
)


def _check_regexes(values: list[str]) -> list[str]:
    for value in values:
        try:
            re.compile(value, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"bad regex {value!r}: {exc}") from exc
    return values


def _check_status(value: str) -> str:
    if not _STATUS_PATTERN.match(value):
        raise ValueError(f"status pattern {value!r} is not x.S.D, x.S or 5.S.D")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReasonEntry(_Strict):
    action: Action
    description: Annotated[str, Field(min_length=3)]


class SoftBounceWindow(_Strict):
    """When repeated soft bounces of one address suppress it (counted by the MTA)."""

    count: Annotated[int, Field(ge=2)]
    days: Annotated[int, Field(ge=1)]
    reasons: list[Reason]
    description: str


class Rule(_Strict):
    """One ordered rule; every matcher given must match (texts: any of them)."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9_.]+$")]
    reason: Reason
    text: list[str] = []
    status: list[str] = []
    codes: list[Annotated[int, Field(ge=200, le=599)]] = []
    hosts: list[str] = []
    examples: Annotated[list[str], Field(min_length=1)]
    not_examples: list[str] = []
    example_host: str = ""

    _text = field_validator("text", "hosts")(_check_regexes)

    @field_validator("status")
    @classmethod
    def _statuses(cls, values: list[str]) -> list[str]:
        return [_check_status(v) for v in values]

    @model_validator(mode="after")
    def _has_matcher(self) -> Rule:
        if not (self.text or self.status or self.codes):
            raise ValueError(f"rule {self.id} needs text, status or codes")
        return self


class Taxonomy(_Strict):
    version: int
    soft_bounce_window: SoftBounceWindow
    reasons: dict[Reason, ReasonEntry]
    status_codes: dict[str, Reason]
    status_classes: dict[str, Reason]
    reply_codes: dict[int, Reason]
    rules: list[Rule]

    @field_validator("status_codes", "status_classes")
    @classmethod
    def _status_keys(cls, table: dict[str, Reason]) -> dict[str, Reason]:
        for key in table:
            _check_status(key)
        return table

    @model_validator(mode="after")
    def _complete(self) -> Taxonomy:
        missing = set(Reason) - set(self.reasons)
        if missing:
            raise ValueError(f"reasons without an entry: {sorted(missing)}")
        ids = [r.id for r in self.rules]
        duplicated = {i for i in ids if ids.count(i) > 1}
        if duplicated:
            raise ValueError(f"duplicate rule ids: {sorted(duplicated)}")
        for reason in _SUPPRESS_WHEN_PERMANENT:
            if self.reasons[reason].action is not Action.SUPPRESS:
                raise ValueError(f"{reason} must suppress (when permanent)")
        return self

    def action(self, reason: Reason) -> Action:
        return self.reasons[reason].action


def load_taxonomy(path: Path = TAXONOMY_PATH) -> Taxonomy:
    with path.open("rb") as fh:
        return Taxonomy.model_validate(tomllib.load(fh))


@cache
def taxonomy() -> Taxonomy:
    """The shipped taxonomy (loaded once)."""
    return load_taxonomy()


SUPPRESS_WHEN_PERMANENT = _SUPPRESS_WHEN_PERMANENT
TAXONOMY = taxonomy()
