"""/api/v1/inbound: health, messages, webhooks."""

from __future__ import annotations

from fastapi.testclient import TestClient

from postroom import Postroom
from tests.api.helpers import API, assert_error


def test_inbound_health_messages_and_webhooks(
    app: Postroom, admin: TestClient, sender: TestClient
) -> None:
    app.profiles.create(
        {"name": "Support", "smtp": {"host": "127.0.0.1", "port": 1, "security": "none"},
         "sender": {"from_address": "support@postroom.test"},
         "imap": {"host": "127.0.0.1", "port": 1, "security": "none", "auth": "none"}}
    )  # fmt: skip
    health = admin.get(f"{API}/inbound/health")
    assert health.status_code == 200 and [h["profile"] for h in health.json()] == ["Support"]
    assert admin.get(f"{API}/inbound/messages").json() == []
    assert_error(admin.get(f"{API}/inbound/messages/999"), 404, "not_found")
    r = admin.post(
        f"{API}/inbound/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "name": "ci", "profile": "Support"},
    )
    assert r.status_code == 201, r.text
    secret = r.json()["secret"]
    assert len(secret) >= 16
    listed = admin.get(f"{API}/inbound/webhooks")
    assert [w["name"] for w in listed.json()] == ["ci"] and secret not in listed.text
    assert_error(
        admin.post(f"{API}/inbound/webhooks", json={"url": "http://169.254.169.254/x"}),
        422,
        "validation_error",
        "url",
    )
    assert admin.delete(f"{API}/inbound/webhooks/ci").status_code == 204
    assert_error(sender.get(f"{API}/inbound/health"), 403, "forbidden")
