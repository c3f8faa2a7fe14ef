"""First contact: an anonymous visitor, the one-time setup link, the empty state."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from postroom.web import setup_url
from tests.web.conftest import LiveServer, shot


def test_anonymous_visitor_is_sent_to_sign_in(page: Any, live_server: LiveServer) -> None:
    page.goto(live_server.url + "/settings/email/processes")
    assert page.url == live_server.url + "/login?next=/settings/email/processes"
    expect(page.get_by_role("heading", name="Sign in to postroom")).to_be_visible()
    # With no admin yet, the page says how to get one instead of offering a default password.
    expect(page.get_by_text("No admin account exists yet")).to_be_visible()
    shot(page, "login-no-admin-yet")


def test_setup_link_creates_the_first_admin_once(page: Any, live_server: LiveServer) -> None:
    url = setup_url(live_server.pr, base_url=live_server.url)
    assert url is not None and url.startswith(live_server.url + "/setup/")

    page.goto(url)
    shot(page, "setup-first-admin")
    page.get_by_label("Username").fill("first-admin")
    page.get_by_label("Password", exact=True).fill("first-admin-password")
    page.get_by_label("Repeat password").fill("first-admin-passwort")
    page.get_by_label("Recovery email").fill("no-at-sign")
    page.get_by_role("button", name="Create admin and sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("does not match the password")
    expect(page.get_by_role("alert")).to_contain_text("Recovery email")  # both at once
    shot(page, "setup-first-admin-error")
    assert not live_server.pr.accounts.has_admin()

    # the optional recovery email is checked too, and the link survives a refused form
    page.get_by_label("Password", exact=True).fill("first-admin-password")
    page.get_by_label("Repeat password").fill("first-admin-password")
    page.get_by_label("Recovery email").fill("not an address")
    page.get_by_role("button", name="Create admin and sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Recovery email")
    assert not live_server.pr.accounts.has_admin()

    page.get_by_label("Password", exact=True).fill("first-admin-password")
    page.get_by_label("Repeat password").fill("first-admin-password")
    page.get_by_label("Recovery email").fill("first@example.com")
    page.get_by_role("button", name="Create admin and sign in").click()
    page.wait_for_url(live_server.url + "/settings/email")
    assert live_server.pr.accounts.get_admin("first-admin").email == "first@example.com"

    # Straight to the empty state, with the seed's words.
    expect(page.get_by_role("heading", name="No email profiles configured")).to_be_visible()
    expect(page.get_by_text("enables SMTP and IMAP for automation workflows")).to_be_visible()
    expect(page.get_by_role("link", name="+ Create your first profile")).to_be_visible()
    crumbs = page.get_by_role("navigation", name="Breadcrumb").get_by_role("listitem")
    expect(crumbs).to_have_text(["Settings", "Email", "Email Settings"])
    shot(page, "email-settings-empty")

    # The link is used up: opening it again leads to the sign-in page, and serve prints none.
    page.goto(url)
    assert page.url.startswith(live_server.url + "/settings/email") or "/login" in page.url
    assert setup_url(live_server.pr) is None
    assert live_server.pr.accounts.verify_admin("first-admin", "first-admin-password")


def test_root_leads_to_email_settings_and_sign_out_ends_the_session(
    page: Any, live_server: LiveServer
) -> None:
    live_server.pr.accounts.create_admin("second-admin", "second-admin-password")
    page.goto(live_server.url + "/")
    assert "/login" in page.url
    page.get_by_label("Username").fill("second-admin")
    page.get_by_label("Password").fill("second-admin-password")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(live_server.url + "/settings/email")

    cookies = page.context.cookies()
    session = next(c for c in cookies if c["name"] == "postroom_session")
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Lax"
    assert session["secure"] is False  # plain http on loopback; https sets Secure

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(live_server.url + "/login")
    expect(page.get_by_text("You are signed out.")).to_be_visible()

    # The old cookie is refused from now on.
    page.context.add_cookies([session])
    page.goto(live_server.url + "/settings/email")
    assert "/login" in page.url


def test_an_invalid_setup_link_says_what_to_do(page: Any, live_server: LiveServer) -> None:
    page.goto(live_server.url + "/setup/not-a-valid-token")
    # An admin exists by now, so the link leads to sign-in with a note.
    assert "/login" in page.url
    expect(page.get_by_text("already set up")).to_be_visible()
