"""The event contracts: one module, committed schemas, strict parsing."""

from __future__ import annotations

import pytest

from kibamail.contracts import (
    EVENT_MODELS,
    ContractError,
    MessageStatusEvent,
    OutboundMessage,
    Topic,
    deserialize,
    serialize,
)
from kibamail.redis_keys import RedisKeys
from kibamail.schemas import write_schemas

pytestmark = pytest.mark.unit


def test_committed_json_schemas_match_the_models() -> None:
    drifted = write_schemas(check=True)
    assert drifted == [], f"run `uv run kibamail contracts schema`: {drifted}"


def test_every_topic_but_dead_letter_has_a_model() -> None:
    assert set(EVENT_MODELS) == set(Topic) - {Topic.DEAD_LETTER}


def test_round_trip_keeps_every_field() -> None:
    event = MessageStatusEvent(team_id="t1", message_id="<m@x>", status="bounced", smtp_code=550)
    assert deserialize(MessageStatusEvent, serialize(event)) == event


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1,2]", "JSON object"),
        (
            b'{"event_version": 99, "team_id": "t", "message_id": "m", "status": "delivered"}',
            "unsupported event_version",
        ),
        (b'{"team_id": "t", "status": "delivered"}', "message_id"),
        (b'{"team_id": "t", "message_id": "m", "status": "teleported"}', "status"),
    ],
)
def test_bad_payloads_are_refused_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(ContractError, match=reason):
        deserialize(MessageStatusEvent, payload)


def test_outbound_message_stream_fields_keep_raw_bytes() -> None:
    message = OutboundMessage(
        message_id="m1",
        team_id="t1",
        mail_from="a@example.com",
        recipients=["b@example.org"],
        data=b"Subject: hi\r\n\r\n\xff\x00",
    )
    fields = {k.encode(): v for k, v in message.to_stream_fields().items()}
    assert OutboundMessage.from_stream_fields(fields) == message
    with pytest.raises(ContractError):
        OutboundMessage.from_stream_fields({b"meta": b"{}", b"data": b""})


def test_redis_keys_follow_the_documented_formats() -> None:
    assert RedisKeys.broadcast_sent("t1", "b1", "c1") == "BROADCAST:{g7-1}:t1:b1:c1"
    assert RedisKeys.domain_ready("t1", "Example.COM") == "domain:{g7-1}:t1:example.com:ready"
    assert RedisKeys.dkim_key("t1", "Example.COM") == "dkim:{g7-1}:t1:example.com"
