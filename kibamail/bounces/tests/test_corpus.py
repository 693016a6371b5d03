"""Every labelled fixture, every family, through ``parse_message``: all mismatches at once."""

from __future__ import annotations

from collections import Counter

import pytest

from kibamail.bounces.parse import parse_message

from .corpus import load_fixtures, mismatches

pytestmark = pytest.mark.unit

CORE_FAMILIES = ("rfc3464", "notices", "arf", "autoreply", "none", "forwarded")


def test_every_fixture_parses_as_labelled() -> None:
    fixtures = load_fixtures()
    problems: list[str] = []
    for fixture in fixtures:
        problems.extend(mismatches(fixture, parse_message(fixture.data)))
    assert not problems, f"{len(problems)} mismatches:\n" + "\n".join(problems)


def test_core_families_cover_every_kind_with_at_least_100_fixtures() -> None:
    fixtures = load_fixtures()
    per_family = Counter(f.family for f in fixtures)
    assert sum(per_family[f] for f in CORE_FAMILIES) >= 100, per_family
    kinds = {f.label["kind"] for f in fixtures if f.family in CORE_FAMILIES}
    assert kinds >= {"bounce", "complaint", "auto_reply", "delivered", "delayed", "none"}


def test_every_fixture_has_a_label() -> None:
    unlabelled = [f"{f.family}/{f.name}" for f in load_fixtures() if not f.label]
    assert not unlabelled
