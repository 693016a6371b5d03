"""The labelled fixture corpus: load every ``fixtures/<family>/<name>.eml`` with its label,
and compare a parse with the label. Shared by test_corpus and ``bench.bounces``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kibamail.bounces.model import Report

FIXTURES = Path(__file__).parent / "fixtures"


@dataclass(frozen=True)
class Fixture:
    family: str
    name: str
    path: Path
    data: bytes
    label: dict[str, Any]


def load_fixtures(root: Path = FIXTURES) -> list[Fixture]:
    found = []
    for eml in sorted(root.glob("*/*.eml")):
        label_path = eml.with_suffix(".expected.json")
        label = json.loads(label_path.read_text()) if label_path.exists() else {}
        found.append(Fixture(eml.parent.name, eml.stem, eml, eml.read_bytes(), label))
    return found


def mismatches(fixture: Fixture, report: Report) -> list[str]:
    """Every way ``report`` differs from the label ("" status in a label means "any")."""
    where = f"{fixture.family}/{fixture.name}"
    label = fixture.label
    if not label:
        return [f"{where}: no .expected.json"]
    out = []
    if report.kind.value != label["kind"]:
        out.append(f"{where}: kind {report.kind.value!r}, expected {label['kind']!r}")
    got = {f.recipient.lower(): f for f in report.findings}
    want = {r["recipient"].lower(): r for r in label.get("recipients", [])}
    if set(got) != set(want) and (want or any(got)):
        out.append(f"{where}: recipients {sorted(got)}, expected {sorted(want)}")
    for address, expected in want.items():
        finding = got.get(address)
        if finding is None:
            continue
        for key, value in (
            ("kind", finding.kind.value),
            ("reason", finding.reason.value),
            ("suppress", finding.suppress),
            ("status", finding.status),
        ):
            if key == "status" and not expected.get("status"):
                continue
            if key in expected and value != expected[key]:
                out.append(f"{where} {address}: {key} {value!r}, expected {expected[key]!r}")
    return out
