"""Your own password on /account, and the admins' pages for accounts and API keys."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.web.conftest import LiveServer, shot, sign_in


def test_changing_your_password_lists_every_problem_and_ends_your_other_sessions(
    browser: Any, page: Any, live_server: LiveServer
) -> None:
    pr = live_server.pr
    pr.accounts.create_admin("pat", "pat-password-123", role="viewer")
    other = browser.new_context()
    try:
        elsewhere = other.new_page()
        sign_in(elsewhere, live_server.url, "pat", "pat-password-123")
        sign_in(page, live_server.url, "pat", "pat-password-123")
        page.goto(live_server.url + "/account")

        page.get_by_label("Current password", exact=True).first.fill("wrong-password-1")
        page.get_by_label("New password", exact=True).fill("short")
        page.get_by_label("Repeat new password").fill("different")
        page.get_by_role("button", name="Change password").click()
        summary = page.get_by_role("alert")
        expect(summary).to_contain_text("is not your current password")
        expect(summary).to_contain_text("must be at least 12 characters")
        expect(summary).to_contain_text("does not match the new password")
        assert page.locator("input[type=password][value]").count() == 0
        assert pr.accounts.verify_admin("pat", "pat-password-123") is not None
        shot(page, "account-password-errors")

        page.get_by_label("Current password", exact=True).first.fill("pat-password-123")
        page.get_by_label("New password", exact=True).fill("pat-new-password-456")
        page.get_by_label("Repeat new password").fill("pat-new-password-456")
        page.get_by_role("button", name="Change password").click()
        expect(page.get_by_text("Your password is changed.")).to_be_visible()
        page.goto(live_server.url + "/account")  # still signed in here
        expect(page.get_by_role("heading", name="Your account")).to_be_visible()

        elsewhere.goto(live_server.url + "/account")  # signed out there
        assert "/login" in elsewhere.url
        assert pr.accounts.verify_admin("pat", "pat-new-password-456") is not None
        assert pr.accounts.verify_admin("pat", "pat-password-123") is None
        entry = pr.audit.list(target_type="admin", target="pat")[0]
        assert (entry.action, entry.actor) == ("set_password", "web:pat")
    finally:
        other.close()


def _set_password_through(page: Any, url: str, password: str) -> None:
    page.goto(url)
    page.get_by_label("New password", exact=True).fill(password)
    page.get_by_label("Repeat the new password").fill(password)
    page.get_by_role("button", name="Set new password").click()


def test_users_page_roles_disable_reset_links_and_invitations(
    browser: Any, page: Any, live_server: LiveServer
) -> None:
    pr = live_server.pr
    base = live_server.url
    pr.accounts.create_admin("uma", "uma-password-123", role="admin")
    pr.accounts.create_admin("vic", "vic-password-123", role="viewer", email="vic@example.com")
    other = browser.new_context()
    try:
        # a viewer gets the 403 page, and no link to it
        viewer = other.new_page()
        sign_in(viewer, base, "vic", "vic-password-123")
        expect(viewer.get_by_role("link", name="Users")).to_have_count(0)
        assert viewer.goto(base + "/settings/users").status == 403

        sign_in(page, base, "uma", "uma-password-123")
        page.get_by_role("link", name="Users").click()
        page.wait_for_url(base + "/settings/users")
        vic_row = page.get_by_role("row").filter(has_text="vic@example.com")
        expect(vic_row).to_contain_text("Enabled")

        # the only enabled admin may not demote herself
        uma_row = page.get_by_role("row").filter(has_text="uma")
        uma_row.get_by_label("Role of uma", exact=True).select_option("viewer")
        uma_row.get_by_role("button", name="Change the role of uma").click()
        expect(page.get_by_text("'uma' is the only enabled admin")).to_be_visible()

        vic_row.get_by_label("Role of vic", exact=True).select_option("admin")
        vic_row.get_by_role("button", name="Change the role of vic").click()
        expect(page.get_by_text("'vic' is now admin.")).to_be_visible()
        assert pr.accounts.get_admin("vic").role == "admin"

        # disabling ends vic's session at once
        page.get_by_role("button", name="Disable vic").click()
        expect(page.get_by_text("'vic' is disabled")).to_be_visible()
        viewer.goto(base + "/account")
        assert "/login" in viewer.url
        page.get_by_role("button", name="Enable vic").click()
        expect(page.get_by_text("'vic' is enabled again.")).to_be_visible()

        # a reset link shown once, usable once
        page.get_by_role("button", name="Show a reset link for vic").click()
        link = page.get_by_label("One-time link", exact=True).input_value()
        assert "/reset/" in link
        shot(page, "users-reset-link")
        _set_password_through(viewer, link, "vic-new-password-9")
        assert pr.accounts.verify_admin("vic", "vic-new-password-9") is not None

        # invitations: every problem at once, then no default profile → the link is shown
        page.goto(base + "/settings/users")
        page.get_by_label("Email address").fill("not an address")
        page.get_by_role("button", name="Send invitation").click()
        summary = page.get_by_role("alert")
        expect(summary).to_contain_text("Username")
        expect(summary).to_contain_text("Email address")
        page.get_by_label("Username").fill("nia")
        page.get_by_label("Email address").fill("nia@example.com")
        page.get_by_label("Role", exact=True).select_option("viewer")
        page.get_by_role("button", name="Send invitation").click()
        expect(page.get_by_text("No mail was sent")).to_be_visible()
        invite = page.get_by_label("One-time link", exact=True).input_value()
        assert pr.accounts.verify_admin("nia", "") is None
        _set_password_through(viewer, invite, "nia-password-123")
        sign_in(viewer, base, "nia", "nia-password-123")

        # with a default profile, reset links and invitations are queued as mail
        pr.profiles.create(
            {
                "name": "System mail",
                "smtp": {"host": "127.0.0.1", "port": 9, "security": "none", "auth": "none"},
                "sender": {"from_address": "postroom@example.com"},
            }
        )
        pr.set_default("System mail")
        page.goto(base + "/settings/users")
        page.get_by_role("button", name="Mail a reset link to vic").click()
        expect(
            page.get_by_text("A reset link for 'vic' was mailed to vic@example.com.")
        ).to_be_visible()
        page.get_by_label("Username").fill("otto")
        page.get_by_label("Email address").fill("otto@example.com")
        page.get_by_role("button", name="Send invitation").click()
        expect(
            page.get_by_text("Invitation for 'otto' mailed to otto@example.com.")
        ).to_be_visible()
        queued = [m.recipients for m in pr.outbox.list()]
        assert ["vic@example.com"] in queued and ["otto@example.com"] in queued

        actions = {(e.action, e.target) for e in pr.audit.list(target_type="admin")}
        assert {("update", "vic"), ("disable", "vic"), ("enable", "vic"),
                ("issue_reset_link", "vic"), ("invite", "nia"), ("invite", "otto"),
                ("reset_password", "vic")} <= actions  # fmt: skip
        shot(page, "users")
    finally:
        other.close()


def test_users_page_fits_a_phone_screen(browser: Any, live_server: LiveServer) -> None:
    if not live_server.pr.accounts.has_admin() or "phil" not in {
        a.username for a in live_server.pr.accounts.list_admins()
    }:
        live_server.pr.accounts.create_admin("phil", "phil-password-123", role="admin")
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page = context.new_page()
        sign_in(page, live_server.url, "phil", "phil-password-123")
        for path, name in (("/settings/users", "users-phone"), ("/account", "account-phone")):
            page.goto(live_server.url + path)
            expect(page.get_by_role("button").first).to_be_visible()  # a page, not a 404
            assert page.locator("h1").first.inner_text() in ("Users", "Your account")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{path} scrolls sideways ({width}px)"
            shot(page, name)
    finally:
        context.close()


def test_api_keys_are_created_shown_once_listed_and_revoked_in_the_ui(
    browser: Any, page: Any, live_server: LiveServer
) -> None:
    pr = live_server.pr
    base = live_server.url
    pr.accounts.create_admin("kim", "kim-password-123", role="admin")
    pr.accounts.create_admin("kai", "kai-password-123", role="viewer")
    other = browser.new_context()
    try:
        viewer = other.new_page()
        sign_in(viewer, base, "kai", "kai-password-123")
        expect(viewer.get_by_role("link", name="API keys")).to_have_count(0)
        assert viewer.goto(base + "/settings/apikeys").status == 403
    finally:
        other.close()

    sign_in(page, base, "kim", "kim-password-123")
    page.get_by_role("link", name="API keys").click()
    page.wait_for_url(base + "/settings/apikeys")

    # every problem at once, nothing created
    page.get_by_label("Role").select_option("admin")
    page.get_by_label("Processes").fill("nightly")
    page.get_by_label("Profiles").fill("No such profile")
    page.get_by_role("button", name="Create API key").click()
    summary = page.get_by_role("alert")
    expect(summary).to_contain_text("Name")
    expect(summary).to_contain_text("only a sender key can be limited")
    expect(summary).to_contain_text("no profile named 'No such profile'")
    before = {k.name for k in pr.accounts.list_api_keys()}

    page.get_by_label("Name", exact=True).fill("n8n-nightly")
    page.get_by_label("Role").select_option("sender")
    page.get_by_label("Processes").fill("nightly, weekly")
    page.get_by_label("Profiles").fill("")
    page.get_by_role("button", name="Create API key").click()
    key = page.get_by_label("New key").input_value()
    assert key.startswith("prk_")
    shot(page, "apikeys-created")
    assert {k.name for k in pr.accounts.list_api_keys()} - before == {"n8n-nightly"}

    # shown once: the list afterwards has the prefix only
    page.goto(base + "/settings/apikeys")
    assert key not in page.content()
    row = page.get_by_role("row").filter(has_text="n8n-nightly")
    expect(row).to_contain_text("sender")
    expect(row).to_contain_text("nightly, weekly")
    expect(row).to_contain_text("never")

    api = page.request.get(base + "/api/v1/messages", headers={"Authorization": f"Bearer {key}"})
    assert api.status == 200
    page.reload()
    expect(page.get_by_role("row").filter(has_text="n8n-nightly")).not_to_contain_text("never")

    page.get_by_role("button", name="Revoke API key n8n-nightly").click()
    expect(page.get_by_text("API key 'n8n-nightly' revoked")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="n8n-nightly")).to_contain_text("Revoked")
    api = page.request.get(base + "/api/v1/messages", headers={"Authorization": f"Bearer {key}"})
    assert api.status == 401

    entries = [
        (e.action, e.actor) for e in pr.audit.list(target_type="api_key", target="n8n-nightly")
    ]
    assert ("create", "web:kim") in entries and ("revoke", "web:kim") in entries


def test_api_keys_page_fits_a_phone_screen(browser: Any, live_server: LiveServer) -> None:
    pr = live_server.pr
    pr.accounts.create_admin("pia", "pia-password-123", role="admin")
    pr.accounts.create_api_key("phone-key", role="sender", processes=["a-rather-long-process"])
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page = context.new_page()
        sign_in(page, live_server.url, "pia", "pia-password-123")
        page.goto(live_server.url + "/settings/apikeys")
        expect(page.get_by_role("row").filter(has_text="phone-key")).to_contain_text("sender")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"/settings/apikeys scrolls sideways ({width}px)"
        shot(page, "apikeys-phone")
    finally:
        context.close()
