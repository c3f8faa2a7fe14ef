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
