"""Benchmark: offline email validation (syntax + disposable + role + typo suggestion).

Prints one JSON line: addresses/s (target >= 5,000) and, measured in the same run
over the same addresses, the rate of bare ``email_validator.validate_email``
(syntax only) as the baseline our extra checks are compared with.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import time
from collections.abc import Callable

import email_validator
import orjson

from deliverability.validation import check_syntax_and_lists


def addresses(count: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    domains = ["gmail.com", "example.com", "mailinator.com", "gmial.com", "yaho.com",
               "bücher.example", "corp.example.org", "outlook.com"]  # fmt: skip
    locals_ = ["john.doe", "info", "support", "jane+news", "用户", "x", "first_last99"]
    bad = ["no-at-sign", "two@@example.com", "a@b", "trailing.@example.com", "@example.com"]
    out = []
    for _ in range(count):
        if rng.random() < 0.1:
            out.append(rng.choice(bad))
        else:
            out.append(f"{rng.choice(locals_)}{rng.randint(0, 999)}@{rng.choice(domains)}")
    return out


def _rate(func: Callable[[str], object], items: list[str]) -> float:
    started = time.perf_counter()
    for item in items:
        func(item)
    return len(items) / (time.perf_counter() - started)


def _syntax_only(address: str) -> None:
    with contextlib.suppress(email_validator.EmailNotValidError):
        email_validator.validate_email(address, check_deliverability=False)


def run(count: int) -> dict[str, object]:
    items = addresses(count)
    ours = _rate(check_syntax_and_lists, items)
    baseline = _rate(_syntax_only, items)
    verdicts: dict[str, int] = {}
    for item in items:
        verdict = check_syntax_and_lists(item).result
        verdicts[verdict] = verdicts.get(verdict, 0) + 1
    return {
        "bench": "validation_offline",
        "addresses": count,
        "addresses_per_s": round(ours, 1),
        "target_per_s": 5000,
        "ratio_to_target": round(ours / 5000, 2),
        "email_validator_syntax_only_per_s": round(baseline, 1),
        "ratio_vs_syntax_only": round(ours / baseline, 2),
        "verdicts": verdicts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--addresses", type=int, default=50_000)
    args = parser.parse_args()
    print(orjson.dumps(run(args.addresses)).decode())


if __name__ == "__main__":
    main()
