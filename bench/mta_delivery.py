"""Delivery-only benchmark (and profiler) of one MTA delivery process.

``python -m bench.mta_delivery [--messages N] [--profile FILE]`` starts durable Redis,
Tansu and the test internet (a separate process), queues N single-recipient messages
through ``kibamail.intake``, then runs ONE delivery process (``mta.main.serve`` without
listeners, in this process so ``--profile`` can cProfile it) until every message's
outcome is recorded and the outbox is drained to Kafka. Prints one JSON line: drain
rate in msgs/s, and the ratio to the end-to-end target of ``bench.mta`` (300 msgs/s),
which it is an upper bound of for one process.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from deliverability.domain_checks import set_ready
from kibamail.clients import ensure_topics, redis_client
from kibamail.contracts import MessageMapping, OutboundMessage
from kibamail.intake import queue_on_pipeline
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from local_stack.services import kafka_spec, kibamail_spec, redis_spec
from local_stack.stack import Stack
from testing.fixtures import build_test_settings
from testing.testnet import read_records

from .mta import BENCH_TEAM, TARGET_E2E_RATE, bench_policy, store_bench_dkim_key, wait_port
from .mta_load import make_message


def fill_queue(settings: Settings, messages: int, dkim: str) -> None:
    """What ``bench.mta``'s SMTP submissions queue: 2 KB transactional mail, source smtp
    (so the worker also computes the scoring features), 20 recipient domains."""
    client = redis_client(settings)
    client.flushdb()
    set_ready(client, BENCH_TEAM, "sender.example", True)
    store_bench_dkim_key(client, dkim)
    pipe = client.pipeline(transaction=False)
    sender = "receipts@sender.example"
    for i in range(messages):
        rcpt = f"user{i}@example{i % 20}.org"
        message_id, data = make_message(sender, rcpt)
        msg = OutboundMessage(
            message_id=message_id,
            team_id=BENCH_TEAM,
            mail_from=sender,
            recipients=[rcpt],
            data=data,
            source="smtp",
        )
        queue_on_pipeline(pipe, msg, MessageMapping(team_id=BENCH_TEAM))
        if i % 500 == 499:
            pipe.execute()
    pipe.execute()
    client.close()


async def drain(settings: Settings, messages: int, timeout: float) -> float:
    from kibamail.clients import async_redis_client
    from mta.main import serve

    client = async_redis_client(settings)  # a sync client here would block the measured loop
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(serve(settings, stop, listeners=False))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            pipe = client.pipeline(transaction=False)
            for key in [*RedisKeys.submission_streams(), *RedisKeys.event_outboxes()]:
                pipe.xlen(key)
            lengths = await pipe.execute()
            pending = sum(lengths[: len(lengths) // 2])
            outbox = sum(lengths[len(lengths) // 2 :])
            if pending == 0 and outbox == 0:
                break
        return time.perf_counter() - started
    finally:
        stop.set()
        await task
        await client.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mta_delivery")
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--profile", type=Path, help="write cProfile stats here")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop like `kibamail mta`")
    parser.add_argument("--dkim", choices=["rsa", "ed25519", "none"], default="rsa")
    parser.add_argument("--concurrency", type=int, help="delivery_concurrency (default: settings)")
    args = parser.parse_args(argv)
    state_dir = Path(tempfile.mkdtemp(prefix="kibamail-bench-mta-delivery-"))
    settings = build_test_settings(state_dir)
    policy = bench_policy(state_dir / "policies.toml")
    mta_update: dict[str, Any] = {"policy_file": policy}
    if args.concurrency:
        mta_update["delivery_concurrency"] = args.concurrency
    settings = settings.model_copy(update={"mta": settings.mta.model_copy(update=mta_update)})
    stack = Stack(state_dir)
    result: dict[str, Any] = {"benchmark": "mta_delivery", "messages": args.messages}
    try:
        stack.start(redis_spec(settings, durable=True))
        stack.start(kafka_spec(settings))
        ensure_topics(settings)
        mta = settings.mta
        testnet = ["testnet", "--smtp-port", str(mta.delivery_port), "--dns-port"]
        testnet += [str(mta.dns_port), "--defer-share", "0", "--bounce-share", "0"]
        records = state_dir / "sink-records.jsonl"
        testnet += ["--record-file", str(records)]
        stack.start(kibamail_spec(settings, "testnet", testnet, health_port=mta.delivery_port))
        wait_port(mta.delivery_port)
        fill_queue(settings, args.messages, args.dkim)
        profiler = cProfile.Profile() if args.profile else None
        cpu_started = time.process_time()
        if profiler:
            profiler.enable()
        if args.uvloop:
            import uvloop

            seconds = uvloop.run(drain(settings, args.messages, args.timeout))
        else:
            seconds = asyncio.run(drain(settings, args.messages, args.timeout))
        cpu_seconds = time.process_time() - cpu_started
        if profiler:
            profiler.disable()
            profiler.dump_stats(str(args.profile))
        delivered = len({r.message_id for r in read_records(records) if r.answer_code == 250})
        rate = delivered / seconds
        result.update(
            delivered_to_sink=delivered,
            seconds=round(seconds, 2),
            msgs_per_s=round(rate, 1),
            ratio_to_e2e_target=round(rate / TARGET_E2E_RATE, 3),
            delivery_concurrency=mta.delivery_concurrency,
            dkim=args.dkim,
            cpu_ms_per_message=round(1000 * cpu_seconds / max(delivered, 1), 3),
        )
    finally:
        stack.stop_all(order=["testnet", "kafka", "redis"])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
