"""``bench.mta --mode connections``: many concurrent idle-then-active SMTP sessions on ONE
MTA process.

Every session connects (from one of several loopback addresses, each kept at or below the
policy file's ``max_connections_per_ip``, as real clients come from many IPs), reads the
greeting and says EHLO; all stay idle together for ``--idle-seconds``; then all of them at
once upgrade with STARTTLS, authenticate, submit one message and QUIT. Reports refusals
(a connection below the limit that was not greeted with 220 or failed later), the MTA's
peak RSS (target <= 400 MB) and acceptance latency of the active phase.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import ssl
import time
from typing import Any

from kibamail.settings import Settings
from local_stack.services import kibamail_spec
from local_stack.stack import Stack, tcp_open
from mta.config import load_config

from .mta_load import LeanSession, make_message
from .report import RunMeter

RSS_TARGET_MB = 400.0
# Sessions opened per wave (each wave greeted before the next): a burst of 2,000 SYNs
# overflows the listener's accept backlog (512), which is a different test.
OPEN_BATCH = 250


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not tcp_open(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"port {port} did not open")
        time.sleep(0.05)


async def _idle_then_active(
    port: int,
    credential: tuple[str, str],
    sessions: int,
    per_ip: int,
    idle_seconds: float,
    measure_idle: Any,
) -> dict[str, Any]:
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    refused: list[str] = []
    latencies: list[float] = []
    ready = 0
    all_open = asyncio.Event()
    go = asyncio.Event()

    async def greet(source: str) -> tuple[LeanSession, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        session = LeanSession(reader, writer)
        await session.reply(b"(greeting)", 220)
        await session.command(b"EHLO idle.loadgen.local", 250)
        return session, writer

    async def one(index: int) -> None:
        nonlocal ready
        source = f"127.0.{1 + index // per_ip // 250}.{2 + (index // per_ip) % 250}"
        try:
            session, writer = await asyncio.wait_for(greet(source), 60)
        except Exception as exc:
            refused.append(f"open: {type(exc).__name__} {exc}")
            return
        finally:
            ready += 1
            if ready == sessions:
                all_open.set()
        await go.wait()
        try:
            await session.command(b"STARTTLS", 220)
            await writer.start_tls(tls)
            await session.command(b"EHLO active.loadgen.local", 250)
            user, password = credential
            token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
            await session.command(f"AUTH PLAIN {token}".encode(), 235)
            rcpt = f"idle{index}@example{index % 20}.org"
            _, data = make_message("receipts@sender.example", rcpt)
            started = time.perf_counter()
            await session.send("receipts@sender.example", rcpt, data)
            latencies.append((time.perf_counter() - started) * 1000)
            await session.close()
        except Exception as exc:
            refused.append(f"active: {type(exc).__name__} {exc}")

    opened = time.perf_counter()
    tasks: list[asyncio.Task[None]] = []
    for start in range(0, sessions, OPEN_BATCH):  # clients arrive in waves, not one burst
        tasks.extend(
            asyncio.create_task(one(i)) for i in range(start, min(sessions, start + OPEN_BATCH))
        )
        while ready < len(tasks):
            await asyncio.sleep(0.01)
    await all_open.wait()
    open_seconds = time.perf_counter() - opened
    await asyncio.sleep(idle_seconds)
    idle_rss = measure_idle()
    go.set()
    active = time.perf_counter()
    await asyncio.gather(*tasks)
    active_seconds = time.perf_counter() - active
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) if ordered else 0.0

    return {
        "sessions": sessions,
        "source_addresses": -(-sessions // per_ip),
        "max_connections_per_ip": per_ip,
        "open_seconds": round(open_seconds, 2),
        "idle_seconds": idle_seconds,
        "mta_rss_mb_while_idle": idle_rss,
        "active_seconds": round(active_seconds, 2),
        "accepted": len(latencies),
        "refused_or_failed": len(refused),
        "first_refusals": refused[:3],
        "accept_p50_ms": pct(0.5),
        "accept_p99_ms": pct(0.99),
    }


def connections_run(
    stack: Stack, settings: Settings, args: argparse.Namespace, credential: tuple[str, str]
) -> dict[str, Any]:
    import uvloop

    per_ip = load_config(settings.mta.policy_file).submission.max_connections_per_ip
    stack.start(
        kibamail_spec(
            settings, "mta", ["mta", "--no-delivery"], health_port=settings.mta.metrics_port
        )
    )
    wait_port(settings.mta.submission_port)
    meter = RunMeter()
    meter.add("mta", stack.running_pid("mta"))
    meter.add("redis", stack.running_pid("redis"), children=False)
    meter.add_self("load_generator")
    meter.start()

    def rss_now() -> float:
        meter.sample()
        return meter.peak_rss_kb.get("mta", 0) / 1024

    try:
        figures = uvloop.run(
            _idle_then_active(
                settings.mta.submission_port,
                credential,
                args.sessions,
                per_ip,
                args.idle_seconds,
                lambda: round(rss_now(), 1),
            )
        )
        report = meter.stop()
    finally:
        stack.stop("mta")
    complete = figures["refused_or_failed"] == 0 and figures["accepted"] == args.sessions
    return {
        **figures,
        **report,
        "complete": complete,
        "rss_target_mb": RSS_TARGET_MB,
        "rss_within_target": report["peak_rss_mb"].get("mta", 0.0) <= RSS_TARGET_MB,
    }
