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

from tests.conftest import require_service

BENCH = Path(__file__).resolve().parents[2] / "bench" / "outbound.py"


def test_outbound_benchmark_reports_every_measure_side_by_side() -> None:
    for tool in ("smtp-sink", "smtp-source"):
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
            require_service(tool, "install Debian's postfix package")
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


def test_outbound_benchmark_refuses_a_bad_message_count_clearly() -> None:
    for bad in ("5", "abc"):
        done = subprocess.run(
            [sys.executable, str(BENCH), "--messages", bad],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert "--messages" in done.stderr and "Traceback" not in done.stderr
