"""Manual runs: ``python -m local_stack.clickhouse_gateway [--port N] [--data-dir DIR] ...``.

Defaults come from KIBAMAIL_CLICKHOUSE__* like ``kibamail warehouse serve``; flags override.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kibamail.settings import get_settings

from .server import serve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--database")
    parser.add_argument("--max-body-bytes", type=int, help="largest request body accepted")
    parser.add_argument("--workers", type=int, help="engine worker threads")
    args = parser.parse_args()
    settings = get_settings()
    updates = {
        k: v
        for k, v in {
            "host": args.host,
            "port": args.port,
            "data_dir": args.data_dir,
            "database": args.database,
        }.items()
        if v is not None
    }
    if updates:
        settings = settings.model_copy(
            update={"clickhouse": settings.clickhouse.model_copy(update=updates)}
        )
    serve(settings, max_body_bytes=args.max_body_bytes, workers=args.workers)


if __name__ == "__main__":
    main()
