"""Inbound retention on SQLite and PostgreSQL: old messages whose subscribers all succeeded
(and quarantined ones) go in batches with their attachments, deliveries and held bounce
notices; messages still waiting for subscribers, or whose subscribers failed, never do."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from typer.testing import CliRunner

from postroom import Postroom
from postroom.cli import cli
from postroom.db.tables import Profile
from postroom.imap.parse import InboundMessage as Parsed
from postroom.imap.parse import parse_inbound
from postroom.inbound.schemas import InboundConfig, InboundStatus
from postroom.inbound.store import Location
from postroom.inbound.tables import (
    InboundAttachment,
    InboundDelivery,
    InboundHeldBounce,
    InboundMessage,
)
from tests.integration.test_inbound_store import receiving

WITH_ATTACHMENT = (
    b"From: a@postroom.test\r\nSubject: {n}\r\nMessage-ID: <{n}@x>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n'
    b"hello\r\n--b\r\nContent-Type: application/pdf\r\n"
    b'Content-Disposition: attachment; filename="a.pdf"\r\n\r\n%PDF-1.4 {n}\r\n--b--\r\n'
)

# what each stored message is, and whether a 30-day retention deletes it
CASES = {
    "processed-old": (InboundStatus.PROCESSED, 40, None, True),
    "rejected-old": (InboundStatus.REJECTED, 40, None, True),
    "delivered-given-up-old": (InboundStatus.DELIVERED, 40, None, True),
    "delivered-action-due-old": (InboundStatus.DELIVERED, 40, 1, False),
    "received-old": (InboundStatus.RECEIVED, 40, 1, False),  # subscribers pending
    "failed-old": (InboundStatus.FAILED, 40, None, False),  # subscribers gave up
    "processed-recent": (InboundStatus.PROCESSED, 5, None, False),
}


def count(app: Postroom, table: type) -> int:
    with app.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(table)) or 0)


def fill(app: Postroom) -> dict[str, int]:
    """One stored message (with an attachment and a delivery) per case."""
    service = app.inbound
    profile_id = receiving(app)
    mailbox = service.mailboxes.ensure(profile_id, "INBOX")
    service.mailboxes.acquire(mailbox, "me", lease_s=30)
    service.mailboxes.position(mailbox, "me", 1)
    where = Location(mailbox, "me", profile_id, "Support inbox", "INBOX", 1)
    ids: dict[str, int] = {}
    now = datetime.now(UTC)
    for uid, (name, (status, days, due, _)) in enumerate(CASES.items(), start=1):
        raw = WITH_ATTACHMENT.replace(b"{n}", name.encode())
        parsed = parse_inbound(raw)
        assert isinstance(parsed, Parsed)
        stored = service.store.store(where, uid, parsed, size=len(raw), sha256=f"{uid:064}",
                                     bounce=None)  # fmt: skip
        assert stored is not None
        service.store.log_delivery(stored, "callback:x", ok=True)
        with app.sessions() as s:
            s.execute(
                update(InboundMessage)
                .where(InboundMessage.id == stored)
                .values(
                    status=status.value,
                    received_at=now - timedelta(days=days),
                    next_attempt_at=None if due is None else now + timedelta(hours=due),
                )
            )
            s.commit()
        ids[name] = stored
    return ids


def kept(app: Postroom) -> set[str]:
    with app.sessions() as s:
        return set(s.scalars(select(InboundMessage.subject)))


def test_purge_deletes_only_old_messages_done_with_in_batches(app: Postroom) -> None:
    ids = fill(app)
    with app.sessions() as s:  # a held bounce notice goes with its message
        outbox = app.send({"to": ["b@example.com"], "subject": "R", "text": "x"},
                          profile="Support inbox")  # fmt: skip
        s.add(InboundHeldBounce(inbound_id=ids["processed-old"], outbox_id=outbox))
        s.commit()
    assert count(app, InboundAttachment) == count(app, InboundDelivery) == len(CASES)
    retention = app.inbound.retention
    before = datetime.now(UTC) - timedelta(days=30)
    assert retention.count(before=before) == 3
    seen: list[int] = []
    assert retention.purge(before=before, chunk=2, progress=seen.append) == 3
    assert seen == [2, 3]  # two batches, progress after each
    assert kept(app) == {name for name, case in CASES.items() if not case[3]}
    left = len(CASES) - 3
    assert count(app, InboundAttachment) == count(app, InboundDelivery) == left
    assert count(app, InboundHeldBounce) == 0
    assert app.outbox.get(outbox).status == "queued"  # the outbox message itself stays
    assert retention.purge(before=before) == 0


def test_cli_purge_dry_run_json_and_bad_input(app: Postroom) -> None:
    fill(app)
    env = {"POSTROOM_DATA_DIR": str(app.settings.data_dir)}
    if app.settings.database_url:
        env["POSTROOM_DATABASE_URL"] = app.settings.database_url
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(cli, ["inbound", "purge", *args], env=env)

    bad = run("--older-than", "0")
    assert bad.exit_code == 2 and "older-than" in bad.output + (bad.stderr or "")
    dry = run("--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    report = json.loads(dry.stdout)
    assert (report["dry_run"], report["would_delete"], report["deleted"]) == (True, 3, 0)
    assert report["older_than_days"] == 30
    assert len(kept(app)) == len(CASES)
    none = run("--older-than", "60")
    assert none.exit_code == 0 and "Deleted 0 received message(s)" in none.stdout
    done = run("--json")
    assert done.exit_code == 0 and json.loads(done.stdout)["deleted"] == 3
    assert kept(app) == {name for name, case in CASES.items() if not case[3]}
    again = run()
    assert again.exit_code == 0 and "Deleted 0 received message(s)" in again.stdout


async def test_the_runner_applies_the_retention_setting(app_factory, backend: str) -> None:  # type: ignore[no-untyped-def]
    """What serve and inbound run start (app.inbound.runner) purges on its own."""
    app = app_factory(backend, inbound_retention_days=30)
    fill(app)
    with app.sessions() as s:  # no listener: the profile's IMAP host is not a test server
        s.execute(update(Profile).values(enabled=False))
        s.commit()
    runner = app.inbound.runner(config=InboundConfig(rescan_s=0.05))
    task = asyncio.create_task(runner.run())
    want = {name for name, case in CASES.items() if not case[3]}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while kept(app) != want and loop.time() < deadline:
        await asyncio.sleep(0.05)
    runner.stop()
    await asyncio.wait_for(task, 15)
    assert kept(app) == want


async def test_retention_zero_keeps_everything(app_factory, backend: str) -> None:  # type: ignore[no-untyped-def]
    app = app_factory(backend, inbound_retention_days=0)
    fill(app)
    with app.sessions() as s:
        s.execute(update(Profile).values(enabled=False))
        s.commit()
    runner = app.inbound.runner(config=InboundConfig(rescan_s=0.05))
    task = asyncio.create_task(runner.run())
    await asyncio.sleep(0.3)  # a purge would have run at once: it is the runner's first step
    runner.stop()
    await asyncio.wait_for(task, 15)
    assert len(kept(app)) == len(CASES)
