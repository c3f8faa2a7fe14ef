"""`postroom serve` as a user starts it (the README's first command): the web server,
an in-process delivery worker (on uvloop) and a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from postroom import Postroom
from postroom.settings import Settings
from tests.integration.smtp_fakes import free_port, raw_sink
from tests.integration.test_outbox import msg, sink_profile

EXE = str(Path(sys.executable).parent / "postroom")


def test_serve_answers_delivers_and_stops_cleanly(tmp_path: Path) -> None:
    data, port = tmp_path / "data", free_port()
    env = {**os.environ, "POSTROOM_DATA_DIR": str(data)}
    proc = subprocess.Popen(
        [EXE, "serve", "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert f"http://127.0.0.1:{port}/" in first, first
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve did not become ready"
            time.sleep(0.1)
        app = Postroom.open(settings=Settings(data_dir=data))
        try:
            with raw_sink(pipelining=True) as sink:
                sink_profile(app, sink.port)
                id = app.send(msg(subject="via serve"), profile="sink")
                while app.outbox.get(id).status != "sent":
                    assert time.monotonic() < deadline + 20, app.outbox.get(id)
                    time.sleep(0.05)
            assert b"Subject: via serve" in sink.data[0]
        finally:
            app.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        rest = proc.stderr.read()
        assert "Traceback" not in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_serve_on_a_busy_port_says_what_to_do_and_prints_no_url(tmp_path: Path) -> None:
    import socket

    env = {**os.environ, "POSTROOM_DATA_DIR": str(tmp_path / "data")}
    env.pop("POSTROOM_PORT", None)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [EXE, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert f"127.0.0.1:{port}" in result.stderr and "already in use" in result.stderr, out
    assert "--port" in result.stderr and "POSTROOM_PORT" in result.stderr, out
    assert "running at" not in out and "http://" not in out, out
    assert "setup" not in out.lower(), out  # no setup link for the server that holds the port
    assert "Traceback" not in out
