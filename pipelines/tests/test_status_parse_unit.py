"""The batch parser's fast path decides exactly what the contract's validation decides."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from pydantic import BaseModel, Field

from kibamail.contracts import (
    ContractError,
    MessageStatus,
    MessageStatusEvent,
    deserialize,
    serialize,
)
from pipelines.status_parse import (
    canonical_check,
    is_canonical_status,
    is_canonical_utc,
    parse_canonical_batch,
    parse_statuses,
)
from pipelines.tests.fakes import status_event

pytestmark = pytest.mark.unit

CANONICAL = serialize(
    status_event("m-1", MessageStatus.BOUNCED, bounce_class="hard", smtp_code=550, attempt=2)
)


def contract_verdict(raw: bytes) -> bytes | str:
    """What the contract alone says: the canonical JSON, or the dead-letter reason."""
    try:
        event = deserialize(MessageStatusEvent, raw)
    except ContractError as exc:
        return str(exc)
    return serialize(event)


def fast_verdict(raw: bytes) -> bytes | str:
    [result] = parse_statuses([raw])
    if isinstance(result, ContractError):
        return str(result)
    return orjson.dumps(result, option=orjson.OPT_UTC_Z)


def mutated(**changes: object) -> bytes:
    data = orjson.loads(CANONICAL)
    for name, value in changes.items():
        if value is ...:
            del data[name]
        else:
            data[name] = value
    return orjson.dumps(data)


def test_what_the_mta_writes_takes_the_fast_path() -> None:
    for status in MessageStatus:
        event = MessageStatusEvent(
            team_id="t",
            message_id="m",
            status=status,
            occurred_at=datetime(2026, 1, 31, 9, 0, 1, 5, UTC),
        )
        assert is_canonical_status(orjson.loads(serialize(event)))
    assert is_canonical_status(orjson.loads(serialize(MessageStatusEvent(
        team_id="t", message_id="m", status=MessageStatus.DELIVERED
    ))))  # fmt: skip


@pytest.mark.parametrize(
    "raw",
    [
        CANONICAL,
        mutated(occurred_at="2026-11-01T12:00:00+02:00"),
        mutated(occurred_at="2026-11-01T12:00:00.000000Z"),
        mutated(occurred_at="2026-11-01T12:00:00"),
        mutated(occurred_at="2026-02-29T12:00:00Z"),
        mutated(occurred_at="2024-02-29T12:00:00Z"),
        mutated(occurred_at="2026-04-31T12:00:00Z"),
        mutated(occurred_at=1764300000),
        mutated(smtp_code=550.0),
        mutated(smtp_code="550"),
        mutated(attempt=True),
        mutated(status="exploded"),
        mutated(kind="marketing"),
        mutated(bounce_class="nonsense"),
        mutated(event_id="x" * 64),
        mutated(event_id="x" * 65),
        mutated(event_id=""),
        mutated(team_id=""),
        mutated(message_id="m" * 256),
        mutated(event_version=2),
        mutated(message_id=...),
        mutated(recipient=...),
        mutated(extra_field="ignored"),
        mutated(recipient="caf\u00e9@example.com"),
        b'{"event_id": "e", "occurred_at": "2026-11-01T12:00:00Z", "team_id": "t",'
        b' "message_id": "m", "status": "delivered"}',
        CANONICAL.replace(b'"recipient":"', b'"recipient":"\\u0041'),
        CANONICAL[:-1] + b',"status":"failed"}',
        b"{not json",
        b"[1, 2]",
        b"",
        b"\xff\xfe",
    ],
)
def test_same_verdict_as_the_contract(raw: bytes) -> None:
    assert fast_verdict(raw) == contract_verdict(raw)
    # The column-wise batch check accepts a batch exactly when each payload passes alone.
    try:
        alone = is_canonical_status(orjson.loads(raw))
    except orjson.JSONDecodeError:
        alone = False
    batch = parse_canonical_batch([CANONICAL, raw, CANONICAL])
    assert (batch is not None) is alone
    if batch is not None:
        assert batch[1] == orjson.loads(raw)


def test_late_days_of_the_month_are_checked_in_batches() -> None:
    good = [mutated(occurred_at=f"2024-0{m}-{d}T00:00:00Z") for m, d in ((1, 31), (2, 29))]
    assert parse_canonical_batch([CANONICAL, *good]) is not None
    assert parse_canonical_batch([*good, mutated(occurred_at="2026-02-29T00:00:00Z")]) is None


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("2026-11-28T05:57:54Z", True),
        ("2026-11-28T05:57:54.123456Z", True),
        ("2024-02-29T23:59:59Z", True),
        ("2026-02-29T00:00:00Z", False),
        ("2026-11-28T05:57:54.000000Z", False),
        ("2026-11-28T05:57:54.123Z", False),
        ("2026-11-28T24:00:00Z", False),
        ("0000-01-01T00:00:00Z", False),
        ("2026-11-28 05:57:54Z", False),
        ("2026-11-28T05:57:54+00:00", False),
        ("\uff12\uff10\uff12\uff16-11-28T05:57:54Z", False),  # full-width digits
    ],
)
def test_canonical_utc(text: str, canonical: bool) -> None:
    assert is_canonical_utc(text) is canonical


def test_contract_changes_without_a_rule_are_refused() -> None:
    class WithFloat(BaseModel):
        rate: float

    class WithPattern(BaseModel):
        code: str = Field(pattern=r"^\d+$")

    for model in (WithFloat, WithPattern):
        with pytest.raises(TypeError, match="no fast-path rule"):
            canonical_check(model)
