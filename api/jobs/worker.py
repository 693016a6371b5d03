"""`kibamail api worker`: run broadcast jobs; start as many processes as needed.

Domain DNS re-checks are not here: the Dagster schedule in dagster_project/defs/domains runs them.
"""

from __future__ import annotations

import logging
import signal
from typing import Any

from api.db import make_engine, make_sessionmaker
from api.jobs.broadcast_fanout import BroadcastJobs
from api.jobs.queue import Worker
from api.services.security import Signer
from kibamail.clients import redis_client
from kibamail.settings import Settings

log = logging.getLogger(__name__)


def build_worker(settings: Settings, **worker_options: Any) -> Worker:
    engine = make_engine(settings.database.url)
    redis = redis_client(settings)
    jobs = BroadcastJobs(
        settings, make_sessionmaker(engine), redis, Signer(settings.api.secret_key)
    )
    worker_options.setdefault("dead_letter_hooks", jobs.dead_letter_hooks())
    worker_options.setdefault("batch_handlers", jobs.batch_handlers())
    return Worker(redis, jobs.handlers(), **worker_options)


def run(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO)
    worker = build_worker(settings)

    def stop(_signum: int, _frame: Any) -> None:
        worker.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.run()
