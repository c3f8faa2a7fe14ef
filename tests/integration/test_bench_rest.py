"""The REST benchmark runs and reports what issue 20 asks of it (shape and consistency,
never a speed: speed is the benchmark's own business, not a timed test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_bench import require_postfix_tools

BENCH = Path(__file__).resolve().parents[2] / "bench" / "rest.py"
PHASES = (
    "python_send", "python_send_many", "rest_single_1", "rest_single_16", "rest_single_64",
    "rest_batch_100", "get_message", "healthz", "soak_64",
)  # fmt: skip


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_rest_benchmark_reports_every_phase_and_loses_nothing(
    backend: str, request: pytest.FixtureRequest
) -> None:
    require_postfix_tools()
    if backend == "postgresql":
        request.getfixturevalue("pg_schema_url")  # PostgreSQL must be there (or CI fails)
    done = subprocess.run(
        [sys.executable, str(BENCH), "--backend", backend, "--quick", "--soak", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert f"bench: {backend}: REST single messages, 16 clients" in done.stderr
    report = json.loads(done.stdout)[backend]
    for phase in PHASES:
        m = report[phase]
        assert m["msgs_per_s"] > 0, phase
        assert 0 < m["p50_ms"] <= m["p99_ms"] <= m["max_ms"], phase
    for phase in PHASES[2:]:
        codes = report[phase]["status_codes"]
        assert not [c for c in codes if c.startswith("5") or c in ("timeout", "error")], codes
    check = report["check"]
    assert check["accepted"] > 0
    assert check["missing"] == check["duplicate_ids"] == check["not_sent"] == 0
    assert check["by_status"] == {"sent": check["rows"]}
    assert report["soak_64"]["worker_msgs_per_s"] > 0
    ratio = report["rest_single_1"]["p50_ms"] / report["python_send"]["p50_ms"]
    assert abs(report["ratio_rest_single_p50_vs_send"] - ratio) < 1e-9


def test_rest_benchmark_refuses_a_bad_option_clearly() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--runs", "0"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "--runs" in done.stderr and "Traceback" not in done.stderr
