"""`postroom oauth2 connect` (loopback redirect, pasted redirect, device code) and `status`,
as separate processes against the local authorization server."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from postroom import Postroom
from tests.harness.oauth2_helpers import add_config, browser, knobs
from tests.harness.oauth2server import LocalAuthServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(oauth2_server: LocalAuthServer) -> Iterator[LocalAuthServer]:
    with knobs(oauth2_server):
        yield oauth2_server


@pytest.fixture
def pr(app_factory: Callable[..., Postroom]) -> Postroom:
    return app_factory("sqlite")


class Cli:
    """A running `postroom …` whose output lines can be awaited."""

    def __init__(self, app: Postroom, *args: str) -> None:
        env = {**os.environ, "POSTROOM_DATA_DIR": str(app.settings.data_dir),
               "PYTHONPATH": str(ROOT)}  # fmt: skip
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from postroom.cli import main; main()", *args],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self.errors: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines.put)),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.errors.append)),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str], put: Callable[[str], None]) -> None:
        for line in stream:
            put(line)

    def line_with(self, text: str, timeout: float = 30) -> str:
        while True:
            line = self.lines.get(timeout=timeout)
            if text in line:
                return line.strip()

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=5)
        err = "".join(self.errors)
        rest = []
        while not self.lines.empty():
            rest.append(self.lines.get())
        return self.proc.returncode, "".join(rest), err


def test_connect_receives_the_redirect_on_a_loopback_port(
    pr: Postroom, server: LocalAuthServer
) -> None:
    add_config(pr, server)
    cli = Cli(pr, "oauth2", "connect", "local")
    url = cli.line_with("/authorize?")
    assert "redirect_uri=http%3A%2F%2Flocalhost%3A" in url
    location = browser(url)  # the provider sends the browser to the local port
    page = httpx.get(location.replace("localhost", "127.0.0.1"))
    assert page.status_code == 200 and "Signed in" in page.text
    code, out, err = cli.finish()
    assert code == 0, err
    assert "Connected OAuth2 configuration 'local' as alice@postroom.test." in out


def test_connect_accepts_a_pasted_redirect_url(pr: Postroom, server: LocalAuthServer) -> None:
    add_config(pr, server)
    cli = Cli(pr, "oauth2", "connect", "local", "--paste")
    location = browser(cli.line_with("/authorize?"))
    assert cli.proc.stdin is not None
    cli.proc.stdin.write(location + "\n")
    cli.proc.stdin.flush()
    code, out, err = cli.finish()
    assert code == 0, err
    assert "as alice@postroom.test" in out


def test_connect_with_a_device_code(pr: Postroom, server: LocalAuthServer) -> None:
    add_config(pr, server, grant="device_code")
    cli = Cli(pr, "oauth2", "connect", "local")
    cli.line_with("and enter the code")
    user_code = ""
    while not user_code:
        user_code = cli.line_with("", timeout=10)
    server.approve_device(user_code)
    code, out, err = cli.finish()
    assert code == 0, err
    assert "Connected" in out


def test_status_json_and_a_failed_connect(pr: Postroom, server: LocalAuthServer) -> None:
    add_config(pr, server, grant="client_credentials", mailbox="alice@postroom.test",
               username="alice@postroom.test", scopes=("mail",))  # fmt: skip
    code, out, err = Cli(pr, "oauth2", "status", "local", "--json").finish()
    assert code == 0, err
    st = json.loads(out)
    assert st["state"] == "not_connected" and st["consent_needed"] is True

    code, out, err = Cli(pr, "oauth2", "connect", "local").finish()
    assert code == 0, err
    code, out, err = Cli(pr, "oauth2", "status", "local").finish()
    assert code == 0 and "state:          connected" in out
    assert "valid until" in out

    server.fail_next.append((400, {"error": "invalid_scope", "error_description": "nope"}))
    code, out, err = Cli(pr, "oauth2", "connect", "local").finish()
    assert code == 1 and "invalid_scope" in err
    secrets = {t.access_token for t in server.tokens}
    assert not [s for s in secrets if s in out + err]
