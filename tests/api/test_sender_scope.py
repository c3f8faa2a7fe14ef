"""A sender key sees only what it created, and sends only as its key allows (issue 16.3)."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from postroom import Postroom
from tests.api.conftest import MakeClient
from tests.api.helpers import API, assert_error

MSG = {"to": ["bob@postroom.test"], "subject": "Run finished", "text": "green"}


def profiles(app: Postroom) -> None:
    for name in ("QA alerts", "Billing"):
        app.profiles.create(
            {"name": name, "smtp": {"host": "127.0.0.1", "port": 1, "security": "none"},
             "sender": {"from_address": "qa@postroom.test"}}
        )  # fmt: skip
    app.set_default("QA alerts")


def key(app: Postroom, make_client: MakeClient, name: str, **scope: list[str]) -> TestClient:
    return make_client(app.accounts.create_api_key(name, role="sender", **scope).key)


def test_a_sender_key_reads_only_its_own_messages(
    app: Postroom, sender: TestClient, admin: TestClient, make_client: MakeClient
) -> None:
    profiles(app)
    other = key(app, make_client, "other-team")
    mine = sender.post(f"{API}/messages", json={**MSG, "profile": "QA alerts"}).json()["id"]
    theirs = other.post(f"{API}/messages", json={**MSG, "subject": "theirs"}).json()["id"]
    by_admin = admin.post(f"{API}/messages", json=MSG).json()["id"]
    # the platform's own mail: a password reset link to an admin's recovery address
    app.accounts.create_admin("root", "long enough password", email="root@recovery.test")
    ticket = app.accounts.request_password_reset("root")
    assert ticket is not None
    system = app.notifications.send_system_mail(
        "password_reset", to=ticket.email,
        data={"reset_url": f"https://p.test/reset/{ticket.token}", "user_name": "root",
              "site_name": "postroom", "expires_in": "30 minutes", "requested_from": "x"},
    )  # fmt: skip
    by_python = app.send(MSG, profile="QA alerts")

    assert sender.get(f"{API}/messages/{mine}").status_code == 200
    for id in (theirs, by_admin, system, by_python):
        r = sender.get(f"{API}/messages/{id}")
        assert_error(r, 404, "not_found")
        assert "recovery.test" not in r.text and ticket.token not in r.text
    listed = sender.get(f"{API}/messages", params={"limit": 1000}).json()
    assert [m["id"] for m in listed] == [mine]
    for params in ({"status": "queued"}, {"profile": "QA alerts"}):
        assert [m["id"] for m in sender.get(f"{API}/messages", params=params).json()] == [mine]
    assert [m["id"] for m in other.get(f"{API}/messages").json()] == [theirs]
    # an admin key sees everything
    all_ids = {m["id"] for m in admin.get(f"{API}/messages").json()}
    assert all_ids == {mine, theirs, by_admin, system, by_python}
    assert admin.get(f"{API}/messages/{system}").status_code == 200


def test_a_sender_key_reads_only_its_own_actions(
    app: Postroom, sender: TestClient, admin: TestClient, make_client: MakeClient
) -> None:
    profiles(app)
    app.profiles.update("QA alerts", {"email_actions_base_url": "https://p.test"})
    body = {"process": "deploy", "to": ["boss@postroom.test"], "subject": "Ship it?",
            "text": "Release 4.2", "choices": ["approve", "reject"],
            "context": {"token": "ctx-secret-123"}}  # fmt: skip
    mine = sender.post(f"{API}/actions", json=body)
    assert mine.status_code == 201, mine.text
    other = key(app, make_client, "other-team")
    theirs = other.post(f"{API}/actions", json=body).json()["id"]
    by_python = app.actions.create(
        process="deploy", to=["boss@postroom.test"], subject="s", choices=["ok"], text="t",
        context={"token": "ctx-secret-123"},
    ).id  # fmt: skip
    assert sender.get(f"{API}/actions/{mine.json()['id']}").status_code == 200
    for id in (theirs, by_python):
        r = sender.get(f"{API}/actions/{id}")
        assert_error(r, 404, "not_found")
        assert "ctx-secret-123" not in r.text
    assert admin.get(f"{API}/actions/{theirs}").json()["context"] == {"token": "ctx-secret-123"}
    # the action's mails are the creator's messages too, and nobody else's
    own = sender.get(f"{API}/messages").json()
    assert [m["subject"].endswith(f"[#{mine.json()['id']}]") for m in own] == [True]
    assert [m["subject"] for m in other.get(f"{API}/messages").json()][0].endswith(f"[#{theirs}]")


def test_a_scoped_key_sends_only_as_its_processes_and_profiles(
    app: Postroom, make_client: MakeClient
) -> None:
    profiles(app)
    app.bind("billing-run", "Billing")
    app.bind("nightly", "QA alerts")
    scoped = key(app, make_client, "nightly-key", processes=["nightly"], profiles=["qa ALERTS"])
    ok = scoped.post(f"{API}/messages", json={**MSG, "process": "Nightly"})
    assert ok.status_code == 202, ok.text

    def refused(path: str, body: dict[str, object], *words: str) -> None:
        r = scoped.post(f"{API}/{path}", json=body)
        error = assert_error(r, 403, "forbidden")
        for word in ("nightly-key", *words):
            assert word in error["message"], error["message"]

    refused("messages", {**MSG, "process": "billing-run"}, "'nightly'", "'billing-run'")
    refused("messages", MSG, "name one of them in 'process'")
    refused("messages", {**MSG, "process": "nightly", "profile": "Billing"}, "'Billing'")
    app.bind("nightly", "Billing")  # the process now resolves outside the key's profiles
    refused("messages", {**MSG, "process": "nightly"}, "process 'nightly' sends through")
    app.bind("nightly", "QA alerts")
    batch = {"messages": [{**MSG, "process": "nightly"}, {**MSG, "process": "billing-run"}]}
    refused("messages", batch, "'billing-run'")  # one bad message refuses the batch
    action = {"process": "billing-run", "to": ["boss@postroom.test"], "subject": "Pay?",
              "text": "t", "choices": ["yes", "no"]}  # fmt: skip
    refused("actions", action, "'billing-run'")
    refused("events", {"event": "run.failed", "process": "billing-run"}, "'billing-run'")
    assert len(app.outbox.list()) == 1  # only the first message was stored
    assert app.outbox.list()[0].process == "Nightly"


def test_admins_create_scoped_keys_over_rest(
    app: Postroom, admin: TestClient, sender: TestClient, make_client: MakeClient
) -> None:
    profiles(app)
    body = {"name": "billing", "role": "sender", "processes": ["billing-run"],
            "profiles": ["billing"]}  # fmt: skip
    r = admin.post(f"{API}/apikeys", json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["key"].startswith("prk_")
    assert created["processes"] == ["billing-run"] and created["profiles"] == ["Billing"]
    listed = {k["name"]: k for k in admin.get(f"{API}/apikeys").json()}
    assert listed["billing"]["profiles"] == ["Billing"] and "key" not in listed["billing"]
    client = make_client(created["key"])
    assert_error(client.post(f"{API}/messages", json={**MSG, "process": "x"}), 403, "forbidden")
    # a sender key cannot make keys, nor list them
    assert_error(sender.post(f"{API}/apikeys", json={**body, "name": "x"}), 403, "forbidden")
    assert_error(sender.get(f"{API}/apikeys"), 403, "forbidden")
    # every problem at once, nothing made
    bad = admin.post(
        f"{API}/apikeys",
        json={"name": "billing", "role": "admin", "profiles": ["Nope"], "processes": []},
    )
    error = assert_error(bad, 422, "validation_error")
    fields = {e["field"] for e in error["errors"]}
    assert fields == {"name", "processes", "profiles"}, error
    assert len(admin.get(f"{API}/apikeys").json()) == 3
    assert admin.delete(f"{API}/apikeys/billing").status_code == 204
    assert client.get(f"{API}/messages").status_code == 401


def test_cli_creates_a_scoped_key(app: Postroom, tmp_path: object) -> None:
    from typer.testing import CliRunner

    from postroom.cli import cli

    profiles(app)
    env = {"POSTROOM_DATA_DIR": str(app.settings.data_dir)}
    if app.settings.database_url:
        env["POSTROOM_DATABASE_URL"] = app.settings.database_url
    runner = CliRunner()
    r = runner.invoke(
        cli, ["apikey", "create", "ci", "--process", "nightly", "--process", "deploy",
              "--profile", "qa alerts", "--json"], env=env, catch_exceptions=False,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    created = json.loads(r.output)
    assert created["processes"] == ["nightly", "deploy"] and created["profiles"] == ["QA alerts"]
    listed = runner.invoke(cli, ["apikey", "list"], env=env).output
    assert "processes nightly, deploy; profiles QA alerts" in listed
    bad = runner.invoke(
        cli, ["apikey", "create", "x", "--role", "admin", "--profile", "nope"], env=env
    )
    assert bad.exit_code == 2 and "profiles" in bad.output and "Traceback" not in bad.output
