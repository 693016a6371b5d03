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
    # ClickHouse sink: wait between insert retries while ClickHouse is down (backpressure).
    sink_retry_max_seconds: float = 5.0


@lru_cache(maxsize=1)
def get_tuning() -> PipelineTuning:
    return PipelineTuning()
