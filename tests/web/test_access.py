"""Who may do what: viewers read only, forms need their CSRF token, sign-in is throttled."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.conftest import clear_default
from tests.web.conftest import LiveServer, shot, sign_in


def _profile(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "smtp": {
            "host": "smtp.example.com",
            "port": 587,
            "auth": "basic",
            "username": "u@example.com",
            "password": "CANARY-viewer-secret",
        },
        "sender": {"from_address": "u@example.com"},
    }


def _csrf(page: Any) -> str:
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    assert token
    return str(token)


def test_viewer_sees_everything_and_changes_nothing(
    page: Any, live_server: LiveServer, accounts: dict[str, Any]
) -> None:
    pr = live_server.pr
    profile = pr.profiles.create(_profile("Read only"))
    clear_default(pr)  # it became the default as the first profile; the viewer must not set it
    sign_in(page, live_server.url, *accounts["viewer"])
    expect(page.get_by_role("row").filter(has_text="Read only")).to_be_visible()
    expect(page.get_by_role("link", name="+ New profile")).to_have_count(0)
    expect(page.get_by_role("button", name="Set Read only as system default")).to_have_count(0)
    shot(page, "email-settings-viewer")

    page.get_by_role("link", name="View").first.click()
    expect(page.get_by_text("Your account has the viewer role")).to_be_visible()
    expect(page.get_by_label("SMTP host")).to_be_disabled()
    expect(page.locator("button[value=save]")).to_have_count(0)
    shot(page, "profile-form-viewer")

    # Even a well-formed POST with a valid token is refused.
    token = _csrf(page)
    base = f"{live_server.url}/settings/email/profiles/{profile.id}"
    for url, form in (
        (base + "/default", {}),
        (base + "/enabled", {"enabled": "0"}),
        (base + "/delete", {"force": "1"}),
        (live_server.url + "/settings/email/new", {"name": "Sneaky", "smtp.host": "x.example"}),
        (
            live_server.url + "/settings/email/processes/bind",
            {"process": "p", "profile": "Read only"},
        ),
    ):
        response = page.request.post(url, form={"csrf_token": token, **form}, max_redirects=0)
        assert response.status == 403, url
        assert "viewer role" in response.text()
    assert pr.get_default() is None
    assert pr.profiles.get("Read only").enabled
    assert [p.name for p in pr.profiles.list()].count("Sneaky") == 0
    assert pr.bindings.list(profile="Read only") == []

    page.goto(live_server.url + "/settings/email/processes")
    expect(page.get_by_role("button", name="Bind")).to_have_count(0)
    page.goto(live_server.url + "/settings/email/oauth2")
    expect(page.get_by_role("link", name="+ New configuration")).to_have_count(0)


def test_a_form_without_its_csrf_token_is_refused(
    page: Any, live_server: LiveServer, accounts: dict[str, Any]
) -> None:
    pr = live_server.pr
    profile = pr.profiles.create(_profile("Csrf target"))
    clear_default(pr)  # the first profile became the default (issue 22 item 4)
    sign_in(page, live_server.url, *accounts["admin"])
    page.goto(f"{live_server.url}/settings/email/profiles/{profile.id}")
    page.get_by_label("Profile name").fill("Renamed by a forged form")
    page.evaluate("document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())")
    page.get_by_role("button", name="Save").last.click()
    expect(page.get_by_role("heading", name="This form has expired")).to_be_visible()
    shot(page, "csrf-refused")
    assert pr.profiles.get("Csrf target").name == "Csrf target"

    # A wrong token, and a request from another site carrying the cookie, fare no better.
    for form in ({"csrf_token": "forged"}, {}):
        response = page.request.post(
            f"{live_server.url}/settings/email/profiles/{profile.id}/default",
            form=form,
            max_redirects=0,
        )
        assert response.status == 403
    assert pr.get_default() != "Csrf target"


def test_sign_in_is_throttled_after_five_failures(page: Any, live_server: LiveServer) -> None:
    live_server.pr.accounts.create_admin("throttled", "throttled-password-1")
    page.goto(live_server.url + "/login")
    for _ in range(5):
        page.get_by_label("Username").fill("throttled")
        page.get_by_label("Password").fill("wrong-password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    # The right password now waits too: guessing gets nowhere.
    page.get_by_label("Password").fill("throttled-password-1")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Too many failed sign-ins")
    expect(page.get_by_role("alert")).to_contain_text(re.compile(r"Wait 1[45] minutes"))
    shot(page, "login-throttled")
    assert "/login" in page.url


def test_every_form_field_has_a_label_and_no_secret_reaches_the_page(
    page: Any, live_server: LiveServer, accounts: dict[str, Any]
) -> None:
    pr = live_server.pr
    profile = pr.profiles.create(_profile("Labelled"))
    sign_in(page, live_server.url, *accounts["admin"])
    for path in (
        "/settings/email/new",
        f"/settings/email/profiles/{profile.id}",
        "/settings/email/processes",
        "/settings/email/oauth2/new",
        "/settings/email/audit",
        "/settings/email/outbox",
        "/settings/email/actions",
        "/settings/email/templates",
        "/settings/email/templates/password_reset",
        "/settings/email/templates/-/new",
        "/settings/email/subscriptions",
        "/account",
        "/forgot-password",
    ):
        page.goto(live_server.url + path)
        unlabelled = page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea')]
                .filter(e => e.type !== 'hidden' && !e.closest('[aria-hidden=true]'))
                .filter(e => !(e.labels && e.labels.length))
                .map(e => e.name || e.id)"""
        )
        assert unlabelled == [], f"{path}: inputs without a <label>: {unlabelled}"
        assert "CANARY-viewer-secret" not in page.content()
    passwords = page.locator("input[type=password]")
    for i in range(passwords.count()):
        assert passwords.nth(i).get_attribute("value") is None


def test_keyboard_alone_reaches_test_smtp(
    page: Any, live_server: LiveServer, accounts: dict[str, Any]
) -> None:
    sign_in(page, live_server.url, *accounts["admin"])
    page.goto(live_server.url + "/settings/email/new")
    page.get_by_label("Profile name").focus()
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == "Test SMTP":
            break
    else:
        raise AssertionError("Test SMTP is not reachable with Tab")


def test_oauth2_configurations_and_the_audit_log(
    page: Any, live_server: LiveServer, accounts: dict[str, Any]
) -> None:
    sign_in(page, live_server.url, *accounts["admin"])
    page.get_by_role("link", name="OAuth2").click()
    page.get_by_role("link", name="+ New configuration").first.click()
    page.get_by_label("Name").fill("M365 alerts mailbox")
    page.get_by_label("Provider").select_option("microsoft")
    page.get_by_label("Client ID").fill("00000000-1111-2222-3333-444444444444")
    page.get_by_label("Client secret").fill("CANARY-client-secret")
    page.get_by_label("Scopes").fill("https://outlook.office365.com/SMTP.Send offline_access")
    page.get_by_label("Mailbox").fill("alerts@example.com")
    shot(page, "oauth2-form")
    page.get_by_role("button", name="Create configuration").click()
    expect(page.get_by_text("OAuth2 configuration 'M365 alerts mailbox' created.")).to_be_visible()
    row = page.get_by_role("row").filter(has_text="M365 alerts mailbox")
    expect(row).to_contain_text("set")
    shot(page, "oauth2-list")
    config = live_server.pr.oauth2.get("M365 alerts mailbox")
    assert config.tenant == "common" and config.client_secret_set

    row.get_by_role("link", name="Delete M365 alerts mailbox").click()
    page.get_by_role("button", name="Delete configuration").click()
    expect(page.get_by_text("OAuth2 configuration 'M365 alerts mailbox' deleted.")).to_be_visible()

    page.get_by_role("link", name="Audit log").click()
    expect(
        page.get_by_role("row").filter(has_text="OAuth2 configuration M365 alerts mailbox").first
    ).to_be_visible()
    created = page.get_by_role("row").filter(has_text="create").filter(has_text="M365 alerts")
    created.get_by_text(re.compile(r"^\d+ fields$")).click()
    expect(page.get_by_text("client_secret: changed")).to_be_visible()
    assert "CANARY-client-secret" not in page.content()
    shot(page, "audit-log")


def test_pages_fit_a_phone_screen(
    browser: Any, live_server: LiveServer, accounts: dict[str, Any]
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page = context.new_page()
        live_server.pr.profiles.create(_profile("On the phone"))
        sign_in(page, live_server.url, *accounts["admin"])
        for path, name in (
            ("/settings/email", "email-settings-phone"),
            ("/settings/email/new", "profile-form-phone"),
            ("/settings/email/templates", "templates-list-phone"),
            ("/settings/email/templates/password_reset", "template-edit-phone"),
            ("/settings/email/subscriptions", "subscriptions-phone"),
            ("/account", "account-phone"),
        ):
            page.goto(live_server.url + path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{path} scrolls sideways ({width}px)"
            for frame in page.locator("iframe").all():  # paint previews before the picture
                frame.scroll_into_view_if_needed()
                page.wait_for_timeout(200)
            page.evaluate("window.scrollTo(0, 0)")
            shot(page, name)
    finally:
        context.close()
