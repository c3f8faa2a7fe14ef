"""The UI's HTTP contract without a browser: redirects, cookies, headers, CSRF, roles."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from postroom import Postroom
from postroom.api import create_app
from postroom.settings import Settings
from tests.conftest import basic_profile, clear_default

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

CANARY = "CANARY-7f3a-secret"


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def _client(pr: Postroom, **kwargs: object) -> TestClient:
    return TestClient(create_app(pr), follow_redirects=False, **kwargs)  # type: ignore[arg-type]


def _sign_in(client: TestClient, username: str, password: str, next_: str = "") -> object:
    token = _csrf(client.get("/login").text)
    return client.post(
        "/login",
        data={"csrf_token": token, "username": username, "password": password, "next": next_},
    )


@pytest.fixture
def pr(sqlite_app: Postroom) -> Postroom:
    sqlite_app.accounts.create_admin("ada", "ada-password-123")
    sqlite_app.accounts.create_admin("vic", "vic-password-123", role="viewer")
    sqlite_app.profiles.create(basic_profile())
    return sqlite_app


@pytest.fixture
def admin(pr: Postroom) -> Iterator[TestClient]:
    with _client(pr) as client:
        assert _sign_in(client, "ada", "ada-password-123").status_code == 303  # type: ignore[attr-defined]
        yield client


def test_pages_need_a_session_and_say_where_to_go(pr: Postroom) -> None:
    with _client(pr) as client:
        assert client.get("/").headers["location"] == "/settings/email"
        response = client.get("/settings/email/audit?type=profile")
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=/settings/email/audit%3Ftype%3Dprofile"
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie


def test_sign_in_goes_back_only_to_local_pages(pr: Postroom) -> None:
    with _client(pr) as client:
        response = _sign_in(client, "ada", "ada-password-123", "https://evil.example/")
        assert response.headers["location"] == "/settings/email"  # type: ignore[attr-defined]
    with _client(pr) as client:
        response = _sign_in(client, "ada", "ada-password-123", "/settings/email/audit")
        assert response.headers["location"] == "/settings/email/audit"  # type: ignore[attr-defined]
    with _client(pr) as client:
        response = _sign_in(client, "ada", "wrong")
        assert response.status_code == 401  # type: ignore[attr-defined]


def test_https_public_url_makes_cookies_secure(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, public_url="https://mail.example.com")
    with Postroom.open(settings=settings) as pr, _client(pr) as client:
        assert "Secure" in client.get("/login").headers["set-cookie"]


def test_pages_carry_security_headers_and_no_secret(admin: TestClient) -> None:
    for url in (
        "/settings/email",
        "/settings/email/profiles/1",
        "/settings/email/audit",
        "/settings/email/outbox",
        "/settings/email/actions",
    ):
        response = admin.get(url)
        assert response.status_code == 200, url
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"
        assert CANARY not in response.text
    assert admin.get("/static/app.css").headers["content-type"].startswith("text/css")
    assert admin.get("/static/nope.js").status_code == 404


def test_post_without_csrf_token_is_refused(admin: TestClient, pr: Postroom) -> None:
    clear_default(pr)  # the first profile became the default (issue 22 item 4)
    response = admin.post("/settings/email/profiles/1/default", data={})
    assert response.status_code == 403
    assert "This form has expired" in response.text
    assert pr.get_default() is None


def test_viewer_posts_are_refused(pr: Postroom) -> None:
    clear_default(pr)  # the first profile became the default (issue 22 item 4)
    with _client(pr) as client:
        _sign_in(client, "vic", "vic-password-123")
        token = _csrf(client.get("/settings/email").text)
        response = client.post("/settings/email/profiles/1/default", data={"csrf_token": token})
        assert response.status_code == 403
        assert pr.get_default() is None
        # Sign-out is not a change: viewers may do it.
        assert client.post("/logout", data={"csrf_token": token}).status_code == 303


def test_test_endpoint_answers_the_script_with_a_fragment(admin: TestClient) -> None:
    token = _csrf(admin.get("/settings/email/new").text)
    response = admin.post(
        "/settings/email/new",
        data={"csrf_token": token, "action": "test_smtp", "smtp.host": "", "smtp.port": "x"},
        headers={"X-Requested-With": "postroom-fetch"},
    )
    assert response.status_code == 422
    assert "<html" not in response.text
    assert "Fix these fields before testing" in response.text
    assert 'href="#f-smtp-port"' in response.text


def test_unknown_ui_paths_get_the_html_not_found_page(admin: TestClient, pr: Postroom) -> None:
    for url in ("/settings/email/nope", "/settings/nope/deeper", "/nope"):
        response = admin.get(url)
        assert response.status_code == 404, url
        assert response.headers["content-type"].startswith("text/html"), url
        assert "<html" in response.text and "Not found" in response.text, url
        assert "/api/v1/docs" not in response.text
        assert "Content-Security-Policy" in response.headers  # the UI's security headers
    # signed out: the same page, not JSON
    with _client(pr) as anonymous:
        response = anonymous.get("/settings/email/nope")
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")


def test_unknown_api_paths_point_at_what_exists(admin: TestClient) -> None:
    response = admin.get("/api/v1/nothing-here")
    assert response.status_code == 404
    message = response.json()["error"]["message"]
    assert "/api/v1/docs" not in message
    assert "/api/v1/openapi.json" in message
    assert admin.get("/api/v1/openapi.json").status_code == 200


def test_unknown_profile_is_a_404_page(admin: TestClient) -> None:
    response = admin.get("/settings/email/profiles/999")
    assert response.status_code == 404
    assert "There is no such email profile" in response.text


def test_last_test_badge_turns_stale_when_tested_settings_change(
    admin: TestClient, pr: Postroom
) -> None:
    from datetime import UTC, datetime

    from postroom.profiles.schemas import LastTest

    pr.profiles.create(basic_profile("Stale check"))
    pr.profiles.record_test("Stale check", LastTest(at=datetime.now(UTC), ok=True, kind="smtp"))
    assert pr.profiles.get("Stale check").last_test.stale is False  # type: ignore[union-attr]

    def badge() -> str:
        html = admin.get("/settings/email").text
        row = html[html.index("Stale check") :]
        return row[: row.index("</tr>")]

    assert "Passed" in badge() and "badge-stale" not in badge()
    # a change the SMTP test did not depend on leaves it current
    pr.profiles.update("Stale check", {"description": "nightly"})
    assert pr.profiles.get("Stale check").last_test.stale is False  # type: ignore[union-attr]
    # the server it tested changes: the result no longer describes these settings
    pr.profiles.update(
        "Stale check", {"smtp": {"port": 465, "security": "tls", "password": "CANARY-7f3a-secret"}}
    )
    assert pr.profiles.get("Stale check").last_test.stale is True  # type: ignore[union-attr]
    assert "badge-stale" in badge() and "settings changed since" in badge()
    # a new test is current again; a new password makes it stale too
    pr.profiles.record_test("Stale check", LastTest(at=datetime.now(UTC), ok=True, kind="smtp"))
    assert pr.profiles.get("Stale check").last_test.stale is False  # type: ignore[union-attr]
    pr.profiles.update("Stale check", {"smtp": {"password": "another-password"}})
    assert pr.profiles.get("Stale check").last_test.stale is True  # type: ignore[union-attr]
    # and so does a new sender (the test's MAIL FROM), with no secret involved
    pr.profiles.record_test("Stale check", LastTest(at=datetime.now(UTC), ok=True, kind="smtp"))
    pr.profiles.update("Stale check", {"sender": {"from_address": "other@example.com"}})
    assert pr.profiles.get("Stale check").last_test.stale is True  # type: ignore[union-attr]


def test_bind_form_names_a_bad_process_and_a_missing_profile_together(admin: TestClient) -> None:
    token = _csrf(admin.get("/settings/email/processes").text)
    response = admin.post(
        "/settings/email/processes/bind",
        data={"csrf_token": token, "process": "", "profile": ""},
    )
    assert response.status_code == 422
    assert "must not be empty" in response.text
    assert "choose one of the profiles" in response.text


def test_audit_log_speaks_words_not_python(admin: TestClient) -> None:
    from postroom.web.views.audit import describe

    assert describe({"ok": False, "kind": "smtp"}) == ["result: failed", "kind: smtp"]
    assert describe({"force": True}) == ["force: yes"]
    html = admin.get("/settings/email/audit").text
    # the filter's kinds and each row's target type
    assert "Oauth2 config" not in html and "OAuth2 configuration" in html


def test_login_page_shows_commands_as_code_not_backticks(sqlite_app: Postroom) -> None:
    from postroom.web.render import Templates

    with _client(sqlite_app) as client:  # no admin yet: the page says how to make one
        html = client.get("/login").text
    assert "`" not in html
    assert "<code>postroom admin create NAME --password-stdin</code>" in html
    code_spans = Templates().env.filters["code_spans"]
    assert str(code_spans("run `a<b>` now")) == "run <code>a&lt;b&gt;</code> now"
    assert str(code_spans("<i>`x")) == "&lt;i&gt;`x"


def test_breadcrumb_matches_the_sidebar(admin: TestClient) -> None:
    # sidebar siblings of Email Settings are not shown as its children
    for url in (
        "/settings/email/outbox",
        "/settings/email/processes",
        "/settings/email/oauth2",
        "/settings/email/inbound",
        "/settings/email/actions",
        "/settings/email/templates",
        "/settings/email/subscriptions",
        "/settings/email/audit",
    ):
        html = admin.get(url).text
        crumbs = html[html.index('aria-label="Breadcrumb"') :]
        crumbs = crumbs[: crumbs.index("</nav>")]
        assert "Email Settings" not in crumbs, url
    html = admin.get("/settings/email/new").text  # a profile is a child of Email Settings
    crumbs = html[html.index('aria-label="Breadcrumb"') :]
    assert "Email Settings" in crumbs[: crumbs.index("</nav>")]
