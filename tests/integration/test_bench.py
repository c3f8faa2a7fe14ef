"""The outbound benchmark still runs and reports what the speed issue asks of it.

A smoke run with a few hundred messages: it checks the report's shape and consistency,
never a speed (speed is the benchmark's own business, not a timed test).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_service

BENCH = Path(__file__).resolve().parents[2] / "bench" / "outbound.py"


def require_postfix_tools() -> None:
    for tool in ("smtp-sink", "smtp-source"):
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
            require_service(tool, "install Debian's postfix package")


def test_outbound_benchmark_reports_every_measure_side_by_side() -> None:
    require_postfix_tools()
    done = subprocess.run(
        [sys.executable, str(BENCH), "--messages", "300", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "bench: postroom, 300 messages" in done.stderr  # progress goes to stderr
    report = json.loads(done.stdout)  # stdout is the JSON object alone
    assert report["messages"] == 300
    baselines = report["baselines"]
    assert set(baselines) == {
        "smtplib_new_connection",
        "smtplib_reused_connection",
        "smtp_source",
    }
    for key in ("postroom_msgs_per_s", "send_many_msgs_per_s", "worker_peak_rss_mb"):
        assert report[key] > 0, key
    assert 0 < report["send_p50_ms"] <= report["send_p99_ms"]
    rate = report["postroom_msgs_per_s"]
    for name, ratio_key in (
        ("smtplib_new_connection", "ratio_vs_smtplib_new_connection"),
        ("smtplib_reused_connection", "ratio_vs_smtplib_reused_connection"),
        ("smtp_source", "ratio_vs_smtp_source"),
    ):
        assert baselines[name] > 0, name
        assert abs(report[ratio_key] - rate / baselines[name]) < 1e-9, ratio_key


@pytest.mark.parametrize(
    ("option", "bad"),
    [
        ("--messages", "5"),
        ("--messages", "abc"),
        ("--runs", "0"),
        ("--runs", "21"),
        ("--runs", "x"),
    ],
)
def test_outbound_benchmark_refuses_a_bad_option_clearly(option: str, bad: str) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), option, bad], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert option in done.stderr and "Traceback" not in done.stderr


def test_outbound_benchmark_repeats_runs_and_reports_medians() -> None:
    """With --runs, each run is reported whole and the summary is the median of each
    measure, every ratio taken within its own run."""
    import statistics

    require_postfix_tools()
    done = subprocess.run(
        [sys.executable, str(BENCH), "--messages", "100", "--runs", "3", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "bench: run 3 of 3" in done.stderr
    report = json.loads(done.stdout)
    runs = report["runs"]
    assert len(runs) == 3
    for run in runs:
        rate, baseline = run["postroom_msgs_per_s"], run["baselines"]["smtp_source"]
        assert abs(run["ratio_vs_smtp_source"] - rate / baseline) < 1e-9
    for key in ("postroom_msgs_per_s", "send_p99_ms", "ratio_vs_smtp_source"):
        assert report[key] == statistics.median(r[key] for r in runs), key
    assert report["baselines"]["smtp_source"] == statistics.median(
        r["baselines"]["smtp_source"] for r in runs
    )
    assert report["worker_peak_rss_mb"] == max(r["worker_peak_rss_mb"] for r in runs)


INBOUND = BENCH.parent / "inbound.py"


@pytest.mark.mailservers
def test_inbound_benchmark_reports_each_phase_beside_the_bare_fetch() -> None:
    """Quick mode: a few messages through a private Dovecot, every phase on SQLite and
    PostgreSQL; checks the report's shape and that each message was stored once."""
    from tests.harness.mailservers import HarnessUnavailable, check_available

    try:
        check_available()
    except HarnessUnavailable as exc:
        require_service("the mail server harness (Postfix + Dovecot)", exc.reason)
    done = subprocess.run(
        [sys.executable, str(INBOUND), "--messages", "12", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "bench: filling INBOX with 12 messages" in done.stderr  # progress on stderr
    report = json.loads(done.stdout)
    assert report["messages"] == 12
    bare = report["bare_imaplib_fetch_msgs_per_s"]
    assert bare > 0
    phases = report["postroom"]
    assert set(phases) == {
        f"{db}_{sub}" for db in ("sqlite", "postgresql") for sub in ("no_subscriber", "webhook")
    }
    for key, phase in phases.items():
        assert phase["stored"] == 12 and phase["stored_exactly_once"], key
        assert phase["msgs_per_s"] > 0 and phase["peak_rss_mb"] > 0, key
        assert abs(phase["ratio_vs_bare_fetch"] - phase["msgs_per_s"] / bare) < 1e-9, key
        expected_posts = 12 if key.endswith("webhook") else None
        assert phase["webhook_posts"] == expected_posts, key


@pytest.mark.parametrize("bad", ["9", "abc", "100001"])
def test_inbound_benchmark_refuses_a_bad_option_clearly(bad: str) -> None:
    done = subprocess.run(
        [sys.executable, str(INBOUND), "--messages", bad],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "--messages" in done.stderr and "Traceback" not in done.stderr
