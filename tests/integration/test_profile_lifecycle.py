"""A profile's lifecycle (issue 22): usage recorded by the worker, the first profile as the
default, unused profiles found, dedicated-mailbox warnings — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import update

from postroom import Postroom
from postroom.db.tables import OutboxMessage, utcnow
from postroom.outbox.worker import Worker
from tests.integration.smtp_fakes import raw_sink


def sink_profile(app: Postroom, port: int, name: str = "sink", **extra: Any) -> None:
    app.profiles.create(
        {
            "name": name,
            "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "auth": "none",
                     "connect_timeout_s": 3, "send_timeout_s": 3},
            "sender": {"from_address": "robot@postroom.test", "from_name": "Robot"},
            **extra,
        }
    )  # fmt: skip


def msg(**over: Any) -> dict[str, Any]:
    return {"to": ["bob@postroom.test"], "subject": "Run finished", "text": "All green.", **over}


def drain(app: Postroom) -> Worker:
    w = Worker(app, poll_s=0.05)
    asyncio.run(asyncio.wait_for(w.run(drain=True), 60))
    return w


def test_delivery_records_last_used_and_counts(app: Postroom) -> None:
    with raw_sink() as sink:
        sink_profile(app, sink.port)
        sink_profile(app, sink.port, "idle")
        before = utcnow()
        for _ in range(5):
            app.send(msg(), profile="sink")
        assert drain(app).sent == 5
    p = app.profiles.get("sink")
    assert p.last_used_at is not None and p.last_used_at >= before - timedelta(seconds=1)
    assert (p.usage.sent_7d, p.usage.sent_30d, p.usage.failed_7d) == (5, 5, 0)
    idle = app.profiles.get("idle")
    assert idle.last_used_at is None and idle.usage.sent_30d == 0
    listed = {x.name: x for x in app.profiles.list()}
    assert listed["sink"].usage.sent_7d == 5 and listed["sink"].last_used_at == p.last_used_at


def test_counts_split_by_age_and_outcome(app: Postroom) -> None:
    sink_profile(app, 1)
    ids = [app.send(msg(), profile="sink") for _ in range(4)]
    now = utcnow()
    with app.sessions() as s:
        # two sent this week, one failed 10 days ago, one sent 40 days ago (outside both)
        for id, status, age in (
            (ids[0], "sent", 1), (ids[1], "sent", 2), (ids[2], "failed", 10), (ids[3], "sent", 40),
        ):  # fmt: skip
            s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == id)
                .values(status=status, created_at=now - timedelta(days=age))
            )
        s.commit()
    u = app.profiles.get("sink").usage
    assert (u.sent_7d, u.failed_7d, u.sent_30d, u.failed_30d) == (2, 0, 2, 1)


def test_failed_delivery_is_not_use(app: Postroom) -> None:
    sink_profile(app, 1)  # nothing listens on port 1: the attempt fails, the profile is not used
    id = app.send(msg(), profile="sink")
    w = Worker(app, poll_s=0.05)

    async def one_cycle() -> None:
        task = asyncio.create_task(w.run())
        for _ in range(200):
            await asyncio.sleep(0.05)
            if app.outbox.get(id).attempts:
                break
        w.stop()
        await asyncio.wait_for(task, 30)

    asyncio.run(one_cycle())
    assert app.profiles.get("sink").last_used_at is None


def test_first_profile_becomes_the_default_with_an_audit_entry(app: Postroom) -> None:
    assert app.get_default() is None
    sink_profile(app, 1, "off", enabled=False)  # a disabled profile can't carry mail
    assert app.get_default() is None
    sink_profile(app, 1, "first")
    sink_profile(app, 1, "second")
    assert app.get_default() == "first"
    assert app.profiles.get("first").is_default and not app.profiles.get("second").is_default
    entries = [e for e in app.audit.list() if e.action == "set_default"]
    assert [(e.target, e.details["reason"]) for e in entries] == [("first", "no default existed")]
    # the default deleted: the next profile created takes its place
    app.profiles.delete("first", force=True)
    assert app.get_default() is None
    sink_profile(app, 1, "third")
    assert app.get_default() == "third"


def test_unused_profiles_are_found_from_facts(app: Postroom) -> None:
    from postroom.db.tables import Profile

    for name in ("default", "bound", "fresh", "old", "old used"):
        sink_profile(app, 1, name)
    app.bind("nightly", "bound")
    long_ago = utcnow() - timedelta(days=120)
    with app.sessions() as s:
        for name in ("default", "bound", "old", "old used"):
            s.execute(update(Profile).where(Profile.name == name).values(created_at=long_ago))
        s.execute(
            update(Profile)
            .where(Profile.name == "old used")
            .values(last_used_at=utcnow() - timedelta(days=100))
        )
        s.execute(update(Profile).where(Profile.name == "bound").values(last_used_at=long_ago))
        s.commit()
    flagged = {p.name: p.unused for p in app.profiles.list(unused=True)}
    assert sorted(flagged) == ["old", "old used"]
    assert "never used" in (flagged["old"] or "") and "more than 90 days" in (flagged["old"] or "")
    assert "bound to no process" in (flagged["old used"] or "")
    assert app.profiles.get("fresh").unused is None and app.profiles.get("old").unused


def test_unused_in_rest_and_cli(app: Postroom) -> None:
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from postroom.api.app import create_app
    from postroom.cli import cli
    from postroom.db.tables import Profile

    sink_profile(app, 1, "main")
    sink_profile(app, 1, "stale")
    with app.sessions() as s:
        old = utcnow() - timedelta(days=200)
        s.execute(update(Profile).where(Profile.name == "stale").values(created_at=old))
        s.commit()
    key = app.accounts.create_api_key("ops", role="admin").key
    with TestClient(create_app(app)) as client:
        headers = {"Authorization": f"Bearer {key}"}
        got = client.get("/api/v1/profiles", params={"unused": "true"}, headers=headers)
        assert [p["name"] for p in got.json()] == ["stale"]
        assert "never used" in got.json()[0]["unused"]
        everything = client.get("/api/v1/profiles", headers=headers).json()
        assert [p["name"] for p in everything] == ["main", "stale"]
    env = {"POSTROOM_DATA_DIR": str(app.settings.data_dir)}
    if app.settings.database_url:
        env["POSTROOM_DATABASE_URL"] = app.settings.database_url
    r = CliRunner().invoke(cli, ["profile", "list", "--unused"], env=env)
    assert r.exit_code == 0, r.output
    assert "stale" in r.output and "main" not in r.output.replace("(* = system default)", "")
    assert "unused: stale: not the default, bound to no process, and never used" in r.output
