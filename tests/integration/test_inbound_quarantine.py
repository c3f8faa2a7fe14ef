"""Messages that cannot be parsed or stored are quarantined and never stall a folder;
a listener that keeps failing shows ``error`` with the reason (real Postfix + Dovecot)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import warnings
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from postroom import Postroom
from postroom.api import create_app
from postroom.cli.inbound import inbound_app
from postroom.inbound.schemas import InboundStatus, ListenerState
from tests.harness.mailservers import MailServers
from tests.integration.test_inbound_support import (
    append,
    imap_client,
    inbound,
    new_mailbox,
    receiving_profile,
    running,
    wait_until,
)
from tests.web.test_inbound_http import _signed_in

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.mailservers


def _raw(subject: str, date: str) -> bytes:
    return (
        f"From: sender@postroom.test\r\nTo: x@postroom.test\r\nSubject: {subject}\r\n"
        f"Date: {date}\r\nMessage-ID: <{uuid.uuid4().hex}@postroom.test>\r\n\r\nbody\r\n"
    ).encode()


async def test_minus_zero_and_zoneless_dates_are_stored_and_nothing_stalls(
    app: Postroom, mail_servers: MailServers
) -> None:
    user, pw = await asyncio.to_thread(new_mailbox, mail_servers)
    raws = [
        _raw("unknown zone", "Wed, 02 Dec 2026 10:00:00 -0000"),  # formatdate()'s default
        _raw("no zone", "Wed, 02 Dec 2026 11:00:00"),
        _raw("after them", "Wed, 02 Dec 2026 12:00:00 +0100"),
    ]
    await asyncio.to_thread(append, mail_servers, user, pw, "INBOX", *raws)
    name = receiving_profile(app, mail_servers, user, pw)
    service = inbound(app)

    def all_processed() -> bool:
        rows = service.list(profile=name)
        return len(rows) == 3 and all(r.status is InboundStatus.PROCESSED for r in rows)

    async with running(service):
        await wait_until(all_processed, timeout=30, what="three processed messages")
    dates = {r.subject: service.get(r.id).date for r in service.list(profile=name)}
    assert dates == {
        "unknown zone": datetime(2026, 12, 2, 10, 0, tzinfo=UTC),  # RFC 5322: UTC, zone unknown
        "no zone": datetime(2026, 12, 2, 11, 0, tzinfo=UTC),
        "after them": datetime(2026, 12, 2, 11, 0, tzinfo=UTC),
    }


def _poison(app: Postroom, condition: str) -> None:
    """A trigger that makes the database refuse inserts into inbound_messages where
    ``condition`` holds (a real refusal by the real database, as a bad value would get)."""
    with app.engine.begin() as conn:
        if app.engine.dialect.name == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER poison BEFORE INSERT ON inbound_messages "
                f"WHEN {condition} BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE OR REPLACE FUNCTION poison() RETURNS trigger AS $$ BEGIN "
                f"IF {condition} THEN RAISE EXCEPTION 'refused by the test'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER poison BEFORE INSERT ON inbound_messages "
                "FOR EACH ROW EXECUTE FUNCTION poison()"
            )


def _cure(app: Postroom) -> None:
    with app.engine.begin() as conn:
        if app.engine.dialect.name == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS poison")
        else:
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS poison ON inbound_messages")


def _api(app: Postroom) -> TestClient:
    key = app.accounts.create_api_key(f"k-{uuid.uuid4().hex[:6]}", role="admin").key
    return TestClient(create_app(app), headers={"Authorization": f"Bearer {key}"})


async def test_a_message_that_cannot_be_stored_is_quarantined_and_shown_everywhere(
    app: Postroom, mail_servers: MailServers
) -> None:
    user, pw = await asyncio.to_thread(new_mailbox, mail_servers)
    raws = [_raw("poison", "Wed, 02 Dec 2026 10:00:00 +0000"), _raw("next", "")]
    await asyncio.to_thread(append, mail_servers, user, pw, "INBOX", *raws)
    name = receiving_profile(app, mail_servers, user, pw)
    service = inbound(app)
    _poison(app, "NEW.subject = 'poison'")
    try:
        async with running(service):
            await wait_until(
                lambda: service.list(profile=name, status="processed"), what="the next message"
            )
    finally:
        _cure(app)
    rows = {r.uid: r for r in service.list(profile=name)}
    assert rows[1].status is InboundStatus.REJECTED and rows[2].subject == "next"
    assert "could not be stored" in str(rows[1].reject_reason)
    assert "refused by the test" in str(rows[1].reject_reason)
    health = service.health(name)[0]
    assert health.quarantined == 1 and health.last_uid == 2
    with imap_client(mail_servers, user, pw) as c:  # left untouched on the server
        c.select_folder("INBOX")
        assert b"\\Seen" not in c.get_flags([1])[1]
    with _api(app) as api:  # REST: the health count, and the message with reason and UID
        (h,) = [h for h in api.get("/api/v1/inbound/health").json() if h["profile"] == name]
        assert h["quarantined"] == 1
        listed = api.get("/api/v1/inbound/messages", params={"status": "rejected"}).json()
        assert [(m["uid"], m["folder"]) for m in listed] == [(1, "INBOX")]
        assert "could not be stored" in listed[0]["reject_reason"]
    app.accounts.create_admin("ada", "ada-password-123")
    with _signed_in(app, "ada", "ada-password-123") as ui:  # UI: count, reason and UID
        health_page = ui.get("/settings/email/inbound").text
        assert "status=rejected" in health_page and "Quarantined" in health_page
        page = ui.get("/settings/email/inbound", params={"status": "rejected"}).text
        assert "UID 1" in page and "could not be stored" in page
    cli = CliRunner().invoke(
        inbound_app,
        ["list", "--status", "rejected"],
        env=_env(app),
        catch_exceptions=False,
    )
    assert cli.exit_code == 0 and "INBOX 1" in cli.stdout and "could not be stored" in cli.stdout
    status = CliRunner().invoke(
        inbound_app, ["status", name, "--json"], env=_env(app), catch_exceptions=False
    )
    assert json.loads(status.stdout)[0]["quarantined"] == 1


def _env(app: Postroom) -> dict[str, str]:
    env = {"POSTROOM_DATA_DIR": str(app.settings.data_dir)}
    if app.settings.database_url:
        env["POSTROOM_DATABASE_URL"] = app.settings.database_url
    return env


async def test_a_failure_loop_shows_as_error_with_its_reason(
    app: Postroom, mail_servers: MailServers
) -> None:
    user, pw = await asyncio.to_thread(new_mailbox, mail_servers)
    await asyncio.to_thread(
        append, mail_servers, user, pw, "INBOX", _raw("any", "Wed, 02 Dec 2026 10:00:00 +0000")
    )
    name = receiving_profile(app, mail_servers, user, pw)
    service = inbound(app)
    _poison(app, "1 = 1")  # not even the quarantine record can be written
    try:
        async with running(service):
            health = await wait_until(
                lambda: [h for h in service.health(name) if h.state is ListenerState.ERROR],
                timeout=15,
                what="error",
            )
            seen = set()
            for _ in range(30):  # it keeps failing: never shown as starting again
                seen.add(service.health(name)[0].state)
                await asyncio.sleep(0.05)
            status = await asyncio.to_thread(
                CliRunner().invoke, inbound_app, ["status"], env=_env(app)
            )
    finally:
        _cure(app)
    assert "refused by the test" in str(health[0].last_error), health[0].last_error
    assert health[0].last_error_code == "database_error"
    assert seen == {ListenerState.ERROR}, seen
    assert status.exit_code == 1, status.stdout


async def test_health_does_not_flap_while_sign_in_keeps_failing(
    sqlite_app: Postroom, mail_servers: MailServers
) -> None:
    user, pw = await asyncio.to_thread(new_mailbox, mail_servers)
    name = receiving_profile(sqlite_app, mail_servers, user, "wrong-" + pw)
    service = inbound(sqlite_app)
    async with running(service):
        await wait_until(
            lambda: service.health(name)[0].state is ListenerState.ERROR, timeout=15, what="error"
        )
        states = []
        deadline = time.monotonic() + 6  # several sign-in attempts (Dovecot delays each ~2 s)
        while time.monotonic() < deadline:
            states.append(service.health(name)[0].state)
            await asyncio.sleep(0.05)
    assert set(states) == {ListenerState.ERROR}, states
    assert service.health(name)[0].last_error_code == "auth_failed"
