"""Benchmark: offline email validation (syntax + disposable + role + typo suggestion).

Prints one JSON line: addresses/s (target >= 5,000) and, measured in the same run over
the same addresses, ``email_validator.validate_email`` (syntax only) as the baseline our
extra checks are compared with, twice: as shipped, and given the SAME cache ours has (the
domain step memoised per domain, errors included), so the ratio is not a cache's. Every
timed pass starts with empty caches. Two inputs: the generated mix, and the addresses of
the real-world report emails in ``../shared/fixtures/dmarc`` (read in place; the shared
fixtures hold no larger address corpus), repeated.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import random
import re
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import email_validator
import orjson

from bench.dmarc import FIXTURES
from bench.report import RunMeter, finish
from deliverability import validation
from deliverability.validation import check_syntax_and_lists

_ADDRESS = re.compile(rb"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


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


def real_world(repeat: int) -> list[str]:
    """Every address in the shared fixtures (headers, bodies, report XML), repeated."""
    found: list[str] = []
    if FIXTURES.is_dir():
        for path in sorted(FIXTURES.iterdir()):
            found.extend(m.decode() for m in _ADDRESS.findall(path.read_bytes()))
    return sorted(set(found)) * repeat


def _clear_caches() -> None:
    validation.suggest_domain.cache_clear()
    validation._domain_syntax.cache_clear()


@contextlib.contextmanager
def same_cache() -> Iterator[None]:
    """email_validator's domain step memoised per domain, as ours (``_domain_syntax``)."""
    module = sys.modules["email_validator.validate_email"]
    original = module.validate_email_domain_name

    @functools.lru_cache(maxsize=65536)
    def cached(domain: str, **kwargs: Any) -> Any:
        try:
            return original(domain, **kwargs)
        except email_validator.EmailSyntaxError as exc:
            return exc

    def lookup(domain: str, **kwargs: Any) -> Any:
        answer = cached(domain, **kwargs)
        if isinstance(answer, Exception):
            raise answer
        return answer

    setattr(module, "validate_email_domain_name", lookup)  # noqa: B010 - untyped re-export
    try:
        yield
    finally:
        setattr(module, "validate_email_domain_name", original)  # noqa: B010


def _rate(func: Callable[[str], object], items: list[str]) -> float:
    _clear_caches()
    started = time.perf_counter()
    for item in items:
        func(item)
    return len(items) / (time.perf_counter() - started)


def _syntax_only(address: str) -> None:
    with contextlib.suppress(email_validator.EmailNotValidError):
        email_validator.validate_email(address, check_deliverability=False)


def measure(items: list[str]) -> dict[str, Any]:
    ours = _rate(check_syntax_and_lists, items)
    baseline = _rate(_syntax_only, items)
    with same_cache():
        cached = _rate(_syntax_only, items)
    verdicts: dict[str, int] = {}
    for item in items:
        verdict = check_syntax_and_lists(item).result
        verdicts[verdict] = verdicts.get(verdict, 0) + 1
    return {
        "addresses": len(items),
        "distinct": len(set(items)),
        "addresses_per_s": round(ours, 1),
        "email_validator_syntax_only_per_s": round(baseline, 1),
        "email_validator_same_cache_per_s": round(cached, 1),
        "ratio_vs_syntax_only": round(ours / baseline, 2),
        "ratio_vs_syntax_only_same_cache": round(ours / cached, 2),
        "verdicts": verdicts,
    }


def run(count: int, repeat: int) -> dict[str, Any]:
    meter = RunMeter()
    meter.add_self("bench_process")
    meter.start()
    generated = measure(addresses(count))
    real = real_world(repeat)
    real_figures = measure(real) if real else {"error": f"no addresses in {FIXTURES}"}
    report = meter.stop()
    result: dict[str, Any] = {
        "bench": "validation_offline",
        "mode": "offline checks; baselines cold and with our cache",
        "addresses_per_s": generated["addresses_per_s"],
        "target_per_s": 5000,
        "generated": generated,
        "real_world_fixture_addresses": real_figures,
        **report,
    }
    slowest = min(generated["addresses_per_s"], real_figures.get("addresses_per_s", 0.0))
    return finish(result, bool(real), {"ge_5000_per_s": slowest >= 5000})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--addresses", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=2000, help="of the fixture addresses")
    args = parser.parse_args()
    print(orjson.dumps(run(args.addresses, args.repeat)).decode())


if __name__ == "__main__":
    main()
