"""Batch parsing of status events: pydantic's verdict at a fraction of its per-event cost.

The MTA serializes every ``MessageStatusEvent`` with ``contracts.serialize``, so nearly
every payload is *canonical*: the model's fields in order, each with its exact JSON
type. For those, plain checks derived from the model (types, length constraints, enum
values, the datetime in the form ``serialize`` writes) decide exactly what pydantic
would, and the parsed dict already is ``model_dump()`` of the event. Anything else
(missing or extra fields, other types, odd timestamps, invalid input) goes through the
contract's own validation, so errors and dead-letter reasons are unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

import annotated_types
import orjson
from pydantic import BaseModel

from pipelines.contracts import (
    SUPPORTED_VERSIONS,
    ContractError,
    MessageStatusEvent,
    deserialize,
)

# What orjson (OPT_UTC_Z) writes for a valid UTC datetime, with every range checked but
# the day of the month past the 28th; other forms take the pydantic path.
CANONICAL_UTC = re.compile(
    r"(?!0000)\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    r"T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.(?!000000)\d{6})?Z",
    re.ASCII,
)


def is_real_date(text: str) -> bool:
    """Whether the 29th/30th/31st of that month exists."""
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def is_canonical_utc(text: str) -> bool:
    """True when pydantic parses ``text`` and orjson writes the result back unchanged."""
    return CANONICAL_UTC.fullmatch(text) is not None and (text[8:10] <= "28" or is_real_date(text))


def _length_terms(value: str, metadata: list[Any]) -> list[str]:
    terms = []
    for item in metadata:
        if isinstance(item, annotated_types.MinLen):
            terms.append(f"len({value}) >= {int(item.min_length)}")
        elif isinstance(item, annotated_types.MaxLen):
            terms.append(f"len({value}) <= {int(item.max_length)}")
        else:
            raise TypeError(f"no fast-path rule for constraint {item!r}")
    return terms


def canonical_check(model: type[BaseModel]) -> Callable[[Any], bool]:
    """A function telling whether parsed JSON is a canonical, valid ``model`` payload.

    Generated once from the model's fields (names in order, exact JSON types, length
    constraints, enum values, canonical UTC datetimes) as ONE boolean expression: a loop
    over per-field checks cost more than the checks. Raises TypeError for a field type,
    constraint or validator without a rule here, so a change to the contract cannot
    silently skip a check (the module builds its checker at import).
    """
    decorators = model.__pydantic_decorators__
    if decorators.field_validators or decorators.model_validators or decorators.validators:
        raise TypeError(f"{model.__name__} has validators; the fast path cannot mirror them")
    names: list[str] = []
    types: list[type] = []
    terms: list[str] = []
    scope: dict[str, Any] = {
        "utc_match": CANONICAL_UTC.fullmatch,
        "is_real_date": is_real_date,
    }
    for index, (name, info) in enumerate(model.model_fields.items()):
        names.append(name)
        value = f"data[{name!r}]"
        annotation = info.annotation
        if annotation is str:
            types.append(str)
            terms += _length_terms(value, info.metadata)
        elif annotation is int and not info.metadata:
            types.append(int)
            if name == "event_version":
                scope["versions"] = SUPPORTED_VERSIONS
                terms.append(f"{value} in versions")
        elif isinstance(annotation, type) and issubclass(annotation, StrEnum):
            types.append(str)
            scope[f"allowed_{index}"] = frozenset(member.value for member in annotation)
            terms.append(f"{value} in allowed_{index}")
        elif annotation is datetime and not info.metadata:
            types.append(str)
            terms.append(
                f"utc_match({value}) is not None"
                f" and ({value}[8:10] <= '28' or is_real_date({value}))"
            )
        else:
            raise TypeError(f"no fast-path rule for {model.__name__}.{name}: {annotation}")
    scope["names"], scope["types"] = tuple(names), tuple(types)
    head = [
        "type(data) is dict",
        "tuple(data) == names",
        "tuple(map(type, data.values())) == types",
    ]
    source = (
        "def check(data):\n    return (\n        "
        + "\n        and ".join(head + terms)
        + "\n    )\n"
    )
    exec(compile(source, f"<canonical {model.__name__}>", "exec"), scope)
    check: Callable[[Any], bool] = scope["check"]
    check.__doc__ = source
    return check


STATUS_FIELDS: tuple[str, ...] = tuple(MessageStatusEvent.model_fields)
is_canonical_status = canonical_check(MessageStatusEvent)


def parse_status_slow(raw: bytes) -> dict[str, Any]:
    """The contract's validation; the event as ``model_dump()`` (orjson writes it canonically)."""
    try:
        event = MessageStatusEvent.model_validate_json(raw)
    except ValueError:
        event = deserialize(MessageStatusEvent, raw)  # raises ContractError with the reason
    if event.event_version not in SUPPORTED_VERSIONS:
        deserialize(MessageStatusEvent, raw)
    return event.model_dump()


def parse_statuses(values: Sequence[bytes | None]) -> list[dict[str, Any] | ContractError]:
    """One result per payload: the event's fields (``model_dump()`` order) or why not."""
    loads, canonical = orjson.loads, is_canonical_status
    out: list[dict[str, Any] | ContractError] = []
    append = out.append
    for raw in values:
        try:
            data = loads(raw or b"")
        except orjson.JSONDecodeError:
            data = None
        if canonical(data):
            append(data)
            continue
        try:
            append(parse_status_slow(raw or b""))
        except ContractError as exc:
            append(exc)
    return out
