"""`kibamail mta` as a real process: health, /metrics, graceful SIGTERM."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from kibamail.intake import submit
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from local_stack.services import kibamail_spec
from local_stack.stack import Stack
from testing.testnet import SinkServer

from .helpers import make_message, wait_until, with_policy, write_policy

pytestmark = pytest.mark.e2e


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_mta_process_serves_metrics_and_stops_cleanly(
    test_settings: Settings,
    test_stack: Stack,
    redis_client: Any,
    kafka_service: str,
    sink: SinkServer,
    dns_server: Any,
    tmp_path: Path,
) -> None:
    settings = with_policy(test_settings, write_policy(tmp_path / "p.toml"))
    redis_client.set(RedisKeys.domain_ready("team-1", "sender.example"), "1")
    port = settings.mta.metrics_port
    test_stack.start(kibamail_spec(settings, "mta", ["mta"], port, "/metrics"))
    try:
        msgs = [make_message([f"p{i}@example.org"]) for i in range(3)]
        for msg in msgs:
            submit(redis_client, msg)
        assert wait_until(lambda: len(sink.delivered_counts()) == 3, timeout=30)

        def delivered() -> float:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
            return _metric(text, "kibamail_mta_delivery_outcomes_total", status="delivered")

        assert wait_until(lambda: delivered() == 3, timeout=10)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        for name in (
            "kibamail_mta_queue_depth",
            "kibamail_mta_retry_depth",
            "kibamail_mta_outbox_depth",
            "kibamail_mta_policy_rejections_total",
        ):
            assert re.search(rf"^# TYPE {name} ", text, re.MULTILINE), name
    finally:
        assert test_stack.stop("mta")
    assert test_stack.running_pid("mta") is None
