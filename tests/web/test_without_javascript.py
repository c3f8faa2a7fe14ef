"""The core flow with JavaScript off: presets, Test SMTP and saving all work by plain forms."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.web.conftest import LiveServer, SmtpTarget, shot, sign_in

pytestmark = pytest.mark.mailservers


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(30_000)
    yield context.new_page()
    context.close()


def test_create_and_test_a_profile_without_javascript(
    page: Any, live_server: LiveServer, accounts: dict[str, Any], smtp_target: SmtpTarget
) -> None:
    base = live_server.url
    sign_in(page, base, *accounts["admin"])
    page.get_by_role("link", name="+ Create your first profile").click()
    assert "js" not in (page.locator("html").get_attribute("class") or "")

    page.get_by_label("Provider preset").select_option("sendgrid")
    page.get_by_role("button", name="Apply preset").click()
    expect(page.get_by_label("SMTP host")).to_have_value("smtp.sendgrid.net")
    expect(page.locator("#f-smtp-username")).to_have_value("apikey")
    expect(page.locator("#preset-note")).to_contain_text("SendGrid API key")
    shot(page, "nojs-preset-applied")

    page.get_by_label("Profile name").fill("Scheduled run reports")
    page.get_by_label("SMTP host").fill(smtp_target.host)
    page.get_by_label("SMTP port").fill(str(smtp_target.port))
    page.get_by_label("CA bundle (PEM)").first.fill(smtp_target.ca_pem)
    page.get_by_label("From address").fill(smtp_target.username)
    page.locator("#f-smtp-username").fill(smtp_target.username)
    page.locator("#f-smtp-password").fill("wrong-password")
    page.get_by_role("button", name="Test SMTP").click()
    page.wait_for_url(base + "/settings/email/new#result-smtp")
    expect(page.locator("#result-smtp .diag-error")).to_have_attribute("data-code", "auth_failed")
    # Everything typed is still there; the password only as "entered", sealed for the server.
    expect(page.get_by_label("Profile name")).to_have_value("Scheduled run reports")
    expect(page.locator(".secret-field").first).to_contain_text("entered, not saved yet")
    assert "wrong-password" not in page.content()
    shot(page, "nojs-profile-form-test-failed")

    page.locator("#f-smtp-password").fill(smtp_target.password)
    page.get_by_role("button", name="Test SMTP").click()
    expect(page.locator("#result-smtp .diagnosis")).to_have_attribute("data-ok", "true")
    shot(page, "nojs-profile-form-test-passed")

    # Saving without typing the password again keeps the one that was just tested.
    page.get_by_role("button", name="Create profile").click()
    expect(page.get_by_text("Profile 'Scheduled run reports' created.")).to_be_visible()
    spec = live_server.pr.profiles.spec_with_secrets("Scheduled run reports")
    assert spec.smtp.password == smtp_target.password
    assert spec.smtp.port == smtp_target.port

    # Testing the saved settings from the list keeps the result on the profile.
    page.get_by_role("link", name="Email Settings").first.click()
    page.get_by_role("button", name="Test SMTP of Scheduled run reports").click()
    expect(page.get_by_text("SMTP test of 'Scheduled run reports' passed.")).to_be_visible()
    row = page.get_by_role("row").filter(has_text="Scheduled run reports")
    expect(row).to_contain_text("Passed")
    shot(page, "nojs-email-settings-tested")
