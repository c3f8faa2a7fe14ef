"""The REST send path (issue 20): concurrent requests share commits, a 202 only after its
own commit, a failed commit answers every waiting request, backpressure with Retry-After,
and one message for one idempotency key however many clients post it at once.

The requests run concurrently on one event loop through httpx's ASGI transport; a gate
in front of the writer holds a commit "in flight" so the test knows what waits behind it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from postroom import Postroom
from postroom.api import create_app
from postroom.db.tables import OutboxMessage
from postroom.outbox.group_commit import GroupCommit
from tests.conftest import basic_profile

URL = "/api/v1/messages"


def message(i: int, **extra: Any) -> dict[str, Any]:
    return {"to": [f"user{i}@example.com"], "subject": f"m{i}", "text": "hello", **extra}


def stored(app: Postroom) -> int:
    with app.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(OutboxMessage)) or 0)


class Gate:
    """Holds the writer's first commit until ``open()``, so the rest queue up behind it."""

    def __init__(self, app: Postroom) -> None:
        self.event = threading.Event()
        self.calls = 0
        original = app.outbox.send_groups

        def gated(batches: Sequence[Any]) -> Any:
            self.calls += 1
            if self.calls == 1:
                assert self.event.wait(20), "the test never opened the gate"
            return original(batches)

        app.outbox.send_groups = gated  # type: ignore[method-assign]

    def open(self) -> None:
        self.event.set()


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def pending(api: Any) -> int:
    group: GroupCommit = api.state.group_commit
    with group._cond:
        return len(group._pending)


async def post_all(
    api: Any, key: str, bodies: Sequence[dict[str, Any]], *, gate: Gate | None = None
) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=api)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        if gate is None:
            tasks = [asyncio.ensure_future(c.post(URL, json=b)) for b in bodies]
        else:
            # the first request's commit is in flight; the others wait for the next one
            tasks = [asyncio.ensure_future(c.post(URL, json=bodies[0]))]
            await wait_for(lambda: gate.calls == 1)
            tasks += [asyncio.ensure_future(c.post(URL, json=b)) for b in bodies[1:]]
            await wait_for(lambda: pending(api) == len(bodies) - 1)
            gate.open()
        return list(await asyncio.gather(*tasks))


@pytest.fixture
def ready(app: Postroom) -> tuple[Postroom, str]:
    app.profiles.create(basic_profile("alerts"))
    app.set_default("alerts")
    return app, app.accounts.create_api_key("mailer", role="sender").key


def commits(api: Any) -> tuple[int, float]:
    """(commits, requests answered) of the API's group commit so far."""
    stats = api.state.group_commit.stats.requests
    return stats.count, stats.total


def test_requests_that_arrive_during_a_commit_share_the_next_one(
    ready: tuple[Postroom, str],
) -> None:
    app, key = ready
    api = create_app(app)
    gate = Gate(app)
    replies = asyncio.run(post_all(api, key, [message(i) for i in range(16)], gate=gate))
    assert [r.status_code for r in replies] == [202] * 16
    ids = [r.json()["id"] for r in replies]
    assert len(set(ids)) == 16 and stored(app) == 16
    assert commits(api) == (2, 16)  # the one in flight, then the 15 that waited: together


def test_a_failed_commit_answers_every_waiting_request_and_stores_none(
    ready: tuple[Postroom, str],
) -> None:
    app, key = ready
    api = create_app(app)
    gate = Gate(app)
    failing = {"on": False}

    def boom(conn: Any) -> None:  # the database refuses the commit itself
        if failing["on"]:
            raise OperationalError("COMMIT", {}, Exception("disk I/O error"))

    event.listen(app.engine, "commit", boom)

    original_open = gate.open

    def open_and_fail() -> None:  # the first commit succeeds, the shared second one fails
        original = app.outbox.queue.add_groups

        def after_first(groups: Any) -> Any:
            result = original(groups)
            failing["on"] = True
            app.outbox.queue.add_groups = original  # type: ignore[method-assign]
            return result

        app.outbox.queue.add_groups = after_first  # type: ignore[method-assign]
        original_open()

    gate.open = open_and_fail  # type: ignore[method-assign]
    try:
        replies = asyncio.run(post_all(api, key, [message(i) for i in range(8)], gate=gate))
    finally:
        event.remove(app.engine, "commit", boom)
    codes = [r.status_code for r in replies]
    assert codes[0] == 202 and codes[1:] == [503] * 7, codes
    for r in replies[1:]:
        assert r.headers["Retry-After"] == "1"
        assert r.json()["error"]["code"] == "unavailable"
        assert "nothing was stored" in r.json()["error"]["message"]
    assert stored(app) == 1  # only the one answered 202


def test_one_callers_bad_message_is_its_own_422_not_its_neighbours(
    ready: tuple[Postroom, str],
) -> None:
    app, key = ready
    api = create_app(app)
    gate = Gate(app)
    bodies = [message(i) for i in range(6)]
    bodies[3] = {"to": ["not an address"], "subject": "x", "text": "y"}
    replies = asyncio.run(post_all(api, key, bodies, gate=gate))
    assert [r.status_code for r in replies] == [202, 202, 202, 422, 202, 202]
    assert replies[3].json()["error"]["field"].startswith("to")
    assert stored(app) == 5


@pytest.mark.parametrize("gated", [False, True], ids=["one-commit", "across-commits"])
def test_one_idempotency_key_from_16_clients_at_once_is_one_message(
    ready: tuple[Postroom, str], gated: bool
) -> None:
    app, key = ready
    api = create_app(app)
    gate = Gate(app) if gated else None
    if gate is None:
        Gate(app).open()
    bodies = [message(i, idempotency_key="order-4711") for i in range(16)]
    replies = asyncio.run(post_all(api, key, bodies, gate=gate))
    assert [r.status_code for r in replies] == [202] * 16
    assert len({r.json()["id"] for r in replies}) == 1
    assert stored(app) == 1


def test_a_full_outbox_is_answered_503_with_retry_after_and_stores_nothing(
    app_factory: Callable[..., Postroom], backend: str
) -> None:
    app = app_factory(backend, outbox_max_depth=5)
    app.profiles.create(basic_profile("alerts"))
    app.set_default("alerts")
    key = app.accounts.create_api_key("mailer", role="sender").key
    api = create_app(app)

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=api)
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=headers
        ) as c:
            deadline = time.monotonic() + 15
            i = 0
            while time.monotonic() < deadline:  # no worker drains it: it fills up
                r = await c.post(URL, json=message(i))
                i += 1
                if r.status_code != 202:
                    return r
                await asyncio.sleep(0.02)
            raise AssertionError("never refused")

    refused = asyncio.run(run())
    assert refused.status_code == 503
    assert int(refused.headers["Retry-After"]) >= 1
    error = refused.json()["error"]
    assert error["code"] == "unavailable" and "POSTROOM_OUTBOX_MAX_DEPTH" in error["message"]
    before = stored(app)
    assert before >= 5
    assert api.state.group_commit.stats.refused >= 1

    # once the outbox drains (here: cancelled), sending is accepted again
    for summary in app.outbox.list(limit=1000):
        app.outbox.cancel(summary.id)

    async def accepted_again() -> int:
        transport = httpx.ASGITransport(app=api)
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=headers
        ) as c:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                r = await c.post(URL, json=message(999))
                if r.status_code == 202:
                    return int(r.json()["id"])
                assert r.status_code == 503
                await asyncio.sleep(0.1)
            raise AssertionError("still refused after the outbox drained")

    asyncio.run(accepted_again())
    assert stored(app) == before + 1


def test_metrics_show_api_latency_and_commit_batch_sizes(ready: tuple[Postroom, str]) -> None:
    app, key = ready
    api = create_app(app)
    Gate(app).open()
    asyncio.run(post_all(api, key, [message(i) for i in range(4)]))

    async def scrape() -> str:
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return (await c.get("/metrics")).text

    text = asyncio.run(scrape())
    assert 'postroom_api_request_seconds_count{endpoint="send",method="POST"} 4' in text
    assert "postroom_send_commit_messages_sum 4" in text
    assert "postroom_send_commit_requests_count" in text
    assert "postroom_send_refused_total 0" in text
