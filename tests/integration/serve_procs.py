"""Start real `postroom serve` processes for tests, and speak to them like a browser."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from postroom import Postroom
from tests.integration.smtp_fakes import free_port

EXE = str(Path(sys.executable).parent / "postroom")


def env_for(app: Postroom, **extra: str) -> dict[str, str]:
    """The environment of a `serve` on ``app``'s database and keys."""
    env = {**os.environ, "POSTROOM_DATA_DIR": str(app.settings.data_dir)}
    if app.settings.database_url:
        env["POSTROOM_DATABASE_URL"] = app.settings.database_url
    env.pop("POSTROOM_TRUSTED_PROXIES", None)
    return {**env, **extra}


def _wait_ready(proc: subprocess.Popen[str], base: str, deadline: float) -> None:
    while True:
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
            raise AssertionError(f"serve did not become ready: {err[-2000:]}")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    if proc.stderr:
        proc.stderr.close()


@contextmanager
def serving(*envs: dict[str, str], ready_s: float = 120) -> Iterator[list[str]]:
    """One `postroom serve` per environment, started together on free loopback ports;
    yields their base URLs and stops them (SIGTERM) afterwards."""
    procs: list[tuple[subprocess.Popen[str], str]] = []
    try:
        for env in envs:
            port = free_port()
            proc = subprocess.Popen(
                [EXE, "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            procs.append((proc, f"http://127.0.0.1:{port}"))
        deadline = time.monotonic() + ready_s
        for proc, base in procs:
            _wait_ready(proc, base, deadline)
        yield [base for _, base in procs]
    finally:
        for proc, _ in procs:
            _stop(proc)


def csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def sign_in(
    client: httpx.Client, username: str, password: str, headers: dict[str, str] | None = None
) -> int:
    """POST the sign-in form as a browser does; the status (303 signed in)."""
    token = csrf(client.get("/login", headers=headers).text)
    response = client.post(
        "/login",
        data={"csrf_token": token, "username": username, "password": password},
        headers=headers,
    )
    return response.status_code
