"""Benchmark: `kibamail dmarc parse` (deliverability.parser) vs parsedmarc over generated reports.

Both parse the same files from disk (mixed sizes; plain XML, .xml.gz and .zip; a
fifth in the RFC 9990 schema). Prints one JSON line: both rates, the ratio
(target >= 5) and the reports where record counts or message totals disagree
with the generated truth or with each other (target 0).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import orjson

from deliverability.models import AggregateReport
from deliverability.parser import parse_file
from deliverability.samples import generate

CHUNK = 200


def _ours(paths: list[Path]) -> list[tuple[int, int] | None]:
    results: list[tuple[int, int] | None] = []
    for path in paths:
        outcome = parse_file(path)
        report = outcome.reports[0] if outcome.ok else None
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


def run(reports: int, seed: int) -> dict[str, object]:
    samples = generate(reports, seed=seed)
    with tempfile.TemporaryDirectory(prefix="bench-dmarc-") as tmp:
        paths = []
        for sample in samples:
            path = Path(tmp) / sample.name
            path.write_bytes(sample.data)
            paths.append(path)
        # Interleave the two parsers chunk by chunk so load from other processes on a
        # shared machine hits both alike and the ratio stays meaningful.
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
    truth = [(s.record_count, s.total_messages) for s in samples]
    disagreements = sum(1 for a, b in zip(ours, theirs, strict=True) if a != b)
    ours_wrong = sum(1 for a, t in zip(ours, truth, strict=True) if a != t)
    theirs_wrong = sum(1 for b, t in zip(theirs, truth, strict=True) if b != t)
    ours_rate = reports / ours_seconds
    theirs_rate = reports / theirs_seconds
    return {
        "bench": "dmarc_parse",
        "reports": reports,
        "records": sum(s.record_count for s in samples),
        "kibamail_reports_per_s": round(ours_rate, 1),
        "parsedmarc_reports_per_s": round(theirs_rate, 1),
        "ratio_vs_parsedmarc": round(ours_rate / theirs_rate, 2),
        "target_ratio": 5.0,
        "disagreements": disagreements,
        "kibamail_wrong_vs_truth": ours_wrong,
        "parsedmarc_wrong_vs_truth": theirs_wrong,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(orjson.dumps(run(args.reports, args.seed)).decode())


if __name__ == "__main__":
    main()
