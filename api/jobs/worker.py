"""`kibamail api worker`: run broadcast jobs; start as many processes as needed."""

from __future__ import annotations

import logging
import signal
from typing import Any

from api.db import make_engine, make_sessionmaker
from api.jobs.broadcasts import BroadcastJobs
from api.jobs.queue import Worker
from api.security import Signer
from kibamail.clients import redis_client
from kibamail.settings import Settings


def build_worker(settings: Settings, **worker_options: Any) -> Worker:
    engine = make_engine(settings.database.url)
    redis = redis_client(settings)
    jobs = BroadcastJobs(
        settings, make_sessionmaker(engine), redis, Signer(settings.api.secret_key)
    )
    return Worker(redis, jobs.handlers(), **worker_options)


def run(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO)
    worker = build_worker(settings)

    def stop(_signum: int, _frame: Any) -> None:
        worker.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.run()
