"""`kibamail api worker`: run broadcast jobs; start as many processes as needed."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from api.db import make_engine, make_sessionmaker
from api.domains import recheck_due_domains
from api.jobs.broadcasts import BroadcastJobs
from api.jobs.queue import Worker
from api.security import Signer
from kibamail.clients import redis_client
from kibamail.settings import Settings

log = logging.getLogger(__name__)
DOMAIN_RECHECK_INTERVAL_SECONDS = 300


def build_worker(settings: Settings, **worker_options: Any) -> Worker:
    engine = make_engine(settings.database.url)
    redis = redis_client(settings)
    jobs = BroadcastJobs(
        settings, make_sessionmaker(engine), redis, Signer(settings.api.secret_key)
    )
    return Worker(redis, jobs.handlers(), **worker_options)


def _recheck_domains_forever(settings: Settings, stop: threading.Event) -> None:
    """Periodic DNS re-verification (harmless if several workers do it at once)."""
    engine = make_engine(settings.database.url)
    redis = redis_client(settings)
    while not stop.wait(DOMAIN_RECHECK_INTERVAL_SECONDS):
        try:
            recheck_due_domains(make_sessionmaker(engine), settings, redis)
        except Exception:
            log.exception("domain re-check failed; trying again later")


def run(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO)
    worker = build_worker(settings)
    stop_event = threading.Event()

    def stop(_signum: int, _frame: Any) -> None:
        worker.stopping = True
        stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(
        target=_recheck_domains_forever, args=(settings, stop_event), daemon=True
    ).start()
    worker.run()
