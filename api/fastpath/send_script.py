"""The immediate send in ONE Redis round trip: key check, per-key rate limit,
idempotency, suppression, the team's pause/bulk gate and send budget (per recipient,
shared with every other intake) and the hand-over to the MTA in a single EVALSHA.

The team behind an API key is needed before the script (it is in the tracking tokens,
the mapping and the suppression key, and every key of the script carries the team's
slot tag, so the script runs on one Redis Cluster master), so each process keeps the
key's team (`RedisKeys.api_key_team`) and cached record (`RedisKeys.api_key`, JSON
written by `api.deps`) in memory and the script compares it
with Redis's copy byte for byte: a revocation (which deletes that copy) or an expiry is
seen on the very next request in every process, and the request then takes the full
FastAPI path, which reloads the record from the database. Concurrent sends share one
pipeline (kibamail.redis_batching).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from api.services.idempotency import TTL_SECONDS as IDEMPOTENCY_TTL_SECONDS
from api.services.idempotency import IdempotencyClaim
from api.services.ratelimit import (
    LAST_USED_RESOLUTION_SECONDS,
    TOKEN_BUCKET_LUA,
    bucket_key,
    key_team,
    last_used_key,
)
from api.state import AppState
from kibamail.contracts import MessageMapping, OutboundMessage
from kibamail.intake import QUEUE_SUBMISSION_LUA, submission_record
from kibamail.redis_batching import ScriptBatcher
from kibamail.redis_keys import RedisKeys
from kibamail.team_budget import TEAM_BUDGET_LUA, BudgetResult, budget_args, budget_keys

QUEUED, SUPPRESSED, REPLAY, STALE_KEY, RATE_LIMITED, TEAM_REFUSED = 0, 1, 2, 3, 4, 5
MAX_CACHED_KEYS = 10_000

# KEYS: api-key record, bucket, last-used marker, suppression set, mapping, MTA stream,
#       team pause flag, team bulk score, team bucket, team day counter, [idempotency].
# ARGV: expected record, rate, burst, last-used resolution, mapping, mapping TTL, meta,
#       data, idempotency record, idempotency TTL, kibamail.team_budget.budget_args (8),
#       recipients...
# Returns {outcome, tokens, first_use, detail}. The order of refusals is the FastAPI
# path's: unknown/revoked key (no token taken), per-key rate limit, replay, suppression,
# then the team (pause, bulk score, team bucket, daily cap: charged per recipient only
# when the message is queued). The hand-over itself is kibamail.intake's queue_submission.
_SEND_LUA = (
    TOKEN_BUCKET_LUA
    + TEAM_BUDGET_LUA
    + QUEUE_SUBMISSION_LUA
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {3, '0', 0, ''} end
local allowed, tokens = take_token(KEYS[2], tonumber(ARGV[2]), tonumber(ARGV[3]))
if allowed == 0 then return {4, tostring(tokens), 0, ''} end
local first_use = 0
if redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[4]) then first_use = 1 end
local idem = #KEYS == 11
if idem then
  local stored = redis.call('GET', KEYS[11])
  if stored then return {2, tostring(tokens), first_use, stored} end
end
local suppressed = {}
for i = 19, #ARGV do
  if redis.call('SISMEMBER', KEYS[4], ARGV[i]) == 1 then suppressed[#suppressed + 1] = ARGV[i] end
end
if #suppressed > 0 then return {1, tostring(tokens), first_use, cjson.encode(suppressed)} end
local refused, why = team_refusal(KEYS[7], KEYS[8], tonumber(ARGV[14]), tonumber(ARGV[17]))
if refused then
  return {5, tostring(tokens), first_use, cjson.encode({refused, '0', 0, why})}
end
local status, team_tokens, used = take_team_budget(KEYS[9], KEYS[10], tonumber(ARGV[11]),
  tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[15]), tonumber(ARGV[18]))
if status ~= 0 then
  return {5, tostring(tokens), first_use, cjson.encode({status, tostring(team_tokens), used, ''})}
end
queue_submission(KEYS[5], KEYS[6], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
if idem then redis.call('SET', KEYS[11], ARGV[9], 'EX', ARGV[10]) end
return {0, tostring(tokens), first_use, ''}
"""
)


@dataclass(frozen=True)
class KeyRecord:
    """An API key's cached record: the exact bytes in Redis and their decoded fields."""

    key_hash: str
    raw: bytes
    id: str
    team_id: str
    scope: str


@dataclass(frozen=True)
class SendOutcome:
    outcome: int
    tokens: float
    first_use: bool
    detail: bytes
    team: BudgetResult | None = None  # the team's refusal (outcome TEAM_REFUSED)


async def key_record(state: AppState, key_hash: str) -> KeyRecord | None:
    """The process's copy of a key's Redis record; None when Redis holds none or a
    revoked one (the FastAPI path then answers, loading from the database)."""
    cache: dict[str, KeyRecord] = state.api_key_records
    record = cache.get(key_hash)
    if record is not None:
        return record
    team_id = await key_team(state.redis, state.api_key_teams, key_hash)
    if not team_id:  # unknown here: the FastAPI path reads the database
        return None
    raw = await state.redis.get(RedisKeys.api_key(team_id, key_hash))
    if not raw:
        return None
    info = orjson.loads(raw)
    if not info or info.get("revoked"):
        return None
    if len(cache) >= MAX_CACHED_KEYS:
        cache.clear()
    if info.get("team_id") != team_id:
        return None
    record = KeyRecord(key_hash, raw, info["id"], info["team_id"], info["scope"])
    cache[key_hash] = record
    return record


def forget_key(state: AppState, key_hash: str) -> None:
    state.api_key_records.pop(key_hash, None)


async def send_in_one_trip(
    state: AppState,
    key: KeyRecord,
    message: OutboundMessage,
    mapping: MessageMapping,
    claim: IdempotencyClaim | None,
) -> SendOutcome:
    """Run the script; the caller interprets the outcome (see the module doc)."""
    limiter = state.limiter
    record = submission_record(message, mapping)
    keys = [
        RedisKeys.api_key(key.team_id, key.key_hash),
        bucket_key(key.team_id, key.key_hash),
        last_used_key(key.team_id, key.key_hash),
        RedisKeys.suppression(message.team_id),
        *record.keys(),
        *budget_keys(message.team_id),
    ]
    cost = len(message.recipients)
    args: list[Any] = [
        key.raw,
        limiter.rate,
        limiter.burst,
        LAST_USED_RESOLUTION_SECONDS,
        *record.args(),
        claim.record({"id": message.message_id, "status": "queued"}) if claim else b"",
        IDEMPOTENCY_TTL_SECONDS,
        *budget_args(
            state.settings.sending, cost, check_team=True, check_bulk=True, take_rate=True
        ),
        *(r.lower() for r in message.recipients),
    ]
    if claim is not None:
        keys.append(claim.redis_key)
    if state.hot_send_script is None:
        state.hot_send_script = ScriptBatcher(state.redis, _SEND_LUA)
    outcome, tokens, first_use, detail = await state.hot_send_script(keys, args)
    team = None
    if int(outcome) == TEAM_REFUSED:
        team = BudgetResult.parse(orjson.loads(detail), cost)
    return SendOutcome(int(outcome), float(tokens), bool(first_use), detail or b"", team)
