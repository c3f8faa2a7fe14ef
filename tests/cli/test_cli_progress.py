"""Long-running commands show what they are doing while they do it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import trustme

from tests.integration.smtp_fakes import fake_smtp

EXE = str(Path(sys.executable).parent / "postroom")


def test_profile_test_prints_each_step_as_it_finishes(tmp_path: Path) -> None:
    # the server takes 10 s to answer DATA: the steps before it must be on screen meanwhile
    with fake_smtp(trustme.CA(), starttls=False, stall_s=10) as srv:
        settings = tmp_path / "p.json"
        settings.write_text(
            json.dumps(
                {
                    "name": "Reports",
                    "smtp": {"host": "127.0.0.1", "port": srv.port, "security": "none"},
                    "sender": {"from_address": "reports@example.com"},
                }
            )
        )
        env = {**os.environ, "POSTROOM_DATA_DIR": str(tmp_path / "data")}
        proc = subprocess.Popen(
            [EXE, "profile", "test", "-f", str(settings), "--send-to", "ops@example.com"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()  # blocks until the first step is printed
            shown_at = time.monotonic()
            rest, errors = proc.communicate(timeout=90)
            ended_at = time.monotonic()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert first.strip().startswith("ok"), (first, errors)
    # printed before the 10 s wait for DATA, not with everything else at the end
    assert ended_at - shown_at > 6, "the first step was printed only when the test had ended"
    lines = [first, *rest.splitlines(keepends=True)]
    steps = [line for line in lines if line.startswith("  ")]
    assert len(steps) >= 3 and all(s.split()[0] == "ok" for s in steps), lines
    assert len({s.split()[1] for s in steps}) == len(steps), "a step was printed twice"
    assert lines[-1].startswith("Passed"), lines
    assert proc.returncode == 0
