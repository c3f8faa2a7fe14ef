"""Trace and authentication headers a sender may not set, on every surface that takes
custom headers: the Python API, REST and the CLI. Nothing is queued when one is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from postroom import Postroom
from postroom.cli import cli
from postroom.errors import ValidationError
from tests.api.helpers import API, assert_error

FORBIDDEN = [
    "Resent-From",
    "Resent-To",
    "resent-message-id",
    "Authentication-Results",
    "DKIM-Signature",
    "Received",
    "Return-Path",
    "ARC-Seal",
]

MSG = {"to": ["bob@postroom.test"], "subject": "Run finished", "text": "green"}


def _profile(app: Postroom) -> None:
    app.profiles.create(
        {"name": "QA alerts", "smtp": {"host": "127.0.0.1", "port": 1, "security": "none"},
         "sender": {"from_address": "qa@postroom.test"}}
    )  # fmt: skip


@pytest.mark.parametrize("name", FORBIDDEN)
def test_python_api_refuses_server_headers(app: Postroom, name: str) -> None:
    _profile(app)
    with pytest.raises(ValidationError) as exc:
        app.send({**MSG, "headers": {"X-Run": "1", name: "x"}}, profile="QA alerts")
    assert exc.value.field == "headers"
    assert name in exc.value.errors[0].message and "only mail servers" in exc.value.message
    assert app.outbox.list() == []


@pytest.mark.parametrize("name", FORBIDDEN)
def test_rest_refuses_server_headers(app: Postroom, sender: TestClient, name: str) -> None:
    _profile(app)
    r = sender.post(f"{API}/messages", json={**MSG, "profile": "QA alerts", "headers": {name: "x"}})
    error = assert_error(r, 422, "validation_error", "headers")
    assert name in error["message"]
    assert app.outbox.list() == []


def test_ordinary_custom_headers_still_pass(app: Postroom) -> None:
    _profile(app)
    headers = {"X-Run-Id": "42", "X-Received-By": "ci", "List-Id": "<ci.example.org>"}
    app.send({**MSG, "headers": headers}, profile="QA alerts")
    assert len(app.outbox.list()) == 1


def test_cli_refuses_server_headers(tmp_path: Path) -> None:
    env = {"POSTROOM_DATA_DIR": str(tmp_path / "data")}
    runner = CliRunner()

    def run(*args: str):  # type: ignore[no-untyped-def]
        result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
        assert "Traceback" not in result.output
        return result

    r = run("profile", "add", "sink", "--smtp-host", "127.0.0.1", "--smtp-port", "1",
            "--security", "none", "--from-address", "robot@postroom.test")  # fmt: skip
    assert r.exit_code == 0, r.output
    for name in ("DKIM-Signature", "Resent-Sender"):
        r = run("send", "--profile", "sink", "--to", "a@b.test", "--text", "t",
                "--header", f"{name}: v=1")  # fmt: skip
        assert r.exit_code == 2, r.output
        assert name in r.output and "headers" in r.output
    assert run("outbox", "list", "--json").output.strip() == "[]"
