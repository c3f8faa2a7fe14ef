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


def _run(args: list[str], env: dict[str, str], *, tty: bool) -> str:
    """``postroom ARGS`` with stdout on a pseudo-terminal (tty) or a pipe; its stdout."""
    if not tty:
        done = subprocess.run(
            [EXE, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        return done.stdout
    import pty
    import select

    master, slave = pty.openpty()
    proc = subprocess.Popen([EXE, *args], env=env, stdout=slave, stderr=subprocess.DEVNULL)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        proc.wait(timeout=30)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out.decode()


def test_send_wait_and_worker_drain_show_progress_only_on_a_terminal(tmp_path: Path) -> None:
    env = {**os.environ, "POSTROOM_DATA_DIR": str(tmp_path / "data")}
    with fake_smtp(trustme.CA(), starttls=False) as srv:
        added = subprocess.run(
            [EXE, "profile", "add", "Local", "--smtp-host", "127.0.0.1",
             "--smtp-port", str(srv.port), "--security", "none", "--auth", "none",
             "--from-address", "reports@example.com"],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        send = ["send", "--profile", "Local", "--to", "ops@example.com", "--subject", "s"]
        send += ["--text", "t", "--wait"]

        on_tty = _run(send, env, tty=True)
        assert "delivering: 1 sent, 0 to retry, 0 failed" in on_tty, on_tty
        assert ": sent" in on_tty

        piped = _run(send, env, tty=False)
        assert "delivering" not in piped and ": sent" in piped, piped

        as_json = _run([*send, "--json"], env, tty=True)
        assert "delivering" not in as_json, as_json
        assert json.loads(as_json)["status"] == "sent"

        queued = _run(send[:-1], env, tty=False)  # without --wait: queued for the worker
        assert "Queued message" in queued, queued
        drained = _run(["worker", "--drain"], env, tty=True)
        assert "delivering: 1 sent" in drained, drained
        assert "delivering" not in _run(["worker", "--drain"], env, tty=False)
    assert len(srv.recorded.messages) == 4
