"""Paced load through HAProxy for the scale-out test: API sends and SMTP submissions.

Every attempt is recorded with when it started and ended, which backend took it (the API's
``X-Served-By`` header from HAProxy, the MTA's host name from the SMTP banner) and when that
SMTP connection was opened, so the test can tell a message lost to a killed process's cut
connection from any other failure. Runs on its own thread and event loop; the test's
thread kills and restarts processes meanwhile.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

_QUEUED_AS = re.compile(r"queued as (\S+)")
_ENHANCED = re.compile(r"^\d\.\d{1,3}\.\d{1,3}$")


@dataclass
class Attempt:
    path: str  # "api" or "smtp"
    index: int
    started: float
    ended: float = 0.0
    ok: bool = False
    message_id: str = ""
    backend: str = ""
    connection_opened: float = 0.0
    error: str = ""


@dataclass
class Load:
    """``api_total`` POST /v1/emails and ``smtp_total`` SMTP submissions, started at
    ``rate`` per second in all (half each way while both last), by ``api_clients``
    concurrent HTTP clients and ``smtp_sessions`` SMTP sessions."""

    api_url: str
    api_key: str
    smtp_port: int
    smtp_login: tuple[str, str]
    domain: str
    api_total: int
    smtp_total: int
    rate: float
    api_clients: int = 6
    smtp_sessions: int = 4
    attempts: list[Attempt] = field(default_factory=list)
    connect_errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="scale-out-load", daemon=True)
        self._lock = threading.Lock()
        self.t0 = 0.0

    # ---- control (test thread) -----------------------------------------------------
    def start(self) -> None:
        self.t0 = time.monotonic()
        self._thread.start()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def done(self) -> int:
        with self._lock:
            return sum(1 for a in self.attempts if a.ended)

    def snapshot(self) -> list[Attempt]:
        with self._lock:
            return list(self.attempts)

    # ---- load (its own thread) -----------------------------------------------------
    def recipient(self, path: str, index: int) -> str:
        return f"{path}{index}@example{index % 20}.org"

    def _due(self, order: int) -> float:
        return self.t0 + order / self.rate

    def _record(self, attempt: Attempt) -> Attempt:
        with self._lock:
            self.attempts.append(attempt)
        return attempt

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        # Interleave the two paths in one schedule: 0, 1, 2, ... alternate API and SMTP.
        api_slots = itertools.count(0, 2)
        smtp_slots = itertools.count(1, 2)
        api_indexes = iter(range(self.api_total))
        smtp_indexes = iter(range(self.smtp_total))
        await asyncio.gather(
            self._api(api_indexes, api_slots),
            *(self._smtp(smtp_indexes, smtp_slots) for _ in range(self.smtp_sessions)),
        )

    async def _api(self, indexes: Iterator[int], slots: Iterator[int]) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"}
        limits = httpx.Limits(max_connections=self.api_clients)
        async with httpx.AsyncClient(base_url=self.api_url, timeout=30, limits=limits) as client:

            async def worker() -> None:
                for index in indexes:
                    await asyncio.sleep(max(0.0, self._due(next(slots)) - time.monotonic()))
                    await self.send_api(client, headers, index)

            await asyncio.gather(*(worker() for _ in range(self.api_clients)))

    def api_body(self, index: int) -> dict[str, Any]:
        return {
            "from": f"Shop <orders@{self.domain}>",
            "to": [self.recipient("api", index)],
            "subject": f"Receipt {index}",
            "text": f"Thanks for order {index}.",
        }

    async def send_api(self, client: Any, headers: dict[str, str], index: int) -> Attempt:
        """One send with its idempotency key (a retry of the same index is safe)."""
        attempt = self._record(Attempt("api", index, time.monotonic()))
        try:
            resp = await client.post(
                "/v1/emails",
                json=self.api_body(index),
                headers={**headers, "Idempotency-Key": f"scale-out-{index}"},
            )
            attempt.backend = resp.headers.get("X-Served-By", "")
            if 200 <= resp.status_code < 300:
                attempt.message_id, attempt.ok = str(resp.json()["id"]), True
            else:
                attempt.error = f"{resp.status_code} {resp.text[:200]}"
        except Exception as exc:  # a transport error is what a cut connection looks like
            attempt.error = repr(exc)
        attempt.ended = time.monotonic()
        return attempt

    async def retry_api(self, indexes: list[int]) -> list[Attempt]:
        """Resend cut API requests with their idempotency keys (what a client does)."""
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"}
        async with httpx.AsyncClient(base_url=self.api_url, timeout=30) as client:
            return [await self.send_api(client, headers, index) for index in indexes]

    async def _connect(self) -> tuple[Any, str, float]:
        import aiosmtplib

        for _ in range(20):
            smtp = aiosmtplib.SMTP(
                hostname="127.0.0.1", port=self.smtp_port, validate_certs=False, timeout=30
            )
            opened = time.monotonic()
            try:
                banner = await smtp.connect(start_tls=False)
                await smtp.starttls()
                await smtp.login(*self.smtp_login)
            except Exception as exc:  # a session being opened when its MTA was killed
                self.connect_errors.append(repr(exc))
                smtp.close()
                await asyncio.sleep(0.2)
                continue
            # "220 [2.0.0] <host name> ...": the MTA that HAProxy chose for this session.
            words = [w for w in banner.message.split() if not _ENHANCED.match(w)]
            return smtp, words[0] if words else "", opened
        raise RuntimeError(f"no SMTP session through HAProxy: {self.connect_errors[-3:]}")

    async def _smtp(self, indexes: Iterator[int], slots: Iterator[int]) -> None:
        """One client's sessions: reconnect after a broken one, never resend a message."""
        smtp: Any = None
        backend, opened = "", 0.0
        for index in indexes:
            await asyncio.sleep(max(0.0, self._due(next(slots)) - time.monotonic()))
            if smtp is None:
                smtp, backend, opened = await self._connect()
            attempt = self._record(Attempt("smtp", index, time.monotonic()))
            attempt.backend, attempt.connection_opened = backend, opened
            rcpt = self.recipient("smtp", index)
            data = (
                f"From: Shop <orders@{self.domain}>\r\nTo: {rcpt}\r\nSubject: Receipt {index}\r\n"
                f"Message-ID: <smtp-{index}@{self.domain}>\r\n\r\nThanks for order {index}.\r\n"
            )
            try:
                _errors, reply = await smtp.sendmail(f"orders@{self.domain}", [rcpt], data)
                match = _QUEUED_AS.search(reply)
                attempt.ok = match is not None
                attempt.message_id = match.group(1) if match else ""
                attempt.error = "" if match else reply
            except Exception as exc:
                attempt.error = repr(exc)
                smtp.close()
                smtp = None
            attempt.ended = time.monotonic()
        if smtp is not None:
            try:
                await smtp.quit()
            except Exception:
                smtp.close()
