"""Benchmark: `kibamail bounces parse` (parser + classifier) over the fixture corpus.

``python -m bench.bounces [--rounds N]`` pins itself to one core, parses and classifies
every labelled fixture in ``kibamail/bounces/tests/fixtures/*/`` N times, and, in the same
run and on the same messages, Mailman's flufl.bounce (``scan_message``) as the baseline.

Rates are per CPU-second of this process (wall time on a shared 2-core machine mostly
measures the neighbours); wall-clock rates are reported beside them. Accuracy against the
corpus labels, the issue's measures:

- recipients_found_pct: labelled bounce recipients the parser returns;
- suppress_agreement_pct: labelled recipients (and non-reports) whose suppress decision
  matches;
- soft_wrongly_suppressed_pct: labelled soft bounces (suppress false) that were suppressed;
- arf_recognized: complaint fixtures read as complaints, "n/N";
- kind_accuracy_pct: fixtures whose report kind matches.

Prints ONE JSON line. Target: >= 2,000 reports/s.
"""

from __future__ import annotations

import argparse
import email
import logging
import os
import resource
import time
from typing import Any

import orjson

from kibamail.bounces.model import Report
from kibamail.bounces.parse import parse_message
from kibamail.bounces.tests.corpus import Fixture, load_fixtures

TARGET_REPORTS_PER_S = 2000


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def _pin_one_core() -> int | None:
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {allowed[-1]})
    return allowed[-1]


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def accuracy(fixtures: list[Fixture], reports: list[Report]) -> dict[str, Any]:
    bounce_total = bounce_found = 0
    decisions = agree = 0
    soft_total = soft_suppressed = 0
    arf_total = arf_found = 0
    kinds_right = 0
    for fixture, report in zip(fixtures, reports, strict=True):
        label = fixture.label
        got = {f.recipient.lower(): f for f in report.findings}
        if report.kind.value == label.get("kind"):
            kinds_right += 1
        if label.get("kind") == "complaint":
            arf_total += 1
            arf_found += report.kind.value == "complaint"
        if not label.get("recipients"):
            decisions += 1
            agree += not any(f.suppress for f in report.findings)
        for want in label.get("recipients", []):
            finding = got.get(want["recipient"].lower())
            suppress = bool(finding and finding.suppress)
            decisions += 1
            agree += suppress == want["suppress"]
            if want.get("kind") == "bounce":
                bounce_total += 1
                bounce_found += finding is not None
                if not want["suppress"]:
                    soft_total += 1
                    soft_suppressed += suppress
    return {
        "recipients_found_pct": _pct(bounce_found, bounce_total),
        "suppress_agreement_pct": _pct(agree, decisions),
        "soft_wrongly_suppressed_pct": _pct(soft_suppressed, soft_total),
        "arf_recognized": f"{arf_found}/{arf_total}",
        "kind_accuracy_pct": _pct(kinds_right, len(fixtures)),
    }


def _flufl(data: list[bytes]) -> list[frozenset[bytes]]:
    from flufl.bounce import scan_message

    # Its detectors log a traceback for every message they choke on; the count is ours.
    logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)

    out = []
    for raw in data:
        try:
            out.append(scan_message(email.message_from_bytes(raw)))
        except Exception:  # the baseline may choke on odd input; count it as nothing found
            out.append(frozenset())
    return out


def _flufl_found_pct(fixtures: list[Fixture], found: list[frozenset[bytes]]) -> float | None:
    total = hits = 0
    for fixture, addresses in zip(fixtures, found, strict=True):
        lowered = {a.decode("utf-8", "replace").lower() for a in addresses}
        for want in fixture.label.get("recipients", []):
            if want.get("kind") == "bounce":
                total += 1
                hits += want["recipient"].lower() in lowered
    return _pct(hits, total)


def run(rounds: int) -> dict[str, Any]:
    core = _pin_one_core()
    fixtures = [f for f in load_fixtures() if f.label]
    data = [f.data for f in fixtures]
    reports = [parse_message(raw) for raw in data]  # warm-up and the accuracy pass
    ours_cpu = ours_wall = theirs_cpu = theirs_wall = 0.0
    theirs: list[frozenset[bytes]] = []
    for _ in range(rounds):
        # Interleaved so load from neighbours hits both parsers alike.
        cpu, wall = _cpu(), time.perf_counter()
        for raw in data:
            parse_message(raw)
        ours_cpu += _cpu() - cpu
        ours_wall += time.perf_counter() - wall
        cpu, wall = _cpu(), time.perf_counter()
        theirs = _flufl(data)
        theirs_cpu += _cpu() - cpu
        theirs_wall += time.perf_counter() - wall
    done = len(data) * rounds
    ours_rate = done / ours_cpu if ours_cpu else 0.0
    theirs_rate = done / theirs_cpu if theirs_cpu else 0.0
    return {
        "bench": "bounces_parse",
        "complete": len(reports) == len(fixtures) and rounds > 0,
        "fixtures": len(fixtures),
        "rounds": rounds,
        "reports": done,
        "core": core,
        "reports_per_s": round(ours_rate, 1),
        "wall_reports_per_s": round(done / ours_wall, 1) if ours_wall else 0.0,
        "target_reports_per_s": TARGET_REPORTS_PER_S,
        "cpu_s": round(ours_cpu, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "accuracy": accuracy(fixtures, reports),
        "flufl_bounce_reports_per_s": round(theirs_rate, 1),
        "flufl_bounce_recipients_found_pct": _flufl_found_pct(fixtures, theirs),
        "ratio_vs_flufl_bounce": round(ours_rate / theirs_rate, 2) if theirs_rate else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    print(orjson.dumps(run(args.rounds)).decode())


if __name__ == "__main__":
    main()
