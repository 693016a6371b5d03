"""A provider-like SMTP sink (KumoMTA's "smart sink" idea) on aiosmtpd.

An accept-everything sink hides backpressure and retry bugs, so this one answers like
real providers: a configurable share of 4xx and 5xx answers with the providers' own
texts, slow answers, and connections dropped during DATA. Local parts force an answer:
``tempfail@`` (4xx at RCPT), ``permfail@`` (5xx at RCPT), ``slow@`` (slow DATA answer),
``disconnect@`` (connection dropped after DATA, no answer).

Every answer is recorded as ``{"message_id", "rcpt", "answer_code", "ts", "peer",
"mail_from"}`` (``mail_from``: the envelope sender, the MTA's signed return path): in memory
(``SinkServer.records``) and, when ``record_file`` is set, appended as one JSON line per
recipient so another process (tests, the demo) can count deliveries per platform message id
(``kibamail.intake.message_id_of``: X-Kibamail-Message-ID, else Message-ID).
``answer_code`` 250 means delivered; 0 means the sink dropped the connection.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from kibamail.intake import message_id_of
from mta.smtp_session import FastAddressSMTP

from .provider_texts import (
    ProviderAnswer,
    answers_for,
    provider_of_domain,
    rate_limited,
    user_unknown,
)


@dataclass
class SinkConfig:
    defer_share: float = 0.0
    bounce_share: float = 0.0
    slow_share: float = 0.0
    disconnect_share: float = 0.0
    slow_seconds: float = 2.0
    seed: int | None = None
    record_file: Path | None = None
    max_message_bytes: int = 50 * 1024 * 1024
    # Keep accepted message bytes in memory (tests that inspect DKIM signatures).
    keep_messages: bool = False
    # Also write each accepted message to <mailbox_dir>/<recipient>/<n>.eml: the local
    # stack's mailboxes, where a newcomer reads the verification link (README).
    mailbox_dir: Path | None = None
    # Offer STARTTLS with a self-signed cert (like real MX hosts do).
    starttls: bool = False
    # Decide defer/bounce (and which provider answer) from a hash of the recipient instead
    # of the RNG: benchmarks then see the same mix in every run and for every retry.
    by_recipient: bool = False


@dataclass
class SinkRecord:
    message_id: str
    rcpt: str
    answer_code: int
    ts: float = field(default_factory=time.time)
    peer: str = ""
    mail_from: str = ""


def _local_part(address: str) -> str:
    return address.rsplit("@", 1)[0].lower()


def _domain(address: str) -> str:
    return address.rsplit("@", 1)[-1].lower()


def recipient_draw(address: str) -> float:
    """A stable number in [0, 1) per recipient (``SinkConfig.by_recipient``)."""
    digest = hashlib.blake2b(address.lower().encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class SinkHandler:
    """aiosmtpd handler; decisions are drawn from a seeded RNG so runs can be reproduced."""

    def __init__(self, config: SinkConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self._lock = threading.Lock()
        self.records: list[SinkRecord] = []
        # Message-ID -> recipients answered 250, kept as records come (tests poll it).
        self.delivered: Counter[str] = Counter()
        self.messages: dict[str, bytes] = {}
        self.tls_message_ids: set[str] = set()
        self._file = config.record_file.open("ab", buffering=0) if config.record_file else None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _record(
        self, message_id: str, rcpt: str, code: int, peer: str = "", mail_from: str = ""
    ) -> None:
        rec = SinkRecord(message_id, rcpt, code, peer=peer, mail_from=mail_from)
        with self._lock:
            self.records.append(rec)
            if code == 250:
                self.delivered[message_id] += 1
            if self._file is not None:
                self._file.write(orjson.dumps(rec.__dict__) + b"\n")

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        local = _local_part(address)
        provider = provider_of_domain(_domain(address))
        if local == "tempfail":
            self._record("", address, 450)
            return "450 4.2.1 " + rate_limited(provider).text
        if local == "permfail":
            answer = user_unknown(provider)
            self._record("", address, answer.code)
            return answer.line()
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    def _pick(self, answers: list[ProviderAnswer], draw: float) -> ProviderAnswer:
        if self.config.by_recipient:  # the same answer for the same recipient every time
            return answers[int(draw * 1_000_003) % len(answers)]
        return self._rng.choice(answers)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        message_id = message_id_of(data)
        rcpts = list(envelope.rcpt_tos)
        locals_ = {_local_part(r) for r in rcpts}
        cfg = self.config
        draw = recipient_draw(rcpts[0]) if cfg.by_recipient and rcpts else self._rng.random()
        if "disconnect" in locals_ or draw < cfg.disconnect_share:
            for rcpt in rcpts:
                self._record(message_id, rcpt, 0)
            if server.transport is not None:
                cast(asyncio.Transport, server.transport).abort()
            return "421 4.4.2 connection dropped by the test internet"
        if "slow" in locals_ or self._rng.random() < cfg.slow_share:
            await asyncio.sleep(cfg.slow_seconds)
        provider = provider_of_domain(_domain(rcpts[0])) if rcpts else "generic"
        draw -= cfg.disconnect_share
        if draw < cfg.defer_share:
            answer = self._pick(answers_for(provider, temporary=True), draw)
        elif draw < cfg.defer_share + cfg.bounce_share:
            answer = self._pick(answers_for(provider, temporary=False), draw)
        else:
            peer = str((session.peer or ("",))[0])
            if cfg.keep_messages:
                self.messages[message_id] = data
            if cfg.mailbox_dir is not None:
                for rcpt in rcpts:
                    box = cfg.mailbox_dir / rcpt.lower().replace("/", "_")
                    box.mkdir(parents=True, exist_ok=True)
                    (box / f"{time.time_ns()}.eml").write_bytes(data)
            if session.ssl is not None:
                self.tls_message_ids.add(message_id)
            for rcpt in rcpts:
                self._record(message_id, rcpt, 250, peer, envelope.mail_from or "")
            return f"250 2.0.0 OK {message_id} queued as {self._rng.getrandbits(40):x}"
        for rcpt in rcpts:
            self._record(message_id, rcpt, answer.code)
        return answer.line()


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed: the sink shares the benchmark machine's CPU with the MTA."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class _SinkController(Controller):
    def factory(self) -> SMTP:
        return FastAddressSMTP(self.handler, **self.SMTP_kwargs)


class SinkServer:
    """In-process sink: ``start()`` serves on a thread with its own event loop."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, config: SinkConfig | None = None
    ) -> None:
        self.config = config or SinkConfig()
        self.handler = SinkHandler(self.config)
        self.host = host
        if port == 0:
            from local_stack.stack import free_port

            port = free_port()
        self.port = port
        tls_kwargs: dict[str, Any] = {}
        if self.config.starttls:
            import tempfile

            from mta.tls import ensure_self_signed, server_context

            cert, key = ensure_self_signed(Path(tempfile.mkdtemp()), "mx.testnet.kibamail.local")
            tls_kwargs = {"tls_context": server_context(cert, key), "require_starttls": False}
        self._controller = _SinkController(
            self.handler,
            loop=_event_loop(),
            hostname=host,
            port=port,
            server_hostname="mx.testnet.kibamail.local",
            data_size_limit=self.config.max_message_bytes,
            enable_SMTPUTF8=True,
            ready_timeout=10,
            **tls_kwargs,
        )

    def start(self) -> SinkServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
        self.handler.close()

    def __enter__(self) -> SinkServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def records(self) -> list[SinkRecord]:
        return self.handler.records

    def delivered_counts(self) -> Counter[str]:
        """Message-ID -> number of recipients the sink accepted (250) for it."""
        with self.handler._lock:
            return Counter(self.handler.delivered)

    def delivered_messages(self) -> int:
        """How many distinct Message-IDs were delivered (cheap enough to poll)."""
        return len(self.handler.delivered)


def read_records(path: Path) -> list[SinkRecord]:
    """Read a sink record file written by another process."""
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().splitlines():
        if line.strip():
            raw = orjson.loads(line)
            out.append(
                SinkRecord(
                    raw["message_id"],
                    raw["rcpt"],
                    raw["answer_code"],
                    raw["ts"],
                    raw.get("peer", ""),
                    raw.get("mail_from", ""),
                )
            )
    return out
