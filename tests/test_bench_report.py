"""The benchmarks' honesty rules: an incomplete run meets no target, every JSON line
carries CPU, RSS and load average, and the test internet's mix is decided by recipient."""

from __future__ import annotations

import os

import pytest

from bench.mta_e2e import expected_status
from bench.report import RunMeter, finish
from testing.testnet.sink import SinkConfig, SinkHandler, recipient_draw

pytestmark = pytest.mark.unit


def test_incomplete_run_meets_no_target() -> None:
    result = finish({"rate": 10}, complete=False, targets={"rate": True, "p99": True})
    assert result["complete"] is False
    assert result["targets_met"] == {"rate": False, "p99": False}


def test_complete_run_reports_each_target_as_measured() -> None:
    result = finish({}, complete=True, targets={"rate": True, "p99": False})
    assert result["targets_met"] == {"rate": True, "p99": False}
    assert "machine_loaded" in result


def test_meter_reports_cpu_rss_and_load_of_each_process() -> None:
    meter = RunMeter(interval=0.01)
    meter.add_self("bench")
    meter.start()
    sum(i * i for i in range(200_000))
    report = meter.stop()
    assert set(report) == {"cpu_seconds", "peak_rss_mb", "load_average"}
    assert set(report["cpu_seconds"]) == {"bench", "total"}
    assert report["peak_rss_mb"]["bench"] > 0
    assert set(report["load_average"]) == {"min_1m", "mean_1m", "max_1m", "end_1_5_15"}
    assert meter.cpu_ms_per(0) == {}
    assert set(meter.cpu_ms_per(10)) == {"bench", "total"}
    assert os.getpid() == meter.pids["bench"][0]


def test_recipient_mix_is_stable_and_near_the_shares() -> None:
    rcpts = [f"user{i}@example{i % 20}.org" for i in range(20_000)]
    outcomes = [expected_status(r, 0.03, 0.02) for r in rcpts]
    assert outcomes == [expected_status(r, 0.03, 0.02) for r in rcpts]
    assert 0.02 < outcomes.count("deferred") / len(rcpts) < 0.04
    assert 0.01 < outcomes.count("bounced") / len(rcpts) < 0.03
    assert recipient_draw("A@Example.org") == recipient_draw("a@example.org")


async def test_sink_by_recipient_answers_what_expected_status_says() -> None:
    from aiosmtpd.smtp import Envelope, Session

    handler = SinkHandler(SinkConfig(defer_share=0.03, bounce_share=0.02, by_recipient=True))
    for i in range(400):
        rcpt = f"user{i}@example{i % 20}.org"
        envelope = Envelope()
        envelope.rcpt_tos = [rcpt]
        envelope.original_content = f"Message-ID: <m{i}@x>\r\n\r\nhi\r\n".encode()
        first = await handler.handle_DATA(None, Session(None), envelope)  # type: ignore[arg-type]
        again = await handler.handle_DATA(None, Session(None), envelope)  # type: ignore[arg-type]
        assert first[:3] == again[:3]
        code = int(first[:3])
        want = expected_status(rcpt, 0.03, 0.02)
        assert {"delivered": 250 <= code < 300, "deferred": 400 <= code < 500,
                "bounced": code >= 500}[want]  # fmt: skip


def test_validation_line_has_the_honest_structure() -> None:
    from bench.validation import run

    result = run(300, 2)
    assert result["complete"] is True
    for key in ("cpu_seconds", "peak_rss_mb", "load_average", "targets_met", "mode"):
        assert key in result
    for figures in (result["generated"], result["real_world_fixture_addresses"]):
        assert {"email_validator_syntax_only_per_s", "email_validator_same_cache_per_s"} <= set(
            figures
        )


def test_dmarc_line_compares_on_the_shared_fixtures() -> None:
    from bench.dmarc import FIXTURES, run

    if not FIXTURES.is_dir():
        pytest.skip(f"no shared fixtures at {FIXTURES}")
    result = run(20, 7, 1)
    real = result["real_world"]
    assert real["files"] == len([p for p in FIXTURES.iterdir() if p.is_file()])
    assert real["disagreeing_files"] == [] and result["complete"] is True
    assert set(result["targets_met"]) == {
        "real_world_ge_5x_parsedmarc",
        "generated_ge_5x_parsedmarc",
    }
