"""/api/v1/messages and /metrics: a sender key sends; admins retry and cancel."""

from __future__ import annotations

import asyncio

from fastapi.testclient import TestClient

from postroom import Postroom
from postroom.outbox.worker import Worker
from tests.api.helpers import API, assert_error
from tests.conftest import clear_default
from tests.integration.smtp_fakes import raw_sink


def profile(app: Postroom, port: int = 1) -> None:
    app.profiles.create(
        {"name": "QA alerts", "smtp": {"host": "127.0.0.1", "port": port, "security": "none"},
         "sender": {"from_address": "qa@postroom.test"}}
    )  # fmt: skip


MSG = {"to": ["bob@postroom.test"], "subject": "Run finished", "text": "green"}


def test_sender_sends_and_reads_status(app: Postroom, sender: TestClient) -> None:
    with raw_sink() as sink:
        profile(app, sink.port)
        r = sender.post(f"{API}/messages", json={**MSG, "profile": "QA alerts"})
        assert r.status_code == 202, r.text
        id = r.json()["id"]
        assert r.json()["status"] == "queued"
        asyncio.run(Worker(app, poll_s=0.05).run(drain=True))
    r = sender.get(f"{API}/messages/{id}")
    assert r.status_code == 200 and r.json()["status"] == "sent"
    assert r.json()["history"][0]["code"] == 250
    assert [m["id"] for m in sender.get(f"{API}/messages", params={"status": "sent"}).json()] == [
        id
    ]


def test_batch_is_one_transaction(app: Postroom, sender: TestClient) -> None:
    profile(app)
    r = sender.post(f"{API}/messages", json={"messages": [{**MSG, "profile": "QA alerts"}] * 3})
    assert r.status_code == 202 and len(r.json()["ids"]) == 3
    bad = [
        {**MSG, "profile": "QA alerts"},
        {**MSG, "subject": "a\r\nBcc: x@y.test", "profile": "QA alerts"},
    ]
    assert_error(
        sender.post(f"{API}/messages", json={"messages": bad}), 422, "validation_error", "1.subject"
    )
    assert len(app.outbox.list()) == 3


def test_bad_message_names_the_field(app: Postroom, sender: TestClient) -> None:
    profile(app)
    clear_default(app)  # the first profile became the default (issue 22 item 4)
    assert_error(
        sender.post(
            f"{API}/messages", json={**MSG, "to": ["x)<y@z.test>"], "profile": "QA alerts"}
        ),
        422,
        "validation_error",
        "to",
    )
    assert_error(
        sender.post(f"{API}/messages", json={**MSG, "process": "nightly"}),
        422,
        "validation_error",
        "profile",
    )
    assert_error(
        sender.post(f"{API}/messages", json={**MSG, "send_at": "tomorrow", "profile": "QA alerts"}),
        422,
        "validation_error",
        "send_at",
    )
    assert app.outbox.list() == []


def test_idempotency_key_returns_first_id(app: Postroom, sender: TestClient) -> None:
    profile(app)
    body = {**MSG, "profile": "QA alerts", "idempotency_key": "run-7"}
    assert (
        sender.post(f"{API}/messages", json=body).json()["id"]
        == sender.post(f"{API}/messages", json=body).json()["id"]
    )


def test_retry_and_cancel_are_admin_only(
    app: Postroom, sender: TestClient, admin: TestClient
) -> None:
    profile(app)
    id = sender.post(f"{API}/messages", json={**MSG, "profile": "QA alerts"}).json()["id"]
    assert_error(sender.post(f"{API}/messages/{id}/cancel"), 403, "forbidden")
    assert admin.post(f"{API}/messages/{id}/cancel").json()["status"] == "cancelled"
    assert_error(admin.post(f"{API}/messages/{id}/cancel"), 409, "conflict")
    assert admin.post(f"{API}/messages/{id}/retry").json()["status"] == "queued"
    assert_error(admin.get(f"{API}/messages/999999"), 404, "not_found")


def test_anonymous_cannot_send(anonymous: TestClient) -> None:
    assert_error(anonymous.post(f"{API}/messages", json=MSG), 401, "unauthorized")


def test_metrics_exposition(app: Postroom, anonymous: TestClient) -> None:
    profile(app)
    app.send(MSG, profile="QA alerts")
    r = anonymous.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "postroom_queue_depth 1" in r.text


def test_internationalized_addresses_are_queued_not_a_500(
    app: Postroom, sender: TestClient
) -> None:
    """A UTF-8 local part (sent with SMTPUTF8) and a non-ASCII domain (sent as IDNA) crashed
    composition with UnicodeEncodeError; an invalid internationalized domain is a 422."""
    profile(app)
    r = sender.post(
        f"{API}/messages",
        json={**MSG, "to": ["用户@example.test", "bob@exämple.test"], "profile": "QA alerts"},
    )
    assert r.status_code == 202, r.text
    assert_error(
        sender.post(f"{API}/messages", json={**MSG, "to": ["a@☃x.test"], "profile": "QA alerts"}),
        422,
        "validation_error",
        "to",
    )
