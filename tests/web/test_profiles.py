"""Profiles in a real browser against the test Postfix: create, test, save, default, delete."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.web.conftest import LiveServer, SmtpTarget, shot, sign_in

pytestmark = pytest.mark.mailservers


def _profile(target: SmtpTarget, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "smtp": {
            "host": target.host,
            "port": target.port,
            "security": "starttls",
            "ca_bundle": target.ca_pem,
            "auth": "basic",
            "username": target.username,
            "password": target.password,
        },
        "sender": {"from_address": target.username, "from_name": name},
    }


def _fill_smtp(page: Any, target: SmtpTarget, *, password: str) -> None:
    page.get_by_label("SMTP host").fill(target.host)
    page.get_by_label("SMTP port").fill(str(target.port))
    page.get_by_label("Security", exact=True).first.select_option("starttls")
    page.get_by_label("CA bundle (PEM)").first.fill(target.ca_pem)
    page.get_by_label("From address").fill(target.username)
    page.get_by_label("Method", exact=True).select_option("basic")
    page.locator("#f-smtp-username").fill(target.username)
    page.locator("#f-smtp-password").fill(password)


def test_first_profile_is_tested_fixed_and_saved(
    page: Any, live_server: LiveServer, accounts: dict[str, Any], smtp_target: SmtpTarget
) -> None:
    base = live_server.url
    sign_in(page, base, *accounts["admin"])
    expect(page.get_by_role("heading", name="No email profiles configured")).to_be_visible()
    page.get_by_role("link", name="+ Create your first profile").click()
    page.wait_for_url(base + "/settings/email/new")
    expect(page.get_by_text("Configure IMAP only if your deployment uses receiving")).to_be_hidden()
    shot(page, "profile-form-new")

    page.get_by_label("Profile name").fill("QA alerts")
    _fill_smtp(page, smtp_target, password="not-the-password")
    page.get_by_role("button", name="Test SMTP").click()
    result = page.locator("#result-smtp")
    expect(result.locator(".diagnosis")).to_have_attribute("data-ok", "false", timeout=30_000)
    expect(result.locator(".diag-error")).to_have_attribute("data-code", "auth_failed")
    expect(result).to_contain_text("The server refused the username or password")
    expect(result.locator('.step.failed[data-step="auth"]')).to_be_visible()
    expect(result.locator('.step.ok[data-step="tls"]')).to_be_visible()
    assert page.url == base + "/settings/email/new"  # shown in place, nothing saved
    assert live_server.pr.profiles.list() == []
    shot(page, "profile-form-test-failed")

    page.locator("#f-smtp-password").fill(smtp_target.password)
    page.get_by_role("button", name="Test SMTP").click()
    expect(result.locator(".diagnosis")).to_have_attribute("data-ok", "true", timeout=30_000)
    expect(result).to_contain_text("SMTP test passed")
    for step in ("connect", "starttls", "tls", "auth"):
        expect(result.locator(f'.step.ok[data-step="{step}"]')).to_be_visible()
    shot(page, "profile-form-test-passed")

    page.get_by_role("button", name="Create profile").click()
    expect(
        page.get_by_role("status").filter(has_text="Profile 'QA alerts' created.")
    ).to_be_visible()
    # The stored password is shown as "set", never as text.
    expect(page.locator(".secret-field").first).to_contain_text("set")
    assert page.locator("#f-smtp-password").get_attribute("value") is None
    assert smtp_target.password not in page.content()
    shot(page, "profile-edit-saved")

    saved = live_server.pr.profiles.get("QA alerts")
    assert saved.smtp["host"] == smtp_target.host and saved.smtp["password_set"]
    page.get_by_role("link", name="Email Settings").first.click()
    row = page.get_by_role("row").filter(has_text="QA alerts")
    expect(row).to_contain_text(f"{smtp_target.host}:{smtp_target.port}")
    expect(row).to_contain_text("STARTTLS")
    shot(page, "email-settings-list")


def test_edit_keeps_the_stored_password_when_testing_and_saving(
    page: Any, live_server: LiveServer, accounts: dict[str, Any], smtp_target: SmtpTarget
) -> None:
    profile = live_server.pr.profiles.create(_profile(smtp_target, "Keep secret"))
    sign_in(page, live_server.url, *accounts["admin"])
    page.goto(f"{live_server.url}/settings/email/profiles/{profile.id}")
    # JS hides the password input behind "Change" while a password is stored.
    expect(page.locator("#f-smtp-password")).to_be_hidden()
    page.get_by_label("From display name").fill("Renamed sender")
    page.get_by_role("button", name="Test SMTP").click()
    expect(page.locator("#result-smtp .diagnosis")).to_have_attribute(
        "data-ok", "true", timeout=30_000
    )
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Profile 'Keep secret' saved.")).to_be_visible()
    spec = live_server.pr.profiles.spec_with_secrets("Keep secret")
    assert spec.smtp.password == smtp_target.password
    assert spec.sender.from_name == "Renamed sender"

    page.get_by_role("button", name="Change").first.click()
    expect(page.locator("#f-smtp-password")).to_be_focused()


def test_invalid_fields_are_shown_at_their_inputs(
    page: Any, live_server: LiveServer, accounts: dict[str, Any]
) -> None:
    sign_in(page, live_server.url, *accounts["admin"])
    page.goto(live_server.url + "/settings/email/new")
    page.get_by_label("Profile name").fill("Broken")
    page.get_by_label("SMTP host").fill("smtp.example.com")
    page.get_by_label("SMTP port").fill("70000")
    page.get_by_label("From address").fill("not an address")
    page.locator("#f-smtp-username").fill("someone")
    page.locator("#f-smtp-password").fill("pw-typed-once")
    page.get_by_label("Connection timeout (seconds)").first.fill("")
    page.get_by_role("button", name="Create profile").click()
    expect(page.locator("#error-summary")).to_be_visible()
    expect(page.locator("#f-smtp-port")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-smtp-port-error")).to_have_text("must be at most 65535")
    expect(page.locator("#f-sender-from-address")).to_have_attribute("aria-invalid", "true")
    # Values are kept; the typed password comes back sealed, not as text.
    expect(page.get_by_label("SMTP host")).to_have_value("smtp.example.com")
    expect(page.locator(".secret-field").first).to_contain_text("entered, not saved yet")
    assert "pw-typed-once" not in page.content()
    shot(page, "profile-form-invalid")

    page.get_by_label("SMTP port").fill("587")
    page.get_by_label("From address").fill("alerts@example.com")
    page.get_by_role("button", name="Create profile").click()
    expect(page.get_by_text("Profile 'Broken' created.")).to_be_visible()
    spec = live_server.pr.profiles.spec_with_secrets("Broken")
    assert spec.smtp.password == "pw-typed-once"
    assert spec.smtp.connect_timeout_s is None  # blank = no timeout


def test_set_default_bind_and_delete_refused_while_bound(
    page: Any, live_server: LiveServer, accounts: dict[str, Any], smtp_target: SmtpTarget
) -> None:
    base = live_server.url
    profile = live_server.pr.profiles.create(_profile(smtp_target, "Nightly reports"))
    sign_in(page, base, *accounts["admin"])

    row = page.get_by_role("row").filter(has_text="Nightly reports")
    page.get_by_label("More actions for Nightly reports").click()
    row.get_by_role("button", name="Set Nightly reports as system default").click()
    expect(page.get_by_text("'Nightly reports' is now the system default profile.")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="Nightly reports")).to_contain_text("Default")
    assert live_server.pr.get_default() == "Nightly reports"

    page.get_by_role("link", name="Process bindings").click()
    page.get_by_label("Process name").last.fill("invoice-approval")
    page.get_by_label("Profile", exact=True).select_option("Nightly reports")
    page.get_by_role("button", name="Bind", exact=True).click()
    expect(page.get_by_text("Process 'invoice-approval' now uses profile")).to_be_visible()
    page.get_by_label("Process name").first.fill("invoice-approval")
    page.get_by_role("button", name="Explain").click()
    expect(page.locator("#explanation")).to_contain_text(
        "Process 'invoice-approval' is bound to profile 'Nightly reports'."
    )
    shot(page, "processes-explain")

    page.goto(f"{base}/settings/email/profiles/{profile.id}/delete")
    expect(page.get_by_text("Process invoice-approval is bound to it.")).to_be_visible()
    expect(page.get_by_text("system default")).to_have_count(2)
    shot(page, "profile-delete-confirm")
    page.get_by_role("button", name="Delete profile").click()
    expect(page.get_by_role("alert")).to_contain_text("Nothing was changed")
    assert live_server.pr.profiles.get("Nightly reports")
    assert live_server.pr.explain("invoice-approval").profile == "Nightly reports"

    page.get_by_label("Delete anyway").check()
    page.get_by_role("button", name="Delete profile").click()
    expect(
        page.get_by_text("Profile 'Nightly reports' deleted. Unbound: invoice-approval.")
    ).to_be_visible()
    assert live_server.pr.get_default() is None
    assert live_server.pr.bindings.list(profile="Nightly reports") == []


def test_disable_asks_first_when_processes_depend_on_it(
    page: Any, live_server: LiveServer, accounts: dict[str, Any], smtp_target: SmtpTarget
) -> None:
    live_server.pr.profiles.create(_profile(smtp_target, "Alerts"))
    live_server.pr.bind("alerting", "Alerts")
    sign_in(page, live_server.url, *accounts["admin"])
    page.get_by_label("More actions for Alerts").click()
    page.get_by_role("button", name="Disable Alerts").click()
    expect(page.get_by_role("heading", name="Disable profile “Alerts”?")).to_be_visible()
    page.get_by_label("Disable anyway").check()
    page.get_by_role("button", name="Disable profile").click()
    expect(page.get_by_text("Profile 'Alerts' disabled.")).to_be_visible()
    assert live_server.pr.profiles.get("Alerts").enabled is False
    page.get_by_label("More actions for Alerts").click()
    page.get_by_role("button", name="Enable Alerts").click()
    expect(page.get_by_text("Profile 'Alerts' enabled.")).to_be_visible()


def test_test_imap_runs_on_the_unsaved_imap_section(
    page: Any, live_server: LiveServer, accounts: dict[str, Any], smtp_target: SmtpTarget
) -> None:
    profile = live_server.pr.profiles.create(_profile(smtp_target, "Inbound approvals"))
    sign_in(page, live_server.url, *accounts["admin"])
    page.goto(f"{live_server.url}/settings/email/profiles/{profile.id}")
    imap = page.locator("details.card")
    expect(imap.get_by_text("Configure IMAP only if your deployment uses receiving")).to_be_hidden()
    imap.locator("summary").click()
    expect(
        imap.get_by_text("Configure IMAP only if your deployment uses receiving")
    ).to_be_visible()
    page.get_by_label("Use IMAP with this profile").check()
    page.get_by_label("IMAP host").fill(smtp_target.host)
    page.get_by_label("IMAP port").fill(str(smtp_target.imaps_port))
    imap.get_by_label("Security").select_option("tls")
    imap.get_by_label("CA bundle (PEM)").fill(smtp_target.ca_pem)
    page.locator("#f-imap-username").fill(smtp_target.username)
    page.locator("#f-imap-password").fill("wrong-imap-password")
    page.get_by_role("button", name="Test IMAP").click()
    result = page.locator("#result-imap")
    expect(result.locator(".diag-error")).to_have_attribute(
        "data-code", "auth_failed", timeout=30_000
    )
    page.locator("#f-imap-password").fill(smtp_target.password)
    page.get_by_role("button", name="Test IMAP").click()
    expect(result.locator(".diagnosis")).to_have_attribute("data-ok", "true", timeout=30_000)
    expect(result.locator('.step.ok[data-step="select"]')).to_be_visible()
    shot(page, "profile-form-imap-test-passed")
    assert live_server.pr.profiles.get("Inbound approvals").imap is None  # nothing saved

    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Profile 'Inbound approvals' saved.")).to_be_visible()
    saved = live_server.pr.profiles.spec_with_secrets("Inbound approvals")
    assert saved.imap is not None and saved.imap.password == smtp_target.password


def test_form_refuses_secret_references_inline(
    page: Any, live_server: LiveServer, accounts: dict[str, Any], smtp_target: SmtpTarget
) -> None:
    """An admin's form is no file reader: env:/file: are refused at the input, unsaved."""
    key_file = live_server.pr.settings.key_file
    sign_in(page, live_server.url, *accounts["admin"])
    page.goto(live_server.url + "/settings/email/new")
    page.get_by_label("Profile name").fill("Exfiltrate")
    _fill_smtp(page, smtp_target, password="env:POSTROOM_SECRET_KEYS")
    page.get_by_role("button", name="Test SMTP").click()
    result = page.locator("#result-smtp")
    expect(result.get_by_role("alert")).to_contain_text("only the operator may set")
    expect(result.locator(".diagnosis")).to_have_count(0)  # nothing was contacted
    page.locator("#f-smtp-password").fill(f"file:{key_file}")
    page.get_by_role("button", name="Create profile").click()
    expect(page.locator("#f-smtp-password")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-smtp-password-error")).to_contain_text("only the operator may set")
    assert str(key_file) not in page.locator("#error-summary").inner_text()
    assert all(p.name != "Exfiltrate" for p in live_server.pr.profiles.list())


def test_a_changed_server_needs_the_password_again_in_tests_and_on_save(
    page: Any, live_server: LiveServer, accounts: dict[str, Any], smtp_target: SmtpTarget
) -> None:
    """The stored password is never sent to a host or port other than the one it was saved for."""
    from tests.integration.smtp_fakes import closed_port

    profile = live_server.pr.profiles.create(_profile(smtp_target, "Stays home"))
    sign_in(page, live_server.url, *accounts["admin"])
    page.goto(f"{live_server.url}/settings/email/profiles/{profile.id}")
    page.get_by_label("SMTP port").fill(str(closed_port()))
    page.get_by_role("button", name="Test SMTP").click()
    result = page.locator("#result-smtp")
    expect(result.get_by_role("alert")).to_contain_text("type the password again")
    expect(result.locator(".diagnosis")).to_have_count(0)
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#f-smtp-password-error")).to_contain_text("type the password again")
    assert live_server.pr.profiles.get("Stays home").smtp["port"] == smtp_target.port
    # the field is open, ready for the password; typed again, the new server is saved
    page.locator("#f-smtp-password").fill("typed-again")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Profile 'Stays home' saved.")).to_be_visible()
    assert live_server.pr.profiles.get("Stays home").smtp["port"] != smtp_target.port
    assert live_server.pr.profiles.spec_with_secrets("Stays home").smtp.password == "typed-again"


def test_oauth2_form_refuses_references_and_asks_for_the_secret_when_the_endpoint_moves(
    page: Any, live_server: LiveServer, accounts: dict[str, Any]
) -> None:
    sign_in(page, live_server.url, *accounts["admin"])
    page.goto(live_server.url + "/settings/email/oauth2/new")
    page.get_by_label("Name").fill("Corp IdP")
    page.get_by_label("Provider").select_option("generic")
    page.get_by_label("Grant").select_option("client_credentials")
    page.get_by_label("Client ID").fill("client-123")
    page.get_by_label("Token URL").fill("https://idp.example.com/token")
    page.get_by_label("Client secret").fill("env:POSTROOM_SECRET_KEYS")
    page.get_by_role("button", name="Create configuration").click()
    expect(page.locator("#f-client-secret-error")).to_contain_text("only the operator may set")
    assert all(c.name != "Corp IdP" for c in live_server.pr.oauth2.list())

    page.get_by_label("Client secret").fill("a-real-client-secret")
    page.get_by_role("button", name="Create configuration").click()
    expect(page.get_by_text("OAuth2 configuration 'Corp IdP' created.")).to_be_visible()
    config = live_server.pr.oauth2.get("Corp IdP")
    page.goto(f"{live_server.url}/settings/email/oauth2/{config.id}")
    page.get_by_label("Token URL").fill("https://elsewhere.example.net/token")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#f-client-secret-error")).to_contain_text("type the client secret again")
    assert live_server.pr.oauth2.get("Corp IdP").token_url == "https://idp.example.com/token"
