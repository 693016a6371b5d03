"""Bulk-behaviour scoring: catches newsletters sent as "transactional" mail, per team.

``smtp_submissions_features`` -> per team, a sliding window over submission time ->
a score in [0, 1] from four components, each with its share of the explanation:

* marketing: share of messages with List-Unsubscribe or two+ marketing markers
* near-duplicate: share whose body simhash is within 3 bits of an earlier one in the
  window (4 x 16-bit LSH bands: by pigeonhole, such a pair shares a band exactly)
* volume: messages in the window against the team's own hourly baseline
* domain spread: distinct recipient domains in the window

Password resets share a template too, so no single component pauses a team; a score
over the threshold does: the pause flag in Redis (read by the MTA's policy chain) and
a ``TeamPauseEvent`` on ``team_pauses`` (-> ClickHouse, -> webhooks). The pause event id
is derived from the triggering submission, so a replay after a crash is one event.
"""

from __future__ import annotations

import copy
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, cast

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from kibamail.contracts import (
    ContractError,
    SubmissionFeatures,
    TeamPauseEvent,
    Topic,
    deserialize,
    serialize,
)
from kibamail.redis_keys import RedisKeys
from kibamail.settings import PipelineTuning, Settings
from kibamail.team_pauses import ScoringResets
from pipelines.correlation import SinkItem, to_dead_letter
from pipelines.kafka_io import RawMessage
from pipelines.metrics import ERRORS, EVENTS_IN, EVENTS_OUT

FLOW = "scoring"
PAUSE_NAMESPACE = uuid.UUID("6f1c1f0e-5b1a-4f43-9a59-2f7d0c1e8a11")
BANDS = 4


def bands(simhash: int) -> list[tuple[int, int]]:
    unsigned = simhash & 0xFFFF_FFFF_FFFF_FFFF
    return [(i, unsigned >> (16 * i) & 0xFFFF) for i in range(BANDS)]


def is_marketing(features: SubmissionFeatures) -> bool:
    return features.has_list_unsubscribe or len(features.marketing_markers) >= 2


@dataclass
class Entry:
    at: float
    simhash: int
    marketing: bool
    near_duplicate: bool
    domains: tuple[str, ...]
    recipients: int


@dataclass
class TeamWindow:
    """A team's recent submissions with running counts (so each event is O(1) amortised)."""

    entries: deque[Entry] = field(default_factory=deque)
    band_counts: Counter[tuple[int, int]] = field(default_factory=Counter)
    domain_counts: Counter[str] = field(default_factory=Counter)
    marketing: int = 0
    near_duplicates: int = 0
    recipients: int = 0
    hourly: dict[int, int] = field(default_factory=dict)
    first_hour: int | None = None
    paused_until: float = 0.0
    reset_at: float = 0.0

    def evict_before(self, cutoff: float) -> None:
        while self.entries and self.entries[0].at < cutoff:
            self._remove(self.entries.popleft())

    def _remove(self, entry: Entry) -> None:
        for band in bands(entry.simhash):
            self.band_counts[band] -= 1
            if self.band_counts[band] <= 0:
                del self.band_counts[band]
        for domain in entry.domains:
            self.domain_counts[domain] -= 1
            if self.domain_counts[domain] <= 0:
                del self.domain_counts[domain]
        self.marketing -= entry.marketing
        self.near_duplicates -= entry.near_duplicate
        self.recipients -= entry.recipients

    def add(
        self, features: SubmissionFeatures, at: float, max_entries: int, keep_hours: int
    ) -> None:
        if len(self.entries) >= max_entries:
            self._remove(self.entries.popleft())
        keys = bands(features.body_simhash)
        duplicate = features.body_simhash != 0 and any(self.band_counts[k] > 0 for k in keys)
        entry = Entry(
            at,
            features.body_simhash,
            is_marketing(features),
            duplicate,
            tuple(features.recipient_domains),
            features.recipient_count,
        )
        self.entries.append(entry)
        self.band_counts.update(keys)
        self.domain_counts.update(entry.domains)
        self.marketing += entry.marketing
        self.near_duplicates += entry.near_duplicate
        self.recipients += entry.recipients
        hour = int(at // 3600)
        self.hourly[hour] = self.hourly.get(hour, 0) + features.recipient_count
        if self.first_hour is None:
            self.first_hour = hour
        # Only the baseline's hours are needed.
        if len(self.hourly) > keep_hours + 2:
            self.hourly = {h: c for h, c in self.hourly.items() if h >= hour - keep_hours}


@dataclass(frozen=True)
class ScoreUpdate:
    """A team's latest score (once per batch), for the MTA's bulk gate."""

    team_id: str
    score: float


@dataclass(frozen=True)
class Verdict:
    team_id: str
    score: float
    explanation: str
    trigger_event_id: str
    occurred_at: Any


def score_window(window: TeamWindow, now: float, tuning: PipelineTuning) -> tuple[float, str]:
    """The score and a sentence an Administrator can act on."""
    n = len(window.entries)
    recent = list(islice(reversed(window.entries), tuning.scoring_recent_messages))
    marketing = sum(e.marketing for e in recent) / len(recent)
    duplicates = sum(e.near_duplicate for e in recent) / len(recent)
    hour = int(now // 3600)
    past = [
        h
        for h in range(hour - tuning.scoring_baseline_hours, hour)
        if window.first_hour is not None and h >= window.first_hour
    ]
    hourly = sum(window.hourly.get(h, 0) for h in past) / len(past) if past else 0.0
    # Recipients per window at the team's usual hourly pace (a floor for new teams).
    baseline = max(hourly * tuning.scoring_window_seconds / 3600, tuning.scoring_baseline_floor)
    ratio = window.recipients / baseline
    volume = min(1.0, max(0.0, (ratio - 1) / (tuning.scoring_burst_factor - 1)))
    spread = min(1.0, len(window.domain_counts) / tuning.scoring_domain_spread_full)
    score = (
        tuning.scoring_weight_marketing * marketing
        + tuning.scoring_weight_near_duplicate * duplicates
        + tuning.scoring_weight_volume * volume
        + tuning.scoring_weight_domain_spread * spread
    )
    explanation = (
        f"bulk score {score:.2f} (threshold {tuning.scoring_pause_threshold:.2f}): of the "
        f"last {len(recent)} messages {marketing:.0%} carry List-Unsubscribe or marketing "
        f"markers and {duplicates:.0%} have near-identical bodies; {n} messages in "
        f"{tuning.scoring_window_seconds / 60:g} min, {ratio:.1f}x the team's baseline, to "
        f"{len(window.domain_counts)} recipient domains"
    )
    return round(score, 4), explanation


class ScoringLogic(StatefulBatchLogic[SubmissionFeatures, Verdict | ScoreUpdate, TeamWindow]):
    def __init__(
        self,
        tuning: PipelineTuning,
        state: TeamWindow | None,
        resets: Callable[[str], float] | None = None,
    ) -> None:
        self._tuning = tuning
        self._window = state or TeamWindow()
        self._resets = resets  # kibamail.team_pauses.ScoringResets: a lifted pause

    def on_batch(
        self, values: list[SubmissionFeatures]
    ) -> tuple[list[Verdict | ScoreUpdate], bool]:
        tuning, window = self._tuning, self._window
        verdicts: list[Verdict | ScoreUpdate] = []
        latest: ScoreUpdate | None = None
        reset_at = self._resets(values[0].team_id) if self._resets and values else 0.0
        if reset_at > window.reset_at:  # lifted: judge the team on mail from now on only
            window.reset_at, window.paused_until = reset_at, 0.0
        for features in values:
            at = features.occurred_at.timestamp()
            if at < window.reset_at:
                continue
            window.evict_before(max(at - tuning.scoring_window_seconds, window.reset_at))
            window.add(
                features, at, tuning.scoring_max_window_entries, tuning.scoring_baseline_hours
            )
            if len(window.entries) < tuning.scoring_min_messages or at < window.paused_until:
                continue
            score, explanation = score_window(window, at, tuning)
            latest = ScoreUpdate(features.team_id, score)
            if score >= tuning.scoring_pause_threshold:
                window.paused_until = at + tuning.scoring_cooldown_seconds
                verdict = Verdict(
                    features.team_id, score, explanation, features.event_id, features.occurred_at
                )
                verdicts.append(verdict)
        if latest is not None:
            verdicts.append(latest)
        return verdicts, StatefulBatchLogic.RETAIN

    def snapshot(self) -> TeamWindow:
        return copy.deepcopy(self._window)


class Pauser:
    """Applies verdicts: the Redis pause flag (set-if-absent) and the pause event.

    Also keeps ``throttle:bulk_score:{team}`` at the team's latest score (expiring with
    the window), which the MTA's bulk gate reads on the submission path.
    """

    def __init__(self, redis_factory: Callable[[], Any], score_ttl: float) -> None:
        self._factory = redis_factory
        self._client: Any = None
        self._score_ttl = max(1.0, score_ttl)

    def apply(self, items: list[Verdict | ScoreUpdate]) -> list[SinkItem]:
        if self._client is None:
            self._client = self._factory()
        verdicts = [item for item in items if isinstance(item, Verdict)]
        scores = {item.team_id: item.score for item in items if isinstance(item, ScoreUpdate)}
        events = [
            TeamPauseEvent(
                event_id=uuid.uuid5(PAUSE_NAMESPACE, f"{v.team_id}:{v.trigger_event_id}").hex,
                team_id=v.team_id,
                occurred_at=v.occurred_at,
                paused=True,
                score=v.score,
                reason=v.explanation,
                source="scoring",
            )
            for v in verdicts
        ]
        pipe = self._client.pipeline(transaction=False)
        for event in events:
            pipe.set(RedisKeys.team_paused(event.team_id), serialize(event), nx=True)
        for team_id, score in scores.items():
            key = RedisKeys.reputation_throttle("bulk_score", team_id)
            pipe.set(key, str(score), ex=int(self._score_ttl))
        pipe.execute()
        EVENTS_OUT.labels(FLOW, Topic.TEAM_PAUSES.value).inc(len(events))
        return [
            KafkaSinkMessage(e.team_id.encode(), serialize(e), topic=Topic.TEAM_PAUSES.value)
            for e in events
        ]


def parse_batch(batch: list[Any]) -> list[SubmissionFeatures | SinkItem]:
    out: list[SubmissionFeatures | SinkItem] = []
    for msg in batch:
        if not isinstance(msg, RawMessage):
            ERRORS.labels(FLOW, "kafka").inc()
            continue
        try:
            out.append(deserialize(SubmissionFeatures, msg.value or b""))
        except ContractError as exc:
            out.append(to_dead_letter(msg.topic or "", msg.key, msg.value, str(exc)))
    EVENTS_IN.labels(FLOW).inc(len(batch))
    return out


def build_flow(
    settings: Settings,
    *,
    source: Source[Any] | None = None,
    sink: Sink[Any] | None = None,
    redis_factory: Callable[[], Any] | None = None,
) -> Dataflow:
    from kibamail.clients import redis_client
    from pipelines.kafka_io import kafka_sink, kafka_source

    tuning = settings.pipelines.tuning
    pauser = Pauser(
        redis_factory or (lambda: redis_client(settings)), tuning.scoring_window_seconds
    )
    resets = ScoringResets(redis_factory or (lambda: redis_client(settings)))
    flow = Dataflow(FLOW)
    features = op.input(
        "features",
        flow,
        source or kafka_source(settings, [Topic.SUBMISSION_FEATURES.value], FLOW),
    )
    parsed = op.flat_map_batch("parse", features, parse_batch)
    split = op.branch("dead_letters", parsed, lambda item: isinstance(item, KafkaSinkMessage))
    verdicts = op.stateful_batch(
        "team_window",
        op.key_on("by_team", cast("Stream[SubmissionFeatures]", split.falses), lambda f: f.team_id),
        lambda state: ScoringLogic(tuning, state, resets),
    )
    pauses = op.flat_map_batch("pause", op.key_rm("unkey", verdicts), pauser.apply)
    merged: Stream[SinkItem] = op.merge("all_out", split.trues, pauses)
    op.output("kafka_out", merged, sink or kafka_sink(settings))
    return flow
