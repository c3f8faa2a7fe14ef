"""Connection tests over REST: saved and unsaved settings, admin only, rate-limited, audited."""

from __future__ import annotations

from fastapi.testclient import TestClient

from postroom import Postroom
from postroom.api.routes.connection_tests import TESTS_PER_MINUTE
from tests.api.helpers import API, assert_error, basic_profile, path
from tests.integration.smtp_fakes import closed_port


def test_saved_profile_test_returns_the_diagnosis_and_keeps_it(
    app: Postroom, admin: TestClient
) -> None:
    app.profiles.create(basic_profile(host="127.0.0.1", port=closed_port(), security="none"))
    r = admin.post(path("profiles", "QA alerts", "test"), json={})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["ok"] is False and d["error"]["code"] == "connect_refused"
    assert [s["name"] for s in d["steps"]] == ["resolve", "connect"]
    assert d["error"]["hint"]
    last = app.profiles.get("QA alerts").last_test
    assert last is not None and last.error_code == "connect_refused"
    assert app.audit.list(target_type="profile")[0].action == "test"


def test_unsaved_settings_use_the_stored_secret_when_masked(
    app: Postroom, admin: TestClient
) -> None:
    # the stored secret is reused only for the same destination (test_profile_secrets.py)
    port = closed_port()
    app.profiles.create(basic_profile(host="127.0.0.1", port=port, security="none"))
    settings = basic_profile(
        host="127.0.0.1", port=port, security="none", password="********", send_timeout_s=5
    )
    r = admin.post(f"{API}/connection-tests", json={"profile": settings, "existing": "QA alerts"})
    assert r.status_code == 200 and r.json()["error"]["code"] == "connect_refused"
    bad = basic_profile(port=0)
    assert_error(
        admin.post(f"{API}/connection-tests", json={"profile": bad}),
        422,
        "validation_error",
        "smtp.port",
    )
    assert_error(
        admin.post(f"{API}/connection-tests", json={"profile": settings, "bogus": 1}),
        422,
        "validation_error",
        "bogus",
    )


def test_sender_may_not_test(app: Postroom, sender: TestClient) -> None:
    app.profiles.create(basic_profile())
    assert_error(sender.post(path("profiles", "QA alerts", "test"), json={}), 403, "forbidden")


def test_tests_are_rate_limited_per_caller(app: Postroom, admin: TestClient) -> None:
    settings = basic_profile(host="no-such-host.invalid")
    for _ in range(TESTS_PER_MINUTE):
        assert admin.post(f"{API}/connection-tests", json={"profile": settings}).status_code == 200
    r = admin.post(f"{API}/connection-tests", json={"profile": settings})
    assert_error(r, 429, "rate_limited")
    assert int(r.headers["Retry-After"]) > 0
