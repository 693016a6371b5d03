"""ETag / If-Match on resources two people may edit at once (no lost update).

The ETag is a hash of the resource's JSON representation, so any change to what a GET
shows changes it. A write with `If-Match` that names another version is refused with
412 `precondition_failed` and changes nothing; without `If-Match` the write goes ahead
(last writer wins, as before). Existence and team are checked first: another team's id
is 404, never 412.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

import orjson
from fastapi import Header, Response

from api.errors import ApiError

IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=1000,
        description="The ETag of the version you edited (from a GET); "
        "412 precondition_failed if the resource changed since. `*` matches any version.",
    ),
]


def etag_of(body: dict[str, Any]) -> str:
    digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f'"{digest[:32]}"'


def check_if_match(if_match: str | None, current: dict[str, Any]) -> None:
    """412 unless `If-Match` is absent, `*`, or names the current version."""
    if if_match is None:
        return
    tags = {tag.strip().removeprefix("W/") for tag in if_match.split(",")}
    if "*" in tags or etag_of(current) in tags:
        return
    raise ApiError(
        412,
        "the resource changed since you read it (If-Match does not match its ETag); "
        "GET it again and re-apply your change",
        "precondition_failed",
        details=[{"path": "If-Match", "message": "stale or unknown ETag"}],
    )


def tagged(response: Response, body: dict[str, Any]) -> dict[str, Any]:
    """Set the ETag of `body` on the response and return the body."""
    response.headers["ETag"] = etag_of(body)
    return body
