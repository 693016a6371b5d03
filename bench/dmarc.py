"""Benchmark: `kibamail dmarc parse` (deliverability.parser) vs parsedmarc.

Two input sets, both parsers on the same files from disk, interleaved chunk by chunk:

- generated reports (mixed sizes; plain XML, .xml.gz and .zip; a fifth in the RFC 9990
  schema), checked against the generated truth;
- the real-world fixtures in ``../shared/fixtures/dmarc`` (read in place, not copied:
  reports as sent by providers, an invalid one, and two report emails with .gz and .zip
  attachments), repeated ``--fixture-rounds`` times; the parsers must agree per file.

Both parsers run warm: one untimed pass over each set first, so parsedmarc's own caches
(IP info, imports) are as hot as ours; neither clears a cache between files. Prints one
JSON line: rates, ratios (target >= 5 on the real-world set), disagreements (target 0),
CPU seconds and peak RSS of the process, the load average; ``complete`` is false when a
file has no verdict from either parser that matches the other's (or the truth).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.report import RunMeter, finish
from deliverability.models import AggregateReport
from deliverability.parser import parse_file
from deliverability.samples import generate
from kibamail.settings import REPO_ROOT

CHUNK = 200
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "dmarc"


def _ours(paths: list[Path]) -> list[tuple[int, int] | None]:
    results: list[tuple[int, int] | None] = []
    for path in paths:
        outcome = parse_file(path)
        report = outcome.reports[0] if outcome.ok and outcome.reports else None
        if isinstance(report, AggregateReport):
            results.append((len(report.records), report.total_messages))
        else:
            results.append(None)
    return results


def _parsedmarc(paths: list[Path]) -> list[tuple[int, int] | None]:
    import parsedmarc

    logging.getLogger("parsedmarc").setLevel(logging.ERROR)
    results: list[tuple[int, int] | None] = []
    for path in paths:
        try:
            parsed = parsedmarc.parse_report_file(
                str(path), offline=True, always_use_local_files=True
            )
        except Exception:
            results.append(None)
            continue
        records = parsed["report"]["records"]
        results.append((len(records), sum(int(r["count"]) for r in records)))
    return results


def timed(paths: list[Path]) -> tuple[list[Any], list[Any], float, float]:
    """Both parsers over ``paths``, interleaved by chunk (load hits both alike), warm."""
    _ours(paths[:CHUNK])
    _parsedmarc(paths[:CHUNK])
    ours: list[tuple[int, int] | None] = []
    theirs: list[tuple[int, int] | None] = []
    ours_seconds = theirs_seconds = 0.0
    for start in range(0, len(paths), CHUNK):
        chunk = paths[start : start + CHUNK]
        started = time.perf_counter()
        ours.extend(_ours(chunk))
        ours_seconds += time.perf_counter() - started
        started = time.perf_counter()
        theirs.extend(_parsedmarc(chunk))
        theirs_seconds += time.perf_counter() - started
    return ours, theirs, ours_seconds, theirs_seconds


def generated(reports: int, seed: int) -> dict[str, Any]:
    samples = generate(reports, seed=seed)
    with tempfile.TemporaryDirectory(prefix="bench-dmarc-") as tmp:
        paths = []
        for sample in samples:
            path = Path(tmp) / sample.name
            path.write_bytes(sample.data)
            paths.append(path)
        ours, theirs, ours_seconds, theirs_seconds = timed(paths)
    truth = [(s.record_count, s.total_messages) for s in samples]
    ours_wrong = sum(1 for a, t in zip(ours, truth, strict=True) if a != t)
    ours_rate = reports / ours_seconds
    theirs_rate = reports / theirs_seconds
    return {
        "reports": reports,
        "records": sum(s.record_count for s in samples),
        "kibamail_reports_per_s": round(ours_rate, 1),
        "parsedmarc_reports_per_s": round(theirs_rate, 1),
        "ratio_vs_parsedmarc": round(ours_rate / theirs_rate, 2),
        "disagreements": sum(1 for a, b in zip(ours, theirs, strict=True) if a != b),
        "kibamail_wrong_vs_truth": ours_wrong,
        "parsedmarc_wrong_vs_truth": sum(1 for b, t in zip(theirs, truth, strict=True) if b != t),
        "complete": ours_wrong == 0,
    }


def real_world(rounds: int) -> dict[str, Any]:
    files = sorted(p for p in FIXTURES.iterdir() if p.is_file()) if FIXTURES.is_dir() else []
    if not files:
        return {"error": f"no fixtures in {FIXTURES}", "complete": False}
    paths = files * rounds
    ours, theirs, ours_seconds, theirs_seconds = timed(paths)
    per_file = {f.name: {"kibamail": ours[i], "parsedmarc": theirs[i]} for i, f in enumerate(files)}
    pairs = enumerate(zip(ours, theirs, strict=True))
    disagreements = sorted({files[i % len(files)].name for i, (a, b) in pairs if a != b})
    ours_rate = len(paths) / ours_seconds
    theirs_rate = len(paths) / theirs_seconds
    return {
        "source": str(FIXTURES),
        "files": len(files),
        "parses": len(paths),
        "per_file_records_and_messages": per_file,
        "kibamail_files_per_s": round(ours_rate, 1),
        "parsedmarc_files_per_s": round(theirs_rate, 1),
        "ratio_vs_parsedmarc": round(ours_rate / theirs_rate, 2),
        "disagreeing_files": disagreements,
        "complete": not disagreements,
    }


def run(reports: int, seed: int, rounds: int) -> dict[str, Any]:
    meter = RunMeter()
    meter.add_self("bench_process (both parsers)")
    meter.start()
    gen = generated(reports, seed)
    real = real_world(rounds)
    report = meter.stop()
    result: dict[str, Any] = {
        "bench": "dmarc_parse",
        "mode": "warm caches, both parsers",
        "ratio_vs_parsedmarc_real_world": real.get("ratio_vs_parsedmarc"),
        "ratio_vs_parsedmarc_generated": gen["ratio_vs_parsedmarc"],
        "target_ratio": 5.0,
        "real_world": real,
        "generated": gen,
        **report,
    }
    return finish(
        result,
        gen["complete"] and real["complete"],
        {
            "real_world_ge_5x_parsedmarc": (real.get("ratio_vs_parsedmarc") or 0) >= 5.0,
            "generated_ge_5x_parsedmarc": gen["ratio_vs_parsedmarc"] >= 5.0,
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--fixture-rounds", type=int, default=250)
    args = parser.parse_args()
    print(orjson.dumps(run(args.reports, args.seed, args.fixture_rounds)).decode())


if __name__ == "__main__":
    main()
