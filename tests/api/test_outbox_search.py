"""Outbox search (``q``) and bulk retry/cancel over REST (issue 24, item 2), on SQLite and
PostgreSQL; a sender key searches and acts only on the messages it queued."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from postroom import Postroom
from postroom.outbox import search
from tests.api.conftest import MakeClient
from tests.api.helpers import API, assert_error


def profiles(app: Postroom) -> None:
    for name in ("QA alerts", "Billing"):
        app.profiles.create(
            {"name": name, "smtp": {"host": "127.0.0.1", "port": 1, "security": "none"},
             "sender": {"from_address": "qa@postroom.test"}}
        )  # fmt: skip
    app.set_default("QA alerts")


def set_status(
    app: Postroom, ids: list[int], status: str, *, created: datetime | None = None
) -> None:
    with app.engine.begin() as conn:
        conn.execute(
            text("UPDATE outbox_messages SET status = :s WHERE id = :id"),
            [{"s": status, "id": i} for i in ids],
        )
        if created is not None:
            conn.execute(
                text("UPDATE outbox_messages SET created_at = :c WHERE id = :id"),
                [{"c": created.replace(tzinfo=None), "id": i} for i in ids],
            )


def ids(client: TestClient, **params: Any) -> list[int]:
    r = client.get(f"{API}/messages", params=params)
    assert r.status_code == 200, r.text
    return [m["id"] for m in r.json()]


def send(client: TestClient, to: str, subject: str, **extra: Any) -> int:
    r = client.post(f"{API}/messages", json={"to": [to], "subject": subject, "text": "x", **extra})
    assert r.status_code == 202, r.text
    return int(r.json()["id"])


def test_q_matches_recipient_subject_message_id_and_id(
    app: Postroom, admin: TestClient, sender: TestClient
) -> None:
    profiles(app)
    a = send(admin, "Alice.Smith@example.test", "Invoice 2026-11")
    b = send(admin, "bob@postroom.test", "100% done_now", profile="Billing")
    c = send(sender, "carol@postroom.test", "Nightly invoice")
    d = send(admin, "straße@postroom.test", "umlaut")
    mid = app.outbox.get(b).message_id

    assert ids(admin, q="alice.smith") == [a]  # recipient, any case
    assert ids(admin, q="INVOICE") == [c, a]  # subject, any case, newest first
    assert ids(admin, q=mid) == [b]  # the Message-ID with its brackets
    assert ids(admin, q=mid.strip("<>").split("@")[0]) == [b]  # or a part of it
    assert ids(admin, q=f"#{a}") == [a]  # the postroom id
    assert a in ids(admin, q=str(a))
    assert ids(admin, q="100%") == [b] and ids(admin, q="e_n") == [b]  # literal % and _
    assert ids(admin, q="0% d") == [b] and ids(admin, q="1_0") == []
    assert ids(admin, q="straße") == [d]  # non-ASCII in the stored JSON
    assert ids(admin, q="invoice", profile="billing") == []
    assert ids(admin, q="invoice", status="queued", limit=1) == [c]
    assert ids(admin, q="   ") == [d, c, b, a]  # an empty term is no filter
    # a sender key finds only its own messages, by any field
    assert ids(sender, q="invoice") == [c]
    assert ids(sender, q=f"#{a}") == [] and ids(sender, q=mid) == []


def test_q_too_long_or_with_control_characters_is_a_field_error(admin: TestClient) -> None:
    assert_error(
        admin.get(f"{API}/messages", params={"q": "x" * 201}), 422, "validation_error", "q"
    )
    assert_error(admin.get(f"{API}/messages", params={"q": "a\x01b"}), 422, "validation_error", "q")


def test_a_substring_search_reads_only_the_newest_window_but_an_id_is_found_anyway(
    app: Postroom, admin: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    profiles(app)
    old = send(admin, "old@postroom.test", "needle old")
    for n in range(3):
        send(admin, f"n{n}@postroom.test", "hay")
    new = send(admin, "new@postroom.test", "needle new")
    monkeypatch.setattr(search, "SEARCH_WINDOW", 4)
    assert ids(admin, q="needle") == [new]  # the old one is beyond the newest 4
    assert ids(admin, q=f"#{old}") == [old]
    # narrowing by time moves the window back
    created = app.outbox.get(old).created_at
    assert ids(admin, q="needle", until=(created + timedelta(microseconds=1)).isoformat()) == [old]


def test_bulk_retry_of_a_filtered_set_counts_acts_and_audits_once(
    app: Postroom, admin: TestClient
) -> None:
    profiles(app)
    qa = [send(admin, f"q{n}@postroom.test", f"qa {n}") for n in range(3)]
    billing = [send(admin, f"b{n}@postroom.test", f"bill {n}", profile="Billing") for n in range(2)]
    last_year = datetime.now(UTC) - timedelta(days=365)
    set_status(app, qa + billing, "failed")
    set_status(app, [qa[0]], "failed", created=last_year)
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    body = {"action": "retry", "status": "failed", "profile": "qa alerts", "since": since}

    r = admin.post(f"{API}/messages/bulk", json={**body, "dry_run": True})
    assert r.status_code == 200, r.text
    assert r.json() == {"action": "retry", "count": 2, "dry_run": True}
    assert {m["status"] for m in (app.outbox.get(i).model_dump() for i in qa)} == {"failed"}

    r = admin.post(f"{API}/messages/bulk", json=body)
    assert r.json() == {"action": "retry", "count": 2, "dry_run": False}
    assert [app.outbox.get(i).status.value for i in qa] == ["failed", "queued", "queued"]
    assert {app.outbox.get(i).status.value for i in billing} == {"failed"}
    entries = [e for e in app.audit.list(limit=50) if e.action == "bulk_retry"]
    assert len(entries) == 1
    assert entries[0].actor == "api:ci-key" and entries[0].target_type == "outbox"
    assert entries[0].details == {
        "count": 2, "filter": {"status": "failed", "profile": "qa alerts", "since": since},
    }  # fmt: skip

    # cancel everything still waiting, found by search
    r = admin.post(f"{API}/messages/bulk", json={"action": "cancel", "q": "qa "})
    assert r.json()["count"] == 2
    assert [app.outbox.get(i).status.value for i in qa] == ["failed", "cancelled", "cancelled"]


def test_bulk_by_a_sender_key_acts_only_on_its_own_messages(
    app: Postroom, admin: TestClient, sender: TestClient, make_client: MakeClient
) -> None:
    profiles(app)
    other = make_client(app.accounts.create_api_key("other", role="sender").key)
    mine = send(sender, "a@postroom.test", "deploy")
    theirs = send(other, "a@postroom.test", "deploy")
    platform = send(admin, "a@postroom.test", "deploy")
    set_status(app, [mine, theirs, platform], "failed")
    r = sender.post(f"{API}/messages/bulk", json={"action": "retry", "q": "deploy"})
    assert r.json()["count"] == 1
    assert app.outbox.get(mine).status.value == "queued"
    assert {app.outbox.get(i).status.value for i in (theirs, platform)} == {"failed"}
    entry = next(e for e in app.audit.list(limit=50) if e.action == "bulk_retry")
    assert entry.actor == "api:mailer" and entry.details["count"] == 1


def test_bulk_bad_input_names_every_field(app: Postroom, admin: TestClient) -> None:
    r = admin.post(
        f"{API}/messages/bulk",
        json={"action": "resend", "since": "yesterday", "q": "x" * 300, "colour": 1},
    )
    error = assert_error(r, 422, "validation_error")
    assert {e["field"] for e in error["errors"]} >= {"action", "since", "q", "colour"}
    assert_error(
        admin.post(f"{API}/messages/bulk", json={"action": "retry", "status": "sent"}),
        422, "validation_error", "status",
    )  # fmt: skip
    assert_error(
        admin.post(f"{API}/messages/bulk", json={"action": "cancel", "status": "failed"}),
        422, "validation_error", "status",
    )  # fmt: skip
    assert_error(
        admin.post(f"{API}/messages/bulk", json={"action": "retry", "since": "2026-01-01T00:00"}),
        422, "validation_error", "since",
    )  # fmt: skip
    assert not [e for e in app.audit.list(limit=50) if e.action.startswith("bulk_")]


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({"status": "failed"}, "ix_outbox_attention (status=?)"),
        ({"owner": 3}, "ix_outbox_created_by"),
        ({}, "SCAN outbox_messages"),
    ],
)
def test_the_search_window_is_read_through_an_index_newest_first(
    sqlite_app: Postroom, filters: dict[str, Any], index: str
) -> None:
    """The window of newest messages comes from the filters' index (or the primary key, in
    order) and stops after SEARCH_WINDOW rows; the text match reads nothing else."""
    query = sqlite_app.outbox.queue.list_query(search="needle", **filters)
    sql = str(query.compile(sqlite_app.engine, compile_kwargs={"literal_binds": True}))
    with sqlite_app.engine.connect() as conn:
        plan = " | ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
    assert index in plan, plan
    assert f"LIMIT {search.SEARCH_WINDOW}" in sql
    # the window is computed first (a co-routine with its LIMIT), reading through the index;
    # the text match then filters only its rows
    assert plan.startswith("CO-ROUTINE window | ") and "SCAN window" in plan, plan
    assert plan.count("outbox_messages") == 1, plan


def test_on_postgresql_the_window_walks_an_index_backwards_and_stops(
    app_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an outbox 20 times the window (20,000 messages, 1 % failed; the window 1,000),
    the window is read newest first through the primary key or the attention index under a
    Limit, and the messages are fetched by id: the table is never read whole."""
    monkeypatch.setattr(search, "SEARCH_WINDOW", 1_000)
    from postroom.outbox.queue import stage
    from tests.integration.test_outbox_storage import item

    pr = app_factory("postgresql")
    profiles(pr)
    pid = pr.profiles.get("QA alerts").id
    with pr.sessions() as s:
        ids = stage(s, [item(n, pid) for n in range(20_000)])
        s.commit()
    set_status(pr, ids[::100], "failed")
    with pr.engine.begin() as conn:
        conn.execute(text("ANALYZE outbox_messages"))
    for filters, index in (
        ({}, "outbox_messages_pkey"),
        ({"status": "failed"}, "ix_outbox_attention"),
    ):
        query = pr.outbox.queue.list_query(search="needle", **filters)
        sql = str(query.compile(pr.engine, compile_kwargs={"literal_binds": True}))
        with pr.engine.connect() as conn:
            plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + sql))
        assert index in plan and "Limit" in plan, plan
        assert "Seq Scan on outbox_messages" not in plan, plan
