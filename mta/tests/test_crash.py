"""kill -9 the MTA during a 20,000-message run: nothing lost, nothing sent twice, all reported."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from kibamail.intake import queue_on_pipeline
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from local_stack.services import kibamail_spec
from local_stack.stack import Stack
from testing.testnet import SinkServer

from .helpers import (
    StatusReader,
    duplicate_story,
    make_message,
    queued,
    status_offsets,
    wait_until,
    with_policy,
    write_policy,
)

# ~70 s on an idle 2-core machine; the limit leaves room for a loaded one.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

TOTAL = 20_000
FINAL = {"delivered", "bounced", "failed", "expired"}


def test_kill_9_mid_run_loses_and_duplicates_nothing(
    test_settings: Settings,
    test_stack: Stack,
    redis_client: Any,
    kafka_service: str,
    sink: SinkServer,
    dns_server: Any,
    tmp_path: Path,
) -> None:
    settings = with_policy(test_settings, write_policy(tmp_path / "policies.toml"))
    redis_client.set(RedisKeys.domain_ready("team-1", "sender.example"), "1")
    # Where this run's status events will start (the topic is shared by the session).
    start_offsets = status_offsets(settings)
    spec = kibamail_spec(settings, "mta", ["mta"], health_port=settings.mta.metrics_port)
    test_stack.start(spec)
    ids: list[str] = []
    pipe = redis_client.pipeline(transaction=False)
    for i in range(TOTAL):
        msg = make_message([f"user{i}@example{i % 50}.org"])
        ids.append(msg.message_id)
        queue_on_pipeline(pipe, msg)
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()

    assert wait_until(lambda: sink.delivered_messages() >= TOTAL // 4, timeout=120)
    test_stack.kill("mta")  # SIGKILL to the process group, mid-delivery
    killed_at = time.time()
    at_kill = sink.delivered_messages()
    assert at_kill < TOTAL, "the run finished before the kill; nothing was tested"
    test_stack.start(spec)
    try:
        assert wait_until(lambda: sink.delivered_messages() >= TOTAL, timeout=700, interval=0.5)
        counts = sink.delivered_counts()
        assert set(counts) == set(ids)
        duplicates = {mid: n for mid, n in counts.items() if n != 1}
        assert duplicates == {}, (
            f"{len(duplicates)} messages delivered more than once: "
            + duplicate_story(
                sink.records, set(duplicates), killed_at, [test_stack.log_file("mta")]
            )
        )

        # The topic is shared with the session's other tests: judge only this run's messages.
        mine = set(ids)
        reader = StatusReader(settings, start_offsets=start_offsets, message_ids=mine)
        try:

            def all_final(events: list[Any]) -> bool:
                finished = {e.message_id for e in events if e.status.value in FINAL}
                return len(finished & mine) >= TOTAL

            events = [e for e in reader.poll_until(all_final, timeout=180) if e.message_id in mine]
        finally:
            reader.close()
        finals = {e.message_id for e in events if e.status.value in FINAL}
        accepted = {e.message_id for e in events if e.status.value == "accepted"}
        assert finals == set(ids) and accepted == set(ids)
        # Redelivered entries re-emit the SAME event ids: unique rows downstream.
        delivered_ids = {e.event_id for e in events if e.status.value == "delivered"}
        assert len(delivered_ids) == TOTAL
        assert wait_until(lambda: queued(redis_client) == 0, 30)
    finally:
        test_stack.stop("mta")
    print(f"killed after {at_kill} deliveries; {TOTAL} delivered exactly once")
