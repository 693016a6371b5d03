"""The sink's column-wise envelope check agrees with the per-message one."""

from __future__ import annotations

import orjson
import pytest

from kibamail.contracts import CorrelatedMessageEvent, MessageStatus, serialize
from pipelines.sinks.rows import envelope_error, envelopes_valid

pytestmark = pytest.mark.unit

GOOD = serialize(
    CorrelatedMessageEvent(team_id="t", message_id="m", status=MessageStatus.DELIVERED)
)


def with_fields(**changes: object) -> bytes:
    data = orjson.loads(GOOD)
    data.update(changes)
    return orjson.dumps({k: v for k, v in data.items() if v is not ...})


@pytest.mark.parametrize(
    "value",
    [
        GOOD,
        b"{oops",
        b"[1]",
        b"",
        with_fields(event_version=3),
        with_fields(event_id=""),
        with_fields(event_id=...),
        with_fields(occurred_at=None),
        with_fields(team_id=...),
        with_fields(message_id=""),
        with_fields(status=...),
        with_fields(extra="fine"),
    ],
)
def test_column_check_equals_per_message_check(value: bytes) -> None:
    alone = envelope_error(CorrelatedMessageEvent, value) is None
    assert envelopes_valid(CorrelatedMessageEvent, [GOOD, value, GOOD]) is alone
    assert envelopes_valid(CorrelatedMessageEvent, [GOOD] * 3)
