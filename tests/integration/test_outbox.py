"""The outbox on SQLite and PostgreSQL: durable send, profile resolution, delivery outcomes."""

from __future__ import annotations

import asyncio
import email
import time
from email import policy as email_policy
from typing import Any

import pytest
from sqlalchemy import func, select

from postroom import Postroom, ValidationError
from postroom.db.tables import OutboxMessage
from postroom.outbox.service import SendRequest
from postroom.outbox.worker import Worker
from tests.conftest import clear_default
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


def stored_count(app: Postroom) -> int:
    with app.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(OutboxMessage)) or 0)


@pytest.fixture(params=["serial", "pipelined"])
def pipelining(request: pytest.FixtureRequest) -> bool:
    """Run delivery tests against a server with and without PIPELINING."""
    return request.param == "pipelined"


def drain(app: Postroom, **kw: Any) -> Worker:
    w = Worker(app, poll_s=0.05, **kw)
    asyncio.run(asyncio.wait_for(w.run(drain=True), 60))
    return w


def test_send_returns_id_once_stored(app: Postroom) -> None:
    sink_profile(app, 1)
    id = app.send(msg(), profile="sink")
    m = app.outbox.get(id)
    assert m.status == "queued" and m.recipients == ["bob@postroom.test"]
    assert m.message_id.startswith("<") and m.message_id.endswith("@postroom.test>")


def test_idempotency_key_returns_the_first_id(app: Postroom) -> None:
    sink_profile(app, 1)
    first = app.send(msg(), profile="sink", idempotency_key="run-42")
    assert app.send(msg(subject="again"), profile="sink", idempotency_key="run-42") == first
    assert stored_count(app) == 1


def test_profile_resolution_binding_then_default_then_error(app: Postroom) -> None:
    sink_profile(app, 1, "A")
    sink_profile(app, 1, "B")
    clear_default(app)  # "A" became the default as the first profile
    with pytest.raises(ValidationError) as exc:
        app.send(msg(), process="nightly")
    assert exc.value.field == "profile" and "no binding" in exc.value.errors[0].message
    app.set_default("A")
    assert app.outbox.get(app.send(msg(), process="nightly")).profile == "A"
    app.bind("nightly", "B")
    assert app.outbox.get(app.send(msg(), process="nightly")).profile == "B"
    assert app.outbox.get(app.send(msg(), profile="a")).profile == "A"


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"subject": "=?UTF-8?Q?=0A?=Bcc: victim@example.org"}, "subject"),
        ({"subject": "hi\r\nBcc: victim@example.org"}, "subject"),
        ({"subject": "nul\x00"}, "subject"),
        ({"to": ["alice@example.org)<bob@example.com>"]}, "to"),
        ({"to": ["a@b.test\r\nBcc: x@y.test"]}, "to"),
        ({"headers": {"X-Run": "1\nBcc: x@y.test"}}, "headers"),
        ({"headers": {"Bcc": "x@y.test"}}, "headers"),
        ({"headers": {"Bad Name": "x"}}, "headers"),
        ({"to": [], "cc": [], "bcc": []}, "to"),
        ({"text": None}, "text"),
        ({"reply_to": "not an address"}, "reply_to"),
    ],
)
def test_bad_messages_are_refused_and_nothing_is_stored(
    app: Postroom, over: dict[str, Any], field: str
) -> None:
    sink_profile(app, 1)
    with pytest.raises(ValidationError) as exc:
        app.send(msg(**over), profile="sink")
    assert exc.value.field.startswith(field), exc.value.errors
    assert stored_count(app) == 0


def test_send_many_is_all_or_nothing(app: Postroom) -> None:
    sink_profile(app, 1)
    with pytest.raises(ValidationError) as exc:
        app.send_many(
            [SendRequest(msg(), profile="sink"), SendRequest(msg(subject="x\ny"), profile="sink")]
        )
    assert exc.value.field == "1.subject"
    assert stored_count(app) == 0
    ids = app.send_many([SendRequest(msg(), profile="sink") for _ in range(50)])
    assert len(set(ids)) == 50 and stored_count(app) == 50


def test_worker_delivers_and_records_the_attempt(app: Postroom, pipelining: bool) -> None:
    with raw_sink(pipelining=pipelining) as sink:
        sink_profile(app, sink.port)
        id = app.send(
            msg(cc=["Carol <carol@postroom.test>"], bcc=["dave@postroom.test"]), profile="sink"
        )
        w = drain(app)
    m = app.outbox.get(id)
    assert m.status == "sent" and w.sent == 1
    assert len(m.history) == 1 and m.history[0].code == 250 and m.history[0].worker == w.name
    assert sink.envelopes[0] == (
        "robot@postroom.test",
        ["bob@postroom.test", "carol@postroom.test", "dave@postroom.test"],
    )
    parsed = email.message_from_bytes(sink.data[0], policy=email_policy.default)
    assert parsed["Message-ID"] == m.message_id
    assert "Bcc" not in parsed and "dave" not in sink.data[0].decode()


def test_non_ascii_subject_names_and_body(app: Postroom, pipelining: bool) -> None:
    with raw_sink(pipelining=pipelining) as sink:
        sink_profile(app, sink.port)
        app.send(
            msg(
                to=["Zoë Ünal <zoe@postroom.test>"],
                subject="Prüfung ✓ bestanden",
                text="Grüße — 日本",
            ),
            profile="sink",
        )
        drain(app)
    raw = sink.data[0]
    assert raw.isascii() or b"8bit" in raw
    parsed = email.message_from_bytes(raw[: -len(b".\r\n")], policy=email_policy.default)
    assert parsed["Subject"] == "Prüfung ✓ bestanden"
    assert parsed["To"].addresses[0].display_name == "Zoë Ünal"
    assert "Grüße — 日本" in parsed.get_content()
    assert parsed["Date"] is not None and parsed["MIME-Version"] == "1.0"


def test_smuggling_inputs_leave_as_crlf_with_dots_doubled(app: Postroom, pipelining: bool) -> None:
    with raw_sink(pipelining=pipelining) as sink:
        sink_profile(app, sink.port)
        body = "line1\n.\nMAIL FROM:<evil@x.test>\r\n.\r\nline2\rline3\n..two dots"
        app.send(msg(text=body), profile="sink")
        drain(app)
    wire = sink.data[0]
    assert wire.count(b"\r\n.\r\n") == 1 and wire.endswith(b"\r\n.\r\n")
    body_bytes = wire[: -len(b".\r\n")]
    assert b"\n" not in body_bytes.replace(b"\r\n", b"")
    assert b"\r" not in body_bytes.replace(b"\r\n", b"")
    assert b"\r\n..\r\n" in body_bytes  # the lone dot line was doubled
    assert b"\r\n...two dots" in body_bytes


def test_permanent_refusal_fails_at_once(app: Postroom, pipelining: bool) -> None:
    with raw_sink(
        rcpt_reply={"bob@postroom.test": "550 5.1.1 no such user"}, pipelining=pipelining
    ) as sink:
        sink_profile(app, sink.port)
        id = app.send(msg(), profile="sink")
        drain(app)
    m = app.outbox.get(id)
    assert m.status == "failed" and m.last_code == 550 and m.attempts == 1
    assert m.history[0].recipient_results == {
        "bob@postroom.test": {"code": 550, "text": "5.1.1 no such user"}
    }


def test_temporary_refusal_retries_later(app: Postroom, pipelining: bool) -> None:
    with raw_sink(
        rcpt_reply={"bob@postroom.test": "451 4.3.0 try later"}, pipelining=pipelining
    ) as sink:
        sink_profile(app, sink.port)
        id = app.send(msg(), profile="sink")
        drain(app)
    m = app.outbox.get(id)
    assert m.status == "retrying" and m.last_code == 451
    assert (m.due_at - m.history[0].at).total_seconds() > 10


def test_partly_refused_recipients_are_recorded(app: Postroom, pipelining: bool) -> None:
    with raw_sink(
        rcpt_reply={"gone@postroom.test": "550 5.1.1 gone"}, pipelining=pipelining
    ) as sink:
        sink_profile(app, sink.port)
        id = app.send(msg(to=["bob@postroom.test", "gone@postroom.test"]), profile="sink")
        drain(app)
    m = app.outbox.get(id)
    assert m.status == "sent"
    assert m.recipient_results == {"gone@postroom.test": {"code": 550, "text": "5.1.1 gone"}}


def test_unreachable_server_is_a_transient_fault(app: Postroom) -> None:
    from tests.integration.smtp_fakes import closed_port

    sink_profile(app, closed_port())
    id = app.send(msg(), profile="sink")
    drain(app)
    m = app.outbox.get(id)
    assert m.status == "retrying" and "refused" in (m.last_error or "")


def test_stale_owner_cannot_overwrite_the_new_owner(app: Postroom) -> None:
    from postroom.outbox.queue import Delivery
    from postroom.smtp.replies import Outcome

    sink_profile(app, 1)
    id = app.send(msg(), profile="sink")
    queue = app.outbox.queue
    old = queue.claim("old-worker", limit=10, lease_s=0.2)
    time.sleep(0.4)
    new = queue.claim("new-worker", limit=10, lease_s=60)
    assert [c.id for c in new] == [id]
    refused = queue.complete([Delivery(old[0], Outcome.PERMANENT, 550, "stale", "old-worker")])
    assert refused == [id]
    assert app.outbox.get(id).status == "sending"
    assert queue.complete([Delivery(new[0], Outcome.SENT, 250, "ok", "new-worker")]) == []
    assert app.outbox.get(id).status == "sent"


def test_a_batch_with_one_lost_lease_records_only_the_messages_still_owned(
    app: Postroom,
) -> None:
    """The plain-250 path writes a whole batch at once; a lease lost meanwhile is found
    and refused, the others recorded, with one attempt each."""
    from postroom.outbox.queue import Delivery
    from postroom.smtp.replies import Outcome

    sink_profile(app, 1)
    ids = [app.send(msg(), profile="sink") for _ in range(3)]
    queue = app.outbox.queue
    old = queue.claim("old-worker", limit=10, lease_s=60)
    assert sorted(c.id for c in old) == sorted(ids)
    lost = old[1]
    queue.release([lost])  # back in the queue, then taken by another worker
    new = queue.claim("new-worker", limit=10, lease_s=60)
    assert [c.id for c in new] == [lost.id]
    refused = queue.complete([Delivery(c, Outcome.SENT, 250, "250 ok", "old-worker") for c in old])
    assert refused == [lost.id]
    assert [app.outbox.get(i).status for i in ids] == ["sent", "sending", "sent"]
    assert [len(app.outbox.get(i).history) for i in ids] == [1, 0, 1]


def test_outcomes_and_the_next_claim_commit_together(app: Postroom) -> None:
    """The worker writes one batch's outcomes and claims the next in one transaction
    (docs/decisions/0007): one commit, outcomes as complete() writes them, a lease as
    claim() takes it — and a lost lease refused without holding the claim back."""
    from sqlalchemy import event

    from postroom.outbox.queue import Delivery
    from postroom.smtp.replies import Outcome

    sink_profile(app, 1)
    first = [app.send(msg(subject=f"a{i}"), profile="sink") for i in range(3)]
    queue = app.outbox.queue
    held = queue.claim("w", limit=3, lease_s=60)
    lost = held[2]
    queue.release([lost])  # taken by another worker meanwhile
    assert [c.id for c in queue.claim("other", limit=1, lease_s=60)] == [lost.id]
    later = [app.send(msg(subject=f"b{i}", priority=p), profile="sink") for i, p in
             enumerate(["low", "high", "normal"])]  # fmt: skip
    commits: list[object] = []

    def count(conn: object) -> None:
        commits.append(conn)

    event.listen(app.engine, "commit", count)
    try:
        refused, claims = queue.complete_and_claim(
            [Delivery(held[0], Outcome.SENT, 250, "250 ok", "w"),
             Delivery(held[1], Outcome.TRANSIENT, 451, "451 later", "w"),
             Delivery(lost, Outcome.SENT, 250, "250 ok", "w")],
            "w", limit=10, lease_s=60,
        )  # fmt: skip
    finally:
        event.remove(app.engine, "commit", count)
    assert len(commits) == 1
    assert refused == [lost.id]
    statuses = [app.outbox.get(i).status for i in first]
    assert statuses == ["sent", "retrying", "sending"]  # the lost one is the other's
    assert [len(app.outbox.get(i).history) for i in first] == [1, 1, 0]
    # by priority, each leased with one owner token and its attempt counted
    assert [c.id for c in claims] == [later[1], later[2], later[0]]
    assert len({c.token for c in claims}) == 1 and all(c.attempts == 1 for c in claims)
    assert [app.outbox.get(i).status for i in later] == ["sending"] * 3
    assert [b"Subject: b1\r\n" in c.raw for c in claims] == [True, False, False]


def test_outcomes_are_written_when_nothing_is_left_to_claim(app: Postroom) -> None:
    from postroom.outbox.queue import Delivery
    from postroom.smtp.replies import Outcome

    sink_profile(app, 1)
    id = app.send(msg(), profile="sink")
    queue = app.outbox.queue
    (held,) = queue.claim("w", limit=10, lease_s=60)
    assert queue.complete_and_claim(
        [Delivery(held, Outcome.SENT, 250, "250 ok", "w")], "w", limit=10, lease_s=60
    ) == ([], [])
    assert app.outbox.get(id).status == "sent"


def test_a_message_cancelled_after_being_chosen_is_not_claimed(
    app: Postroom, monkeypatch: pytest.MonkeyPatch
) -> None:
    from postroom.outbox.queue import OutboxQueue

    sink_profile(app, 1)
    keep, cancel = app.send(msg(), profile="sink"), app.send(msg(), profile="sink")
    choose = OutboxQueue._choose

    def choose_then_cancel(s: Any, now: Any, limit: int) -> list[int]:
        chosen = choose(s, now, limit)
        if app.engine.dialect.name == "sqlite":  # PostgreSQL holds the rows locked instead
            app.outbox.cancel(cancel)
        return chosen

    monkeypatch.setattr(OutboxQueue, "_choose", staticmethod(choose_then_cancel))
    claimed = app.outbox.queue.claim("w", limit=10, lease_s=60)
    if app.engine.dialect.name == "sqlite":
        assert [c.id for c in claimed] == [keep]
        assert app.outbox.get(cancel).status == "cancelled"
    else:
        assert sorted(c.id for c in claimed) == sorted([keep, cancel])


def away_from_a_minute_boundary() -> None:
    """Rate windows are calendar minutes: a test that must stay inside one starts early
    enough in it (draining looks 5 s ahead, so the held messages must not become due)."""
    second = time.time() % 60
    if second > 45:
        time.sleep(60.5 - second)


def test_rate_limit_holds_the_rest_for_the_next_minute(app: Postroom) -> None:
    away_from_a_minute_boundary()
    with raw_sink() as sink:
        sink_profile(app, sink.port, rate_limit_per_minute=5)
        ids = [app.send(msg(), profile="sink") for _ in range(8)]
        drain(app)
    statuses = [app.outbox.get(i).status for i in ids]
    assert statuses.count("sent") == 5 and statuses.count("queued") == 3
    assert len(sink.data) == 5


def test_disabled_profile_keeps_its_mail_queued(app: Postroom) -> None:
    with raw_sink() as sink:
        sink_profile(app, sink.port)
        id = app.send(msg(), profile="sink")
        app.profiles.update("sink", {"enabled": False}, force=True)  # it is the default
        drain(app)
        assert app.outbox.get(id).status == "queued" and sink.data == []
        app.profiles.update("sink", {"enabled": True})
        drain(app)
    assert app.outbox.get(id).status == "sent"


def test_retry_and_cancel(app: Postroom) -> None:
    sink_profile(app, 1)
    id = app.send(msg(), profile="sink")
    assert app.outbox.cancel(id).status == "cancelled"
    assert app.outbox.retry(id).status == "queued"
    assert [m.id for m in app.outbox.list(status="queued", profile="SINK")] == [id]


def test_refused_and_stalling_recipients_hold_back_no_other_mail(
    app: Postroom, pipelining: bool
) -> None:
    replies = {"gone@postroom.test": "550 5.1.1 gone", "slow@postroom.test": "STALL"}
    with raw_sink(rcpt_reply=replies, pipelining=pipelining) as sink:
        sink_profile(app, sink.port, max_connections=2)
        app.profiles.update("sink", {"smtp": {"send_timeout_s": 1}})
        slow = app.send(msg(to=["slow@postroom.test"]), profile="sink")
        gone = app.send(msg(to=["gone@postroom.test"]), profile="sink")
        good = [app.send(msg(subject=f"ok {i}"), profile="sink") for i in range(6)]
        started = time.monotonic()
        drain(app)
        elapsed = time.monotonic() - started
    assert [app.outbox.get(i).status for i in good] == ["sent"] * 6
    assert app.outbox.get(gone).status == "failed"
    assert app.outbox.get(slow).status == "retrying"
    assert elapsed < 15
