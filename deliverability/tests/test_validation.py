"""Email validation offline: syntax (same rules as email-validator), lists, typos."""

from __future__ import annotations

from pathlib import Path

import email_validator
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deliverability.validation import (
    DisposableDomains,
    check_syntax_and_lists,
    parse_syntax,
    suggest_domain,
)

pytestmark = pytest.mark.unit


def _reference(address: str) -> str | None:
    try:
        return email_validator.validate_email(address, check_deliverability=False).normalized
    except email_validator.EmailNotValidError:
        return None


def _ours(address: str) -> str | None:
    try:
        return parse_syntax(address).normalized
    except email_validator.EmailNotValidError:
        return None


SYNTAX_CASES = [
    "john.doe@example.com", "Name <a@b.com>", '"quoted"@example.com', "a@[192.0.2.1]",
    "a..b@example.com", ".a@example.com", "a.@example.com", "a@-example.com", "a@example",
    "a" * 65 + "@example.com", "ok@" + "a" * 64 + ".com", "用户@例子.广告",
    "Ünïcode@bücher.example",
    "POSTMASTER@Example.com", "a@b@c.com", "", "@example.com", "user@", "us er@example.com",
    "user+tag@sub.example.co.uk", "x@xn--bcher-kva.example", "a@exa_mple.com",
]  # fmt: skip


@pytest.mark.parametrize("address", SYNTAX_CASES)
def test_syntax_matches_email_validator(address: str) -> None:
    assert _ours(address) == _reference(address)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='ab.@+-_"<> ü用[]', max_size=24))
def test_syntax_matches_email_validator_on_random_text(address: str) -> None:
    assert _ours(address) == _reference(address)


def test_offline_verdicts_and_reasons() -> None:
    role = check_syntax_and_lists("Support@example.com")
    assert role.result == "risky" and role.checks["role"]
    assert "role account" in role.reasons[0]
    disposable = check_syntax_and_lists("someone@mailinator.com")
    assert disposable.result == "risky" and disposable.checks["disposable"]
    sub = check_syntax_and_lists("someone@eu.mailinator.com")
    assert sub.checks["disposable"]
    bad = check_syntax_and_lists("no-at-sign")
    assert bad.result == "invalid" and bad.reasons[0].startswith("syntax:")
    idn = check_syntax_and_lists("用户@例子.广告")
    assert idn.result == "valid" and idn.checks["smtputf8"]
    plain = check_syntax_and_lists("jane@example.com")
    assert (plain.result, plain.reasons, plain.suggestion) == ("valid", [], None)


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("gmial.com", "gmail.com"),
        ("gmail.con", "gmail.com"),
        ("hotmial.com", "hotmail.com"),
        ("yahooo.com", "yahoo.com"),
        ("outlok.com", "outlook.com"),
        ("gmail.com", None),
        ("example.com", None),
    ],
)
def test_typo_suggestions(domain: str, expected: str | None) -> None:
    assert suggest_domain(domain) == expected


def test_typo_suggestion_on_address() -> None:
    result = check_syntax_and_lists("john@gmial.com")
    assert result.suggestion == "john@gmail.com"
    assert any("did you mean john@gmail.com" in r for r in result.reasons)


def test_disposable_list_refresh_picks_up_operator_file(tmp_path: Path) -> None:
    extra = tmp_path / "extra.txt"
    domains = DisposableDomains(extra)
    assert "fresh-throwaway.example" not in domains
    extra.write_text("# added by ops\nfresh-throwaway.example\n")
    assert domains.refresh() > 1000
    assert "fresh-throwaway.example" in domains
    assert "mailinator.com" in domains


def test_a_running_process_picks_up_list_changes_by_itself(tmp_path: Path) -> None:
    import os

    extra = tmp_path / "extra.txt"
    extra.write_text("old-throwaway.example\n")
    domains = DisposableDomains(extra, check_every=0.0)
    assert "old-throwaway.example" in domains
    assert domains.refresh_if_changed() is False
    extra.write_text("new-throwaway.example\n")
    os.utime(extra, ns=(1, 1))  # a different mtime even on coarse-grained filesystems
    assert "new-throwaway.example" in domains  # no explicit refresh() call
    assert "old-throwaway.example" not in domains
