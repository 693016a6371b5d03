"""The OpenAPI `webhooks` section: each event type an endpoint receives, its payload
(`{"type", "created_at", "data"}`, api.webhooks.delivery) with `data` being the stream
event it came from (kibamail.contracts), and the Standard-Webhooks signature headers
(api.webhooks.signing)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from api.webhooks.delivery import EVENT_TYPES, STATUS_EVENT_TYPES
from kibamail.contracts import (
    CorrelatedMessageEvent,
    EnrichedClickEvent,
    EnrichedOpenEvent,
    TeamPauseEvent,
    UnsubscribeEvent,
)

REF = "#/components/schemas/{model}"


def _data_model(event_type: str) -> type[BaseModel]:
    if event_type in STATUS_EVENT_TYPES.values():
        return CorrelatedMessageEvent
    models: dict[str, type[BaseModel]] = {
        "email.opened": EnrichedOpenEvent,
        "email.clicked": EnrichedClickEvent,
        "contact.unsubscribed": UnsubscribeEvent,
        "team.paused": TeamPauseEvent,
        "team.unpaused": TeamPauseEvent,
    }
    return models[event_type]


def _statuses(event_type: str) -> list[str]:
    return sorted(s for s, kind in STATUS_EVENT_TYPES.items() if kind == event_type)


SIGNATURE_HEADERS = [
    {
        "name": "webhook-id",
        "in": "header",
        "required": True,
        "description": "The event id; the same on every retry: deduplicate on it.",
        "schema": {"type": "string"},
    },
    {
        "name": "webhook-timestamp",
        "in": "header",
        "required": True,
        "description": "Unix seconds when this attempt was signed; reject if more than "
        "5 minutes from now.",
        "schema": {"type": "integer"},
    },
    {
        "name": "webhook-signature",
        "in": "header",
        "required": True,
        "description": "Space-separated `v1,<base64 HMAC-SHA256>` entries, one per active "
        "secret (two during a rotation). Key: base64-decode the secret after `whsec_`; "
        "message: `{webhook-id}.{webhook-timestamp}.{raw body}`; accept if any entry "
        "matches (constant-time compare).",
        "schema": {"type": "string"},
    },
]


def _payload_schema(event_type: str, data_ref: str) -> dict[str, Any]:
    description = f"Sent for `{event_type}`."
    if event_type in STATUS_EVENT_TYPES.values():
        description += f" `data.status` is one of {_statuses(event_type)}."
    return {
        "type": "object",
        "description": description,
        "properties": {
            "type": {"type": "string", "const": event_type},
            "created_at": {"type": "string", "description": "When it happened (ISO-8601 UTC)."},
            "data": {"$ref": data_ref},
        },
        "required": ["type", "created_at", "data"],
    }


def add_webhooks(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    webhooks: dict[str, Any] = {}
    for event_type in EVENT_TYPES:
        model = _data_model(event_type)
        model_schema = model.model_json_schema(by_alias=True, ref_template=REF)
        schemas.update(model_schema.pop("$defs", {}))
        schemas[model.__name__] = model_schema
        name = "WebhookEvent_" + event_type.replace(".", "_")
        schemas[name] = _payload_schema(event_type, REF.format(model=model.__name__))
        webhooks[event_type] = {
            "post": {
                "summary": f"The {event_type} event",
                "operationId": f"webhook_{event_type.replace('.', '_')}",
                "tags": ["webhooks"],
                "parameters": SIGNATURE_HEADERS,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": REF.format(model=name)}}},
                },
                "responses": {
                    "2XX": {"description": "Received; any 2xx within 10 s counts."},
                    "default": {
                        "description": "Anything else (or a timeout) is retried: 5 s, 5 min, "
                        "30 min, 2 h, 5 h, 10 h, 10 h, then the delivery is `failed`."
                    },
                },
            }
        }
    spec["webhooks"] = webhooks
