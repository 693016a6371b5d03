"""The delivery worker: takes queue entries, applies delivery policies, signs, delivers.

Per entry (one OutboundMessage, possibly several recipients): recipients are grouped by
domain, each group is resolved, policy-checked (held / failed / pool + source IP), and
sent over a pooled connection to its MX. All outcomes of the entry — status events into
the outbox, retry jobs, suppressions — are written in ONE Redis MULTI together with the
XACK (``mta.commit``; concurrent entries share the round trip), so a crash at any point
either redoes the whole entry (same deterministic event ids) or nothing. Recipients
already finished in a multi-domain entry are remembered in
``RedisKeys.delivery_progress`` and skipped on redelivery. The queue has one stream per
slot group (``mta.queue``); an entry's work stays in its group's keys.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from kibamail.clients import redis_client
from kibamail.contracts import (
    ContractError,
    MessageStatus,
    OutboundMessage,
    Topic,
    dead_letter,
)
from kibamail.redis_batching import PipelineBatcher, is_cluster_client
from kibamail.redis_keys import RedisKeys, slot_group
from kibamail.settings import Settings

from . import metrics
from .bounces import bounce_class, verdict_for_reply
from .commit import OutcomeRecorder, address_domain
from .config import MtaConfig
from .dkim_signing import DkimSigner
from .events import consumer_name
from .markers import MarkerWriter
from .outcomes import IN_DOUBT, IN_DOUBT_TEXT, Outcome, finished_outcomes
from .policies import PolicyChain, PolicyContext, provider_group
from .queue import GroupEntry, SubmissionQueue
from .resolver import DomainNotFoundError, MxResolver, NullMxError, TemporaryDnsError
from .return_path import ReturnPaths
from .sender_auth import PlatformSender
from .smtp_client import ConnectionPool, DataHooks, RcptResult, TransientConnectError

log = logging.getLogger(__name__)

# Seconds between two reads of the queue depth gauges (every group's stream and schedule).
DEPTHS_EVERY = 2.0


def classified(code: int, text: str, mx_host: str = "") -> dict[str, Any]:
    """Outcome fields of a non-2xx reply: the one classifier's verdict (kibamail.bounces,
    with the MX host for provider rules) and the class existing consumers read."""
    verdict = verdict_for_reply(code, text, mx_host)
    return {
        "bounce_class": bounce_class(verdict),
        "bounce_reason": verdict.reason.value,
        "bounce_action": verdict.action.value,
    }


class DeliveryWorker:
    def __init__(self, settings: Settings, config: MtaConfig, redis: Any) -> None:
        self.settings = settings
        self.config = config
        self.redis = redis
        self.queue = SubmissionQueue(redis, config.queue, consumer_name())
        self.recorder = OutcomeRecorder(redis, self.queue, config.queue)
        self.reads = PipelineBatcher(redis, transaction=False)
        self.resolver = MxResolver(settings.mta)
        self.return_paths = ReturnPaths(settings, config)
        self.pool = ConnectionPool(
            settings.mta.hostname,
            settings.mta.delivery_port,
            connect_timeout=config.queue.connect_timeout_seconds,
            command_timeout=config.queue.command_timeout_seconds,
            require_tls=config.require_outbound_tls,
        )
        platform = PlatformSender.from_settings(settings)  # its domain: platform mail only
        self.chain = PolicyChain(config, platform=platform)
        self.signer = DkimSigner(redis, platform=platform)
        # The in-doubt marker is written without yielding (see before_dot, mta.markers).
        self.sync_redis = redis_client(settings)
        self.markers = MarkerWriter(settings.redis.url, self.sync_redis, is_cluster_client(redis))
        self.concurrency = settings.mta.delivery_concurrency
        self.inflight: set[tuple[int, bytes]] = set()  # (slot group, entry id)

    async def run(self, stop: asyncio.Event) -> None:
        await self.queue.ensure_group()
        await self.markers.connect()
        work: asyncio.Queue[tuple[GroupEntry, bool]] = asyncio.Queue(maxsize=self.concurrency)
        tasks = [asyncio.create_task(self._reader(stop, work), name="mta-reader")]
        tasks.append(asyncio.create_task(self._housekeeping(stop, work), name="mta-housekeeping"))
        tasks += [
            asyncio.create_task(self._processor(work), name=f"mta-delivery-{i}")
            for i in range(self.concurrency)
        ]
        await stop.wait()
        tasks[0].cancel()
        tasks[1].cancel()
        # Let in-flight deliveries finish; unfinished entries stay pending for others.
        deadline = time.monotonic() + 10
        while self.inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for task in tasks[2:]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.pool.close()
        await self.recorder.batcher.aclose()
        await self.markers.close()
        self.sync_redis.close()

    async def _reader(
        self, stop: asyncio.Event, work: asyncio.Queue[tuple[GroupEntry, bool]]
    ) -> None:
        while not stop.is_set():
            room = self.concurrency * 2 - len(self.inflight)
            if room <= 0:
                await asyncio.sleep(0.01)
                continue
            try:
                entries = await self.queue.read_new(min(room, self.config.queue.read_batch))
            except Exception:
                log.exception("reading the submission stream failed; retrying")
                await asyncio.sleep(1)
                continue
            for group, entry in entries:
                self.inflight.add((group, entry[0]))
                await work.put(((group, entry), True))

    async def _housekeeping(
        self, stop: asyncio.Event, work: asyncio.Queue[tuple[GroupEntry, bool]]
    ) -> None:
        touch_every = max(1.0, self.config.queue.claim_idle_seconds / 3)
        last_touch = last_claim = last_depths = time.monotonic()
        while not stop.is_set():
            try:
                moved = await self.queue.move_due()
                now = time.monotonic()
                if now - last_touch >= touch_every:
                    await self.queue.touch(list(self.inflight))
                    last_touch = now
                if now - last_claim >= min(5.0, touch_every):
                    last_claim = now
                    for group, entry in await self.queue.reclaim(self.concurrency):
                        if (group, entry[0]) not in self.inflight:
                            self.inflight.add((group, entry[0]))
                            await work.put(((group, entry), False))
                if now - last_depths >= DEPTHS_EVERY:  # 3 reads per group: not every round
                    last_depths = now
                    xlen, retries, overdue = await self.queue.depths()
                    metrics.QUEUE_DEPTH.set(xlen)
                    metrics.RETRY_DEPTH.set(retries)
                    metrics.OLDEST_RETRY_AGE.set(overdue)
                if not moved:
                    await asyncio.sleep(0.5)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("queue housekeeping failed; retrying")
                await asyncio.sleep(1)

    async def _processor(self, work: asyncio.Queue[tuple[GroupEntry, bool]]) -> None:
        while True:
            (group, (entry_id, fields)), fresh = await work.get()
            try:
                await self.process(group, entry_id, fields, fresh)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Left unacknowledged: another worker (or this one) reclaims it later.
                log.exception("delivery of entry %s failed unexpectedly", entry_id)
            finally:
                self.inflight.discard((group, entry_id))

    async def _dead_letter(self, group: int, entry_id: bytes, meta: Any, why: str) -> None:
        """An entry no worker can deliver: to the dead-letter store, acknowledged."""
        value = dead_letter(RedisKeys.submission_stream(group), meta, why)

        def dead(pipe: Any) -> None:
            outbox = {"topic": Topic.DEAD_LETTER.value, "key": b"", "value": value}
            pipe.xadd(RedisKeys.event_outbox(group), outbox)
            self.queue.ack(pipe, group, entry_id)

        await self.recorder.run(group, dead)

    async def process(
        self, group: int, entry_id: bytes, fields: dict[bytes, bytes], fresh: bool
    ) -> None:
        """Deliver one entry of ``group``'s stream and record its outcomes."""
        try:
            msg = OutboundMessage.from_stream_fields(fields)
        except ContractError as exc:
            await self._dead_letter(group, entry_id, fields.get(b"meta"), str(exc))
            return
        if slot_group(msg.team_id) != group:  # intake never does this: its keys are elsewhere
            why = f"entry of team {msg.team_id!r} in the stream of slot group {group}"
            await self._dead_letter(group, entry_id, fields.get(b"meta"), why)
            return
        if msg.send_after is not None and msg.send_after.timestamp() > time.time():
            due = msg.send_after.timestamp()

            def later(pipe: Any) -> None:
                self.queue.schedule(pipe, group, msg, due)
                self.queue.ack(pipe, group, entry_id)

            await self.recorder.run(group, later)
            return
        done: dict[str, Outcome] = {}
        if not fresh:  # reclaimed from a dead worker (rare): say what it had settled
            progress = await self.queue.progress(group, entry_id)
            done = finished_outcomes(progress, self.config.queue.in_doubt)
            log.info(
                "reclaimed entry %s of group %d (message %s): recorded before %s",
                entry_id.decode(),
                group,
                msg.message_id,
                {rcpt: orjson.loads(raw)["status"] for rcpt, raw in progress.items()} or "none",
            )
        pending = [r for r in msg.recipients if r not in done]
        by_domain: dict[str, list[str]] = {}
        for rcpt in pending:
            by_domain.setdefault(address_domain(rcpt), []).append(rcpt)
        sender_domain = address_domain(msg.mail_from)
        signed = (
            await self.signer.sign(msg.data, sender_domain, msg.team_id) if by_domain else msg.data
        )
        groups = await asyncio.gather(
            *(
                self._deliver_domain(
                    msg, domain, rcpts, signed, group, entry_id, len(by_domain) > 1
                )
                for domain, rcpts in by_domain.items()
            )
        )
        outcomes = list(done.values()) + [o for group in groups for o in group]
        await self.recorder.record(group, entry_id, msg, outcomes)

    async def _deliver_domain(
        self,
        msg: OutboundMessage,
        domain: str,
        rcpts: list[str],
        data: bytes,
        slot: int,
        entry_id: bytes,
        record_progress: bool,
    ) -> list[Outcome]:
        group = provider_group(self.config, domain)  # by domain until the MX is known

        def all_(status: MessageStatus, code: int, text: str, **kw: Any) -> list[Outcome]:
            kw.setdefault("provider_group", group)
            return [Outcome(r, status, code, text, **kw) for r in rcpts]

        try:
            route = await self.resolver.mx(domain)
        except NullMxError as exc:
            text = f"5.1.10 {exc}"
            return all_(MessageStatus.BOUNCED, 556, text, **classified(556, text))
        except DomainNotFoundError as exc:
            text = f"5.1.2 {exc}"
            return all_(MessageStatus.BOUNCED, 550, text, **classified(550, text))
        except TemporaryDnsError as exc:
            text = f"4.4.3 {exc}"
            return all_(MessageStatus.DEFERRED, 451, text, **classified(451, text))
        group = provider_group(self.config, domain, route.hosts[0][1])
        ctx = PolicyContext(
            redis=self.redis,
            stage="delivery",
            team_id=msg.team_id,
            kind=msg.kind,
            mail_from=msg.mail_from,
            sender_domain=address_domain(msg.mail_from),
            recipients=list(rcpts),
            recipient_domain=domain,
            provider_group=group,
            size=len(msg.data),
            reads=self.reads,
        )
        verdict = await self.chain.run(ctx)
        outcomes: list[Outcome] = []
        if verdict.action == "hold":
            text = f"{verdict.enhanced} {verdict.text}"
            return all_(MessageStatus.HELD, verdict.code, text, retry_after=verdict.retry_after)
        if verdict.action in ("fail", "reject"):
            failed = verdict.failed_recipients or {r: verdict.text for r in rcpts}
            outcomes = [
                Outcome(
                    r,
                    MessageStatus.FAILED,
                    verdict.code,
                    f"{verdict.enhanced} {why}",
                    provider_group=group,
                )
                for r, why in failed.items()
            ]
            rcpts = [r for r in rcpts if r not in failed]
            if not rcpts:
                return outcomes
        # The signed return path (VERP) names this message and these recipients; a null
        # sender stays null.
        mail_from, ref = "", ""
        if msg.mail_from:
            mail_from, ref = await self.return_paths.address(
                msg.message_id, address_domain(msg.mail_from), rcpts
            )
        common: dict[str, Any] = {
            "pool": ctx.pool,
            "source_ip": ctx.source_ip,
            "mx_host": "",
            "provider_group": group,
            "return_ref": ref,
        }
        progress_key = RedisKeys.delivery_progress(slot, entry_id.decode())

        marked: set[str] = set()
        assume_delivered = self.config.queue.in_doubt == "assume_delivered"

        def before_dot(accepted: list[str]) -> Callable[[], None]:
            # Encoded now, written right after the dot in the same loop step (mta.markers).
            value = orjson.dumps({"status": IN_DOUBT, **common})
            write = self.markers.prepare_hset(progress_key, dict.fromkeys(accepted, value))

            def dot_sent() -> None:
                write()
                marked.update(accepted)

            return dot_sent

        async def answered(accepted: list[str], code: int, text: str) -> None:
            if 200 <= code < 300:
                if assume_delivered and marked >= set(accepted):
                    return  # the in-doubt marker already means "delivered" after a crash
                fields = {"status": "delivered", "code": code, "text": text, **common}
                value = orjson.dumps(fields)
                await self.redis.hset(progress_key, mapping=dict.fromkeys(accepted, value))
            else:
                await self.redis.hdel(progress_key, *accepted)

        hooks = DataHooks(before_dot, answered)

        shaping = self.config.shaping_for(group)
        last_error = "no MX host reachable"
        result = None
        started = time.monotonic()
        for _pref, host in route.hosts:
            try:
                addresses = await self.resolver.addresses(host)
            except TemporaryDnsError as exc:
                last_error = str(exc)
                continue
            common["mx_host"] = host
            for address in addresses[:2]:
                try:
                    result = await self.pool.send(
                        group=group,
                        shaping=shaping,
                        source_ip=ctx.source_ip,
                        address=address,
                        mail_from=mail_from,
                        rcpts=rcpts,
                        data=data,
                        hooks=hooks,
                        pace_per_minute=ctx.pace_per_minute.get(ctx.source_ip, 0.0),
                    )
                    break
                except TransientConnectError as exc:
                    last_error = str(exc)
            if result is not None:
                break
        metrics.DELIVERY_SECONDS.labels(group).observe(time.monotonic() - started)
        if result is None:
            text = f"4.4.1 {last_error}"
            return outcomes + all_(
                MessageStatus.DEFERRED, 451, text, **common, **classified(451, text)
            )
        for rcpt in rcpts:
            answer = result.rcpts[rcpt]
            why: dict[str, Any] = {}
            if 200 <= answer.code < 300:
                status = MessageStatus.DELIVERED
            elif answer.code == 0 and rcpt in marked and assume_delivered:
                # The dot went out and no answer came back (timeout, dropped connection):
                # the same doubt as a worker killed at that point, settled the same way.
                status = MessageStatus.DELIVERED
                answer = RcptResult(0, IN_DOUBT_TEXT)
            else:
                status = MessageStatus.BOUNCED if answer.code >= 500 else MessageStatus.DEFERRED
                why = classified(answer.code, answer.text, common["mx_host"])
            outcomes.append(
                Outcome(
                    rcpt,
                    status,
                    answer.code,
                    answer.text,
                    transcript=result.transcript,
                    **common,
                    **why,
                )
            )
        if record_progress:
            finals = {
                o.rcpt: orjson.dumps(
                    {
                        "status": o.status.value,
                        "code": o.code,
                        "text": o.text,
                        "pool": o.pool,
                        "source_ip": o.source_ip,
                        "bounce_class": o.bounce_class.value,
                        "bounce_reason": o.bounce_reason,
                        "bounce_action": o.bounce_action,
                        "provider_group": o.provider_group,
                    }
                )
                for o in outcomes
                if o.status in (MessageStatus.BOUNCED, MessageStatus.FAILED)
            }
            if finals:
                await self.redis.hset(progress_key, mapping=finals)
        return outcomes
