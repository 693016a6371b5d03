"""Prometheus metrics of every pipeline process, served by ``pipelines.run`` on one port
(``settings.pipelines.metrics_host``, loopback by default: no auth on this port).

The dataflows and the sink run as child processes, so metrics use prometheus-client's
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set by the parent before they start).
Consumer lag comes from the high watermark each consumer sees in its fetch responses
(never from ListOffsets, which the local broker answers wrongly): the Bytewax sources
publish ``bytewax_kafka_consumer_lag``, the ClickHouse sink ``kibamail_pipeline_consumer_lag``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

EVENTS_IN = Counter("kibamail_pipeline_events_in_total", "Events read from Kafka", ["flow"])
EVENTS_OUT = Counter(
    "kibamail_pipeline_events_out_total", "Events written downstream", ["flow", "topic"]
)
DEAD_LETTERS = Counter(
    "kibamail_pipeline_dead_letters_total",
    "Events routed to the dead-letter topic, by cause",
    ["flow", "cause"],
)
ERRORS = Counter("kibamail_pipeline_errors_total", "Errors while processing", ["flow", "kind"])
MAPPING_RETRIES = Counter(
    "kibamail_pipeline_mapping_retries_total", "Mapping lookups retried later", ["flow"]
)
SINK_ROWS = Counter("kibamail_sink_rows_total", "Rows acknowledged by ClickHouse", ["table"])
SINK_INSERT_SECONDS = Histogram(
    "kibamail_sink_insert_seconds", "Duration of one ClickHouse insert", ["table"]
)
SINK_BUFFERED_ROWS = Gauge(
    "kibamail_sink_buffered_rows",
    "Rows read but not yet acknowledged by ClickHouse",
    multiprocess_mode="livesum",
)
SINK_BACKPRESSURE = Gauge(
    "kibamail_sink_backpressure",
    "1 while the sink has paused consumption because ClickHouse does not answer",
    multiprocess_mode="livemax",
)
CONSUMER_LAG = Gauge(
    "kibamail_pipeline_consumer_lag",
    "Messages on the broker not yet acknowledged by this consumer, per partition",
    ["flow", "topic", "partition"],
    multiprocess_mode="livemax",
)
CONSUMED_OFFSET = Gauge(
    "kibamail_pipeline_consumed_offset",
    "Next offset a flow will read, per partition",
    ["flow", "topic", "partition"],
    multiprocess_mode="livemax",
)


def note_offsets(flow: str, offsets: dict[tuple[str, int], int]) -> None:
    """Record the next offset to read per (topic, partition), once per batch."""
    for (topic, partition), offset in offsets.items():
        CONSUMED_OFFSET.labels(flow, topic, str(partition)).set(offset)


def clear_multiprocess_dir(path: str) -> None:
    """Fresh start: stale files of dead processes would be summed forever."""
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.remove(os.path.join(path, name))


def mark_process_dead(pid: int) -> None:
    from prometheus_client import multiprocess

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)


def sample_value(families: Iterable[Any], name: str, **labels: str) -> float:
    """Sum of samples of one metric matching labels (tests and the bench read this)."""
    total = 0.0
    for family in families:
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total
