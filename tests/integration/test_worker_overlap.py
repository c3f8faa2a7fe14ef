"""The worker overlaps database work with delivery: while one batch is on the wire it
writes the previous batch's outcomes and claims the next (docs/decisions/0004, 0007).
What it holds ahead must stay leased while it works, and go back to the queue when it
stops."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from postroom import Postroom
from postroom.db.tables import OutboxMessage
from postroom.outbox.wakeup import CommitWatch
from postroom.outbox.worker import Worker
from tests.integration.smtp_fakes import raw_sink
from tests.integration.test_outbox import msg, sink_profile


def row(app: Postroom, id: int) -> OutboxMessage:
    with app.sessions() as s:
        found = s.scalar(select(OutboxMessage).where(OutboxMessage.id == id))
        assert found is not None
        return found


async def until(predicate: Callable[[], Any], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(predicate):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_claims_taken_ahead_go_back_to_the_queue_when_the_worker_stops(
    app: Postroom,
) -> None:
    with raw_sink() as sink:
        sink_profile(app, sink.port, max_connections=1)
        ids = [app.send(msg(subject=f"m{i}"), profile="sink") for i in range(3)]
        sink.gate.clear()  # the first message's 250 waits for us
        worker = Worker(app, batch=1, poll_s=0.05)
        run = asyncio.create_task(worker.run())
        await until(lambda: len(sink.data) == 1, "the first message on the wire")
        await until(lambda: row(app, ids[1]).status == "sending", "the second one claimed ahead")
        worker.stop()
        sink.gate.set()
        await asyncio.wait_for(run, 10)
    first, second, third = (row(app, i) for i in ids)
    assert first.status == "sent" and first.attempts == 1
    # taken ahead but never tried: queued again, no attempt counted, no owner left
    assert (second.status, second.attempts, second.lease_owner) == ("queued", 0, None)
    assert (third.status, third.attempts) == ("queued", 0)
    assert app.outbox.get(ids[1]).history == []
    assert len(sink.data) == 1


async def test_leases_of_claims_taken_ahead_are_renewed_while_a_server_is_slow(
    app: Postroom,
) -> None:
    with raw_sink() as sink:
        sink_profile(app, sink.port, max_connections=1)
        app.profiles.update("sink", {"smtp": {"send_timeout_s": 20}})  # slow, not dead
        ids = [app.send(msg(subject=f"m{i}"), profile="sink") for i in range(2)]
        sink.gate.clear()
        worker = Worker(app, batch=1, poll_s=0.05, lease_s=1.5)
        run = asyncio.create_task(worker.run(drain=True))
        await until(lambda: row(app, ids[1]).status == "sending", "the second one claimed ahead")
        await asyncio.sleep(3.5)  # well past the 1.5 s lease of both
        # another worker finds nothing to take over: both leases were kept alive
        assert await asyncio.to_thread(app.outbox.queue.claim, "other", limit=10, lease_s=60) == []
        sink.gate.set()
        await asyncio.wait_for(run, 10)
    assert [(row(app, i).status, row(app, i).attempts) for i in ids] == [("sent", 1)] * 2
    assert len(sink.data) == 2 and worker.sent == 2


async def test_an_idle_worker_picks_new_mail_up_without_waiting_a_poll_interval(
    sqlite_app: Postroom,
) -> None:
    app = sqlite_app
    with raw_sink() as sink:
        sink_profile(app, sink.port)
        worker = Worker(app, poll_s=30)  # a long poll: only the commit watch can wake it
        run = asyncio.create_task(worker.run())
        await asyncio.sleep(0.3)  # it found nothing and is waiting now
        id = await asyncio.to_thread(app.send, msg(), profile="sink")
        try:
            await until(lambda: row(app, id).status == "sent", "delivery", timeout=5)
        finally:
            worker.stop()
            await asyncio.wait_for(run, 10)


def test_commit_watch_sees_commits_of_other_connections(app: Postroom, backend: str) -> None:
    watch = CommitWatch(app.engine)
    try:
        if backend != "sqlite":
            assert not watch.available and not watch.changed()
            return
        assert watch.available and not watch.changed()
        sink_profile(app, 1)
        app.send(msg(), profile="sink")
        assert watch.changed()
        assert not watch.changed()  # nothing new since
    finally:
        watch.close()
