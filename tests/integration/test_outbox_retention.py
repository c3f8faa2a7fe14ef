"""Retention: finished messages older than the retention go, with their bodies and
attempts; queued, retrying and in-flight mail never does."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select, update
from typer.testing import CliRunner

from postroom import Postroom
from postroom.cli import cli
from postroom.db.tables import OutboxAttempt, OutboxBody, OutboxMessage
from postroom.outbox.queue import Delivery
from postroom.outbox.worker import Worker
from postroom.settings import Settings
from postroom.smtp.replies import Outcome
from tests.integration.test_outbox import msg, sink_profile


def count(app: Postroom, table: type) -> int:
    with app.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(table)) or 0)


def age(app: Postroom, ids: list[int], days: float) -> None:
    with app.sessions() as s:
        s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids))
            .values(created_at=datetime.now(UTC) - timedelta(days=days))
        )
        s.commit()


def fill(app: Postroom) -> dict[str, int]:
    """One message in each state; all but ``recent`` queued 40 days ago."""
    sink_profile(app, 1)
    ids = {k: app.send(msg(subject=k), profile="sink") for k in
           ("sent", "failed", "cancelled", "queued", "sending", "recent")}  # fmt: skip
    queue = app.outbox.queue
    claims = {c.id: c for c in queue.claim("w", limit=10, lease_s=600)}
    done = [
        Delivery(claims[ids["sent"]], Outcome.SENT, 250, "ok", "w"),
        Delivery(claims[ids["recent"]], Outcome.SENT, 250, "ok", "w"),
        Delivery(claims[ids["failed"]], Outcome.PERMANENT, 550, "no such user", "w"),
    ]
    queue.complete(done)
    queue.release([claims[ids["queued"]], claims[ids["cancelled"]]])
    app.outbox.cancel(ids["cancelled"])
    age(app, [v for k, v in ids.items() if k != "recent"], days=40)
    return ids


def test_purge_deletes_only_old_finished_messages_with_their_bodies_and_attempts(
    app: Postroom,
) -> None:
    ids = fill(app)
    assert count(app, OutboxAttempt) == 3
    deleted = app.outbox.queue.purge(before=datetime.now(UTC) - timedelta(days=30), chunk=2)
    assert deleted == 3
    left = {m.subject: m.status for m in app.outbox.list()}
    assert left == {"queued": "queued", "sending": "sending", "recent": "sent"}
    assert count(app, OutboxBody) == 3 and count(app, OutboxAttempt) == 1
    assert app.outbox.get(ids["recent"]).history[0].code == 250


async def test_workers_apply_the_retention_setting(tmp_path: Path) -> None:
    app = Postroom.open(settings=Settings(data_dir=tmp_path, outbox_retention_days=30))
    try:
        fill(app)
        await _one_pass(app)
        assert {m.subject for m in app.outbox.list()} >= {"queued", "recent"}
        assert not {"sent", "failed", "cancelled"} & {m.subject for m in app.outbox.list()}
    finally:
        app.close()


def test_retention_zero_keeps_everything(tmp_path: Path) -> None:
    app = Postroom.open(settings=Settings(data_dir=tmp_path, outbox_retention_days=0))
    try:
        fill(app)
        asyncio.run(_one_pass(app))
        assert len(app.outbox.list()) == 6
    finally:
        app.close()


async def _one_pass(app: Postroom) -> None:
    worker = Worker(app, poll_s=0.05)
    run = asyncio.create_task(worker.run())
    await asyncio.sleep(0.3)
    worker.stop()
    await asyncio.wait_for(run, 10)


def test_cli_purge(tmp_path: Path) -> None:
    env = {"POSTROOM_DATA_DIR": str(tmp_path)}
    app = Postroom.open(settings=Settings(data_dir=tmp_path))
    try:
        fill(app)
    finally:
        app.close()
    runner = CliRunner()
    bad = runner.invoke(cli, ["outbox", "purge", "--older-than", "0"], env=env)
    assert bad.exit_code == 2 and "older-than" in bad.output + (bad.stderr or "")
    kept = runner.invoke(cli, ["outbox", "purge", "--older-than", "60"], env=env)
    assert kept.exit_code == 0 and "Deleted 0 finished message(s)" in kept.output
    done = runner.invoke(cli, ["outbox", "purge"], env=env)
    assert done.exit_code == 0 and "Deleted 3 finished message(s)" in done.output
