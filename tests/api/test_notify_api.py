"""/api/v1/events, /templates, /subscriptions and the unsubscribe pages."""

from __future__ import annotations

import email
import re

from fastapi.testclient import TestClient

from postroom import Postroom
from postroom.api import create_app
from tests.api.helpers import API, assert_error


def setup(app: Postroom) -> None:
    app.profiles.create(
        {"name": "QA alerts", "smtp": {"host": "127.0.0.1", "port": 1, "security": "none"},
         "sender": {"from_address": "qa@postroom.test"}}
    )  # fmt: skip
    app.set_default("QA alerts")


def test_event_reaches_a_subscriber_through_rest(
    app: Postroom, admin: TestClient, sender: TestClient
) -> None:
    setup(app)
    r = admin.post(f"{API}/subscriptions", json={"event": "run.*", "address": "ops@postroom.test",
                                                 "template": "run_finished", "filter": {"status": ["failed"]}})  # fmt: skip
    assert r.status_code == 201, r.text
    data = {"process": "nightly", "status": "failed", "duration_s": 61, "passed": 1, "failed": 2}
    r = sender.post(
        f"{API}/events", json={"event": "run.finished", "process": "nightly", "data": data}
    )
    assert r.status_code == 200, r.text
    assert [d["status"] for d in r.json()["deliveries"]] == ["queued"]
    ok = sender.post(
        f"{API}/events", json={"event": "run.finished", "data": {**data, "status": "passed"}}
    )
    assert ok.json()["deliveries"] == []
    assert_error(sender.post(f"{API}/events", json={"event": ""}), 422, "validation_error", "event")
    assert_error(sender.get(f"{API}/subscriptions"), 403, "forbidden")


def test_templates_crud_preview_and_injection(app: Postroom, admin: TestClient) -> None:
    names = [t["name"] for t in admin.get(f"{API}/templates").json()]
    assert {
        "password_reset",
        "alert",
        "run_finished",
        "scheduled_summary",
        "user_invitation",
    } <= set(names)
    sample = admin.get(f"{API}/templates/alert").json()["sample_data"]
    r = admin.post(
        f"{API}/templates/alert/preview", json={"data": {**sample, "source": "<script>x</script>"}}
    )
    assert r.status_code == 200, r.text
    assert (
        "<script>x</script>" not in (r.json()["html"] or "")
        and "&lt;script&gt;" in r.json()["html"]
    )
    bad = {
        "template": {
            "name": "evil",
            "subject": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
            "text": "x",
        }
    }
    err = admin.post(f"{API}/templates/preview", json=bad)
    assert err.status_code == 422 and err.json()["error"]["code"] in (
        "template_error",
        "validation_error",
    )
    created = admin.post(f"{API}/templates", json={"name": "weekly", "subject": "Week {{ week }}", "text": "Hi",
                                                  "sample_data": {"week": 47}})  # fmt: skip
    assert created.status_code == 201, created.text
    v = created.json()["version"]
    assert (
        admin.put(f"{API}/templates/weekly", json={"text": "Hello", "version": v}).status_code
        == 200
    )
    assert_error(
        admin.put(f"{API}/templates/weekly", json={"text": "stale", "version": v}),
        409,
        "stale_version",
    )
    assert len(admin.get(f"{API}/templates/weekly/history").json()) == 2
    assert admin.delete(f"{API}/templates/weekly").status_code == 204


def test_unsubscribe_get_confirms_post_removes(app_factory) -> None:  # type: ignore[no-untyped-def]
    app = app_factory("sqlite", public_url="https://postroom.example.com")
    setup(app)
    app.notifications.subscriptions.add(
        {"event": "alert.*", "address": "ops@postroom.test", "template": "alert"}
    )
    app.notify("alert.raised", data={"severity": "warning", "source": "db", "details": "slow"})
    raw = app.outbox.queue.claim("t", limit=1, lease_s=60)[0].raw
    msg = email.message_from_bytes(raw)
    url = re.search(r"<([^>]+)>", msg["List-Unsubscribe"]).group(1)  # type: ignore[union-attr]
    assert url.startswith("https://postroom.example.com/unsubscribe/")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Auto-Submitted"] == "auto-generated"
    client = TestClient(create_app(app))
    path = url.removeprefix("https://postroom.example.com")
    assert client.get(path).status_code == 200
    assert len(app.notifications.subscriptions.list()) == 1
    assert client.post(path).status_code == 200
    assert app.notifications.subscriptions.list() == []
    assert client.post(path).status_code == 404


def test_template_limits_are_field_errors_that_name_the_setting(app_factory, backend: str) -> None:  # type: ignore[no-untyped-def]
    """A template past a limit is a 422 on the part, naming the setting to change; the
    limits come from the settings (issue 16 item 4)."""
    app = app_factory(backend, template_max_source_chars=2000, template_render_timeout_s=0.3)
    assert app.templates.limits.max_source_chars == 2000
    key = app.accounts.create_api_key("ops", role="admin").key
    with TestClient(create_app(app), headers={"Authorization": f"Bearer {key}"}) as admin:
        too_big = {"name": "big", "subject": "s", "html": "<p>" + "x" * 2000 + "</p>"}
        error = assert_error(
            admin.post(f"{API}/templates", json=too_big), 422, "validation_error", "html"
        )
        assert "POSTROOM_TEMPLATE_MAX_SOURCE_CHARS" in error["message"]
        silent = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
        slow = {"name": "slow", "subject": "s", "text": silent}
        error = assert_error(
            admin.post(f"{API}/templates", json=slow), 422, "validation_error", "text"
        )
        assert "POSTROOM_TEMPLATE_RENDER_TIMEOUT_S" in error["message"]
        wide = {"template": {"name": "wide", "subject": "s", "text": "{{ 'x'|center(10**9) }}"}}
        error = assert_error(
            admin.post(f"{API}/templates/preview", json=wide), 422, "template_error"
        )
        assert "POSTROOM_TEMPLATE_MAX_OUTPUT_CHARS" in error["message"]
    assert app.templates.list() and "big" not in [t.name for t in app.templates.list()]
