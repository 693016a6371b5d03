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
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from itertools import repeat
from operator import itemgetter
from typing import Any

import annotated_types
import orjson
from pydantic import BaseModel

from kibamail.contracts import (
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


@dataclass(frozen=True)
class CanonicalRules:
    """What a canonical payload of a model must satisfy, derived from its fields."""

    names: tuple[str, ...]
    types: tuple[type, ...]
    lengths: tuple[tuple[str, int, int | None], ...]
    allowed: tuple[tuple[str, frozenset[Any]], ...]
    utc: tuple[str, ...]

    @classmethod
    def of(cls, model: type[BaseModel]) -> CanonicalRules:
        """Raises TypeError for a field type, constraint or validator without a rule here, so
        a change to the contract cannot silently skip a check (built at import)."""
        decorators = model.__pydantic_decorators__
        if decorators.field_validators or decorators.model_validators or decorators.validators:
            raise TypeError(f"{model.__name__} has validators; the fast path cannot mirror them")
        names: list[str] = []
        types: list[type] = []
        lengths: list[tuple[str, int, int | None]] = []
        allowed: list[tuple[str, frozenset[Any]]] = []
        utc: list[str] = []
        for name, info in model.model_fields.items():
            names.append(name)
            annotation = info.annotation
            if annotation is str:
                types.append(str)
                low, high = _length_bounds(info.metadata)
                if low or high is not None:
                    lengths.append((name, low, high))
            elif annotation is int and not info.metadata:
                types.append(int)
                if name == "event_version":
                    allowed.append((name, SUPPORTED_VERSIONS))
            elif isinstance(annotation, type) and issubclass(annotation, StrEnum):
                types.append(str)
                allowed.append((name, frozenset(member.value for member in annotation)))
            elif annotation is datetime and not info.metadata:
                types.append(str)
                utc.append(name)
            else:
                raise TypeError(f"no fast-path rule for {model.__name__}.{name}: {annotation}")
        return cls(tuple(names), tuple(types), tuple(lengths), tuple(allowed), tuple(utc))

    def all_canonical(self, batch: list[Any]) -> bool:
        """The per-payload check over a whole batch, column by column in C-level loops
        (``map``, ``set``, ``min``): a fraction of the per-payload cost. False means some
        payload is not canonical; the caller then checks them one by one."""
        if not batch:
            return True
        if set(map(type, batch)) != {dict} or set(map(tuple, batch)) != {self.names}:
            return False
        value_types = map(tuple, map(map, repeat(type), map(dict.values, batch)))
        if set(value_types) != {self.types}:
            return False
        for name, low, high in self.lengths:
            sizes = list(map(len, map(itemgetter(name), batch)))
            if min(sizes) < low or (high is not None and max(sizes) > high):
                return False
        for name, allowed in self.allowed:
            if not allowed.issuperset(map(itemgetter(name), batch)):
                return False
        for name in self.utc:
            column = list(map(itemgetter(name), batch))
            if not all(map(CANONICAL_UTC.fullmatch, column)):
                return False
            late = max(map(DAY_OF_MONTH, column)) > "28"
            if late and not all(is_real_date(text) for text in column if text[8:10] > "28"):
                return False
        return True


DAY_OF_MONTH = itemgetter(slice(8, 10))


def _length_bounds(metadata: list[Any]) -> tuple[int, int | None]:
    low, high = 0, None
    for item in metadata:
        if isinstance(item, annotated_types.MinLen):
            low = int(item.min_length)
        elif isinstance(item, annotated_types.MaxLen):
            high = int(item.max_length)
        else:
            raise TypeError(f"no fast-path rule for constraint {item!r}")
    return low, high


def canonical_check(model: type[BaseModel]) -> Callable[[Any], bool]:
    """A function telling whether parsed JSON is a canonical, valid ``model`` payload.

    Generated once from the model's CanonicalRules (names in order, exact JSON types,
    length constraints, allowed values, canonical UTC datetimes) as ONE boolean
    expression: a loop over per-field checks cost more than the checks.
    """
    rules = CanonicalRules.of(model)
    terms: list[str] = []
    scope: dict[str, Any] = {
        "utc_match": CANONICAL_UTC.fullmatch,
        "is_real_date": is_real_date,
        "names": rules.names,
        "types": rules.types,
    }
    for name, low, high in rules.lengths:
        terms += [f"len(data[{name!r}]) >= {low}"] if low else []
        terms += [f"len(data[{name!r}]) <= {high}"] if high is not None else []
    for index, (name, allowed) in enumerate(rules.allowed):
        scope[f"allowed_{index}"] = allowed
        terms.append(f"data[{name!r}] in allowed_{index}")
    for name in rules.utc:
        value = f"data[{name!r}]"
        terms.append(
            f"utc_match({value}) is not None and ({value}[8:10] <= '28' or is_real_date({value}))"
        )
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
STATUS_RULES = CanonicalRules.of(MessageStatusEvent)
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


def parse_canonical_batch(values: Sequence[bytes | None]) -> list[dict[str, Any]] | None:
    """Every payload parsed, if ALL are canonical and valid (the usual batch); else None."""
    try:
        parsed = list(map(orjson.loads, values))  # type: ignore[arg-type]  # None: TypeError
    except (ValueError, TypeError):  # malformed JSON (or no value) somewhere in the batch
        return None
    return parsed if STATUS_RULES.all_canonical(parsed) else None


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
