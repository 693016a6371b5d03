"""Tuning knobs of the dataflows that are not connection settings.

Kept beside the code that reads them (``kibamail.settings`` owns connections and ports);
override with ``KIBAMAIL_PIPELINE_TUNING__<NAME>``, e.g.
``KIBAMAIL_PIPELINE_TUNING__MAPPING_RETRY_DELAYS_SECONDS='[1, 5]'``.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PipelineTuning(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KIBAMAIL_PIPELINE_TUNING__", env_nested_delimiter="__", extra="ignore"
    )

    # A status can overtake the mapping write (different Redis replica, slow intake):
    # wait this long between lookups before dead-lettering (total ~ the sum).
    mapping_retry_delays_seconds: list[float] = Field(
        default_factory=lambda: [0.5, 2.0, 5.0, 15.0, 30.0]
    )
    # Shards of the retry state (keys of the stateful step; spreads retries over workers).
    retry_shards: int = 16
    kafka_batch_size: int = 5000
    # Bytewax snapshot/epoch interval: bounds replay after a crash.
    epoch_seconds: float = 2.0
    # Clicks on a different link of the same message within this many seconds are a scanner.
    scanner_click_seconds: float = 2.0
    # Per-message first-open/first-click state is forgotten after this much idle time.
    first_event_state_seconds: float = 14 * 24 * 3600
    # Bulk-behaviour scoring (per team, sliding window over submission time).
    scoring_window_seconds: float = 900.0
    scoring_min_messages: int = 30
    # Marketing and near-duplicate shares look at this many latest messages, so a blast
    # after hours of normal mail is seen within tens of messages, not diluted by them.
    scoring_recent_messages: int = 50
    scoring_pause_threshold: float = 0.7
    scoring_weight_marketing: float = 0.4
    scoring_weight_near_duplicate: float = 0.25
    scoring_weight_volume: float = 0.2
    scoring_weight_domain_spread: float = 0.15
    # Volume component: 0 at the team's baseline, 1 at this multiple of it.
    scoring_burst_factor: float = 5.0
    # Messages per window assumed for a team without history (new teams may send some).
    scoring_baseline_floor: float = 50.0
    scoring_baseline_hours: int = 24
    # Distinct recipient domains in the window that count as full spread.
    scoring_domain_spread_full: int = 20
    # Bodies whose simhashes differ in at most 3 bits are near-identical (4 x 16-bit bands).
    scoring_cooldown_seconds: float = 3600.0
    scoring_max_window_entries: int = 20_000
    # Address /metrics binds to (0.0.0.0 where a Prometheus on another host scrapes it).
    metrics_host: str = "127.0.0.1"
    # ClickHouse sink: wait between insert retries while ClickHouse is down (backpressure).
    sink_retry_max_seconds: float = 5.0
    # ClickHouse sink: plain fetches of the hot topic inserted as ArrowStream (False:
    # JSONEachRow only; the bench compares both).
    sink_arrow: bool = True


@lru_cache(maxsize=1)
def get_tuning() -> PipelineTuning:
    return PipelineTuning()
