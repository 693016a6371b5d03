"""Bytewax recovery stores, kept consistent with the broker they recorded offsets of.

Bytewax snapshots source offsets in its recovery dir. If the broker loses its data (the
local memory-only broker after a restart), resuming at a saved offset past the new
end would wait forever (the local broker never answers OFFSET_OUT_OF_RANGE, see
pipelines/README.md). So the recovery dir carries a token, and the broker a committed offset
of a consumer group named after it: a broker without that group is a new broker and
the stale snapshots are discarded. The marker is re-committed periodically so
offset retention on a real cluster never expires it.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path
from typing import Any

from kibamail.contracts import Topic
from kibamail.settings import Settings

log = logging.getLogger(__name__)

TOKEN_FILE = "broker-incarnation"


def _marker_group(token: str) -> str:
    return f"kibamail-pipelines-recovery-{token}"


def _marker_consumer(settings: Settings, token: str) -> Any:
    from confluent_kafka import Consumer

    from kibamail.clients import kafka_consumer_config

    return Consumer(kafka_consumer_config(_marker_group(token), settings))


def broker_has_marker(settings: Settings, token: str) -> bool:
    from confluent_kafka import TopicPartition

    consumer = _marker_consumer(settings, token)
    try:
        [tp] = consumer.committed([TopicPartition(Topic.DEAD_LETTER.value, 0)], timeout=10)
        return tp.offset >= 0
    finally:
        consumer.close()


def commit_marker(settings: Settings, token: str) -> None:
    from confluent_kafka import TopicPartition

    consumer = _marker_consumer(settings, token)
    try:
        consumer.commit(offsets=[TopicPartition(Topic.DEAD_LETTER.value, 0, 0)], asynchronous=False)
    finally:
        consumer.close()


def prepare(settings: Settings, flows: list[str], partitions: int) -> dict[str, Path]:
    """Recovery dir per flow, initialised; wiped first if the broker is not the one it knew."""
    from bytewax.recovery import init_db_dir

    root = settings.pipelines.recovery_dir
    root.mkdir(parents=True, exist_ok=True)
    token_path = root / TOKEN_FILE
    token = token_path.read_text().strip() if token_path.exists() else ""
    if not token or not broker_has_marker(settings, token):
        if token:
            log.warning("broker lost its data since the last run; discarding Bytewax snapshots")
        for child in root.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
        token = uuid.uuid4().hex
        commit_marker(settings, token)
        token_path.write_text(token)
    dirs: dict[str, Path] = {}
    for flow in flows:
        path = root / flow
        if not path.exists():
            path.mkdir(parents=True)
            init_db_dir(path, max(1, partitions))
        dirs[flow] = path
    return dirs


def refresh_marker(settings: Settings) -> None:
    token_path = settings.pipelines.recovery_dir / TOKEN_FILE
    if token_path.exists():
        commit_marker(settings, token_path.read_text().strip())


def wait_prepared(settings: Settings, flows: list[str], timeout: float = 120.0) -> None:
    """Block until process 0 of a cluster has prepared the shared recovery dirs."""
    import time

    root = settings.pipelines.recovery_dir
    deadline = time.monotonic() + timeout
    while not all((root / flow).is_dir() for flow in flows):
        if time.monotonic() > deadline:
            raise RuntimeError(f"recovery dirs under {root} not prepared by process 0")
        time.sleep(0.5)
