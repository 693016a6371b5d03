"""The SMTP load generator shared by both servers in ``bench.mta``.

Each of ``connections`` clients connects, upgrades with STARTTLS, authenticates with
AUTH PLAIN and submits its share of messages on that one session, timing every
transaction (MAIL FROM .. final 250) for p50/p99 acceptance latency.

The generator shares the 2 cores with the servers it measures, so it is kept cheap:
``generate`` runs it on uvloop (TLS in C) and MAIL/RCPT go out as plain commands
(aiosmtplib's ``sendmail`` re-parses every address with ``email.utils``). Same bytes
on the wire, one command at a time, for both servers.
"""

from __future__ import annotations

import asyncio
import ssl
import statistics
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiosmtplib

from mta.smtp_client import smtp_path_command


@dataclass
class LoadResult:
    sent: int = 0
    failed: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)
    first_error: str = ""

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    def summary(self) -> dict[str, float | int]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "msgs_per_s": round(self.rate, 1),
            "p50_ms": self.percentile(0.50),
            "p99_ms": self.percentile(0.99),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 2) if self.latencies_ms else 0,
        }


def make_message(sender: str, rcpt: str, size: int = 2000) -> tuple[str, bytes]:
    domain = sender.rpartition("@")[2]
    message_id = f"{uuid.uuid4()}@{domain}"
    line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
    body = (line * (size // len(line) + 1))[:size].rstrip("\r\n")
    data = (
        f"From: {sender}\r\nTo: {rcpt}\r\nSubject: Your receipt\r\n"
        f"Message-ID: <{message_id}>\r\nDate: Sat, 28 Nov 2026 03:00:00 +0000\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()
    return message_id, data


async def run_load(
    port: int,
    username: str,
    password: str,
    *,
    messages: int,
    connections: int,
    sender: str = "receipts@sender.example",
    rcpt_domains: int = 20,
) -> LoadResult:
    result = LoadResult()
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    counter = iter(range(messages))

    async def client(index: int) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60, start_tls=False)
        await smtp.connect()
        await smtp.starttls(tls_context=tls)
        await smtp.login(username, password)
        try:
            for i in counter:
                rcpt = f"user{i}@example{i % rcpt_domains}.org"
                message_id, data = make_message(sender, rcpt)
                started = time.perf_counter()
                try:
                    await smtp_path_command(smtp, b"MAIL", b"FROM:", sender, False)
                    await smtp_path_command(smtp, b"RCPT", b"TO:", rcpt, False)
                    await smtp.data(data)
                except aiosmtplib.SMTPException as exc:
                    result.failed += 1
                    result.first_error = result.first_error or repr(exc)
                    continue
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
                result.message_ids.append(message_id)
                result.sent += 1
        finally:
            try:
                await smtp.quit()
            except aiosmtplib.SMTPException:
                smtp.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(connections)))
    result.seconds = time.perf_counter() - started
    return result


def generate(port: int, username: str, password: str, **kwargs: Any) -> LoadResult:
    """``run_load`` on its own uvloop event loop (blocking)."""
    import uvloop

    return uvloop.run(run_load(port, username, password, **kwargs))
