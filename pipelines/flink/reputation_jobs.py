"""Run Kibamail's reputation SQL jobs (sql/*.sql) with PyFlink's Table API.

Started by ``kibamail flink`` (which passes the contract's topic names, so nothing is
redefined here) in this project's own environment. Without ``--jobmanager`` the jobs
run on an embedded mini-cluster in this process; with it they are submitted to a Flink
cluster's REST endpoint. ``--start-offsets/--end-offsets`` bound the source (tests:
the local broker's ListOffsets answer is wrong, so bounds come from the caller).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from string import Template

SQL_DIR = Path(__file__).parent / "sql"
DDL = ("01_source_statuses.sql", "02_scoped.sql", "03_sink_signals.sql")
INSERTS = ("04_tumbling_1m.sql", "05_hopping_1h.sql")


def offsets_option(spec: str) -> str:
    """'0:120,1:98' -> Flink's 'partition:0,offset:120;partition:1,offset:98'."""
    parts = []
    for item in spec.split(","):
        partition, offset = item.split(":")
        parts.append(f"partition:{int(partition)},offset:{int(offset)}")
    return ";".join(parts)


def scan_options(start: str | None, end: str | None) -> str:
    if start is None:
        options = [
            "'scan.startup.mode' = 'group-offsets'",
            "'properties.auto.offset.reset' = 'earliest'",
        ]
    else:
        options = [
            "'scan.startup.mode' = 'specific-offsets'",
            f"'scan.startup.specific-offsets' = '{offsets_option(start)}'",
        ]
    if end is not None:
        options += [
            "'scan.bounded.mode' = 'specific-offsets'",
            f"'scan.bounded.specific-offsets' = '{offsets_option(end)}'",
        ]
    return ",\n    ".join(options)


def local_cluster_options(host: str, rest_port: int) -> dict[str, str]:
    """The embedded mini-cluster binds and advertises ``host`` everywhere.

    Without these, Flink names its RPC endpoints and task manager after the machine's
    hostname, and fails where that name does not resolve; the REST port (health checks,
    job overview) is otherwise random.
    """
    options = {
        "jobmanager.rpc.address": host,
        "jobmanager.bind-host": host,
        "taskmanager.host": host,
        "taskmanager.bind-host": host,
        "rest.address": host,
        "rest.bind-address": host,
    }
    if rest_port:
        options["rest.port"] = options["rest.bind-port"] = str(rest_port)
    return options


def render(name: str, params: dict[str, str]) -> str:
    return Template((SQL_DIR / name).read_text()).substitute(params).strip().rstrip(";")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--statuses-topic", required=True)
    parser.add_argument("--signals-topic", required=True)
    parser.add_argument("--start-offsets", help="partition:offset,... (default: group offsets)")
    parser.add_argument("--end-offsets", help="partition:offset,... (default: unbounded)")
    parser.add_argument("--watermark-seconds", type=int, default=5)
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--jobmanager", help="host:port of a Flink cluster's REST endpoint")
    parser.add_argument("--host", default="127.0.0.1", help="embedded cluster's address")
    parser.add_argument("--rest-port", type=int, default=0, help="embedded cluster's REST port")
    args = parser.parse_args(argv)

    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    cluster = Configuration()
    if not args.jobmanager:
        for key, value in local_cluster_options(args.host, args.rest_port).items():
            cluster.set_string(key, value)
    env = TableEnvironment.create(
        EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(cluster).build()
    )
    config = env.get_config()
    config.set("table.local-time-zone", "UTC")
    config.set("parallelism.default", str(args.parallelism))
    config.set("pipeline.name", "kibamail-reputation-signals")
    if args.end_offsets is None:
        # Unbounded: the Kafka sink flushes and source offsets commit on checkpoints.
        config.set("execution.checkpointing.interval", "10 s")
    if args.jobmanager:
        host, port = args.jobmanager.rsplit(":", 1)
        config.set("execution.target", "remote")
        config.set("rest.address", host)
        config.set("rest.port", port)
    params = {
        "bootstrap": args.bootstrap,
        "statuses_topic": args.statuses_topic,
        "signals_topic": args.signals_topic,
        "watermark_seconds": str(args.watermark_seconds),
        "scan_options": scan_options(args.start_offsets, args.end_offsets),
    }
    for name in DDL:
        env.execute_sql(render(name, params))
    statements = env.create_statement_set()
    for name in INSERTS:
        statements.add_insert_sql(render(name, params))
    result = statements.execute()
    print(f"submitted job {result.get_job_client().get_job_id()}", flush=True)
    result.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
