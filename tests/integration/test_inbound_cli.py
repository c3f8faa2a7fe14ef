"""`postroom inbound …` on a real database: webhooks, status, listing, bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from postroom import Postroom
from postroom.cli.inbound import inbound_app
from postroom.db.tables import utcnow
from postroom.inbound.schemas import ListenerState
from postroom.settings import Settings
from tests.conftest import basic_profile
from tests.integration.test_inbound_support import inbound


@pytest.fixture
def app_and_cli(tmp_path: Path) -> Iterator[tuple[Postroom, Any]]:
    data = tmp_path / "data"
    app = Postroom.open(settings=Settings(data_dir=data))
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Any:
        result = runner.invoke(
            inbound_app,
            list(args),
            input=input,
            env={"POSTROOM_DATA_DIR": str(data)},
            catch_exceptions=False,
        )
        assert "Traceback" not in result.output
        return result

    yield app, invoke
    app.close()


def test_webhook_add_list_remove(app_and_cli: tuple[Postroom, Any]) -> None:
    app, cli = app_and_cli
    profile = basic_profile("Support inbox")
    profile["imap"] = {"host": "imap.example.com", "username": "s@example.com", "password": "p"}
    app.profiles.create(profile)
    added = cli(
        "webhook",
        "add",
        "https://hooks.example.com/mail",
        "--name",
        "ops",
        "--profile",
        "support inbox",
        "--json",
    )
    assert added.exit_code == 0, added.output
    created = json.loads(added.stdout)
    assert created["profile"] == "Support inbox" and created["secret"].startswith("whsec_")
    given = cli(
        "webhook",
        "add",
        "https://hooks.example.com/b",
        "--name",
        "b",
        "--secret-stdin",
        input="a-secret-of-my-own-choosing\n",
    )
    assert given.exit_code == 0 and "a-secret-of-my-own-choosing" not in given.output
    listed = json.loads(cli("webhook", "list", "--json").stdout)
    assert [w["name"] for w in listed] == ["ops", "b"] and "secret" not in listed[0]
    assert created["secret"] not in cli("webhook", "list").stdout
    assert cli("webhook", "add", "ftp://example.com/x").exit_code == 2
    assert cli("webhook", "add", "https://other.example.com/", "--name", "ops").exit_code == 1
    assert cli("webhook", "add", "https://x.example.com/", "--profile", "nope").exit_code == 1
    assert cli("webhook", "remove", "ops").exit_code == 0
    assert cli("webhook", "remove", "ops").exit_code == 1


def test_status_shows_a_dead_listener_and_exits_1(app_and_cli: tuple[Postroom, Any]) -> None:
    app, cli = app_and_cli
    assert "No profile receives mail" in cli("status").stdout
    profile = basic_profile("Support inbox")
    profile["imap"] = {"host": "imap.example.com", "username": "s@example.com", "password": "p"}
    profile_id = app.profiles.create(profile).id
    ok = cli("status", "--json")
    assert ok.exit_code == 0
    assert json.loads(ok.stdout)[0]["state"] == "stopped"
    boxes = inbound(app).mailboxes
    mailbox = boxes.ensure(profile_id, "INBOX")
    boxes.acquire(mailbox, "gone:1:x", lease_s=30)
    boxes.set_state(mailbox, "gone:1:x", ListenerState.IDLE, polled=True)
    with app.sessions() as s:  # it wrote "idle" ten minutes ago and then died
        row = s.get(type(boxes.get(mailbox)), mailbox)
        assert row is not None
        row.state_at = utcnow() - timedelta(minutes=10)
        s.commit()
    dead = cli("status")
    assert dead.exit_code == 1
    assert "error (stale)" in dead.stdout and "stopped reporting" in dead.stdout
    (entry,) = json.loads(cli("status", "Support inbox", "--json").stdout)
    assert entry["stale"] is True and entry["listener"] == "gone:1:x"


def test_list_and_bad_input(app_and_cli: tuple[Postroom, Any]) -> None:
    _, cli = app_and_cli
    assert json.loads(cli("list", "--json").stdout) == []
    assert "No inbound messages." in cli("list").stdout
    assert cli("list", "--status", "bogus").exit_code == 2
    assert cli("run", "--lease", "0").exit_code == 2
    assert cli("run", "--idle-renew", "1800").exit_code == 2
