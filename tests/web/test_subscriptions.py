"""Settings → Email → Subscriptions in a real browser: add (at once and as a summary),
field errors, remove; viewers read only; forms need their CSRF token."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.web.conftest import LiveServer, shot, sign_in

LIST = "/settings/email/subscriptions"


def row(page: Any, address: str) -> Any:
    return page.get_by_role("row").filter(has_text=address)


def test_subscriptions_are_added_with_filters_and_schedules_and_removed(
    page: Any, live_server: LiveServer, accounts: dict[str, Any]
) -> None:
    subscriptions = live_server.pr.notifications.subscriptions
    sign_in(page, live_server.url, *accounts["admin"])
    page.get_by_role("link", name="Subscriptions").click()
    page.wait_for_url(live_server.url + LIST)
    expect(page.get_by_role("heading", name="No subscriptions yet")).to_be_visible()

    # Immediate mail for failed nightly runs, with a filter (a single value is a list of one).
    page.get_by_label("Event").fill("run.failed")
    page.get_by_label("Process").fill("nightly-*")
    page.get_by_label("Recipient").fill("On call <oncall@example.com>")
    page.get_by_label("Filter (JSON)").fill('{"status": "failed", "counts.failed": [1, 2, 3]}')
    page.get_by_role("button", name="Add subscription").click()
    expect(page.get_by_text("gets mail at once for 'run.failed' events")).to_be_visible()
    first = subscriptions.list()[0]
    assert first.process == "nightly-*" and first.template == "run_finished"
    assert first.filter == {"status": ["failed"], "counts.failed": [1, 2, 3]}

    # A weekday summary in Berlin time, sent even when nothing happened.
    page.get_by_label("Event").fill("run.*")
    page.get_by_label("Recipient").fill("team-lead@example.com")
    page.get_by_label("Template").select_option("scheduled_summary")
    page.get_by_label("Schedule (cron)").fill("0 8 * * 1-5")
    page.get_by_label("Time zone").fill("Europe/Berlin")
    page.get_by_label("Send empty summaries").check()
    page.get_by_role("button", name="Add subscription").click()
    expect(page.get_by_text("gets a summary on '0 8 * * 1-5' (Europe/Berlin)")).to_be_visible()
    summary = row(page, "team-lead@example.com")
    expect(summary).to_contain_text("Summary 0 8 * * 1-5")
    expect(summary).to_contain_text("Europe/Berlin · also when empty · next in")
    expect(row(page, "oncall@example.com")).to_contain_text('status is "failed"')
    expect(row(page, "oncall@example.com")).to_contain_text("counts.failed is 1, 2 or 3")
    shot(page, "subscriptions")

    # Mistakes are named at their fields and keep what was typed.
    page.get_by_label("Event").fill("deploy.done")
    page.get_by_label("Recipient").fill("not an address")
    page.get_by_label("Filter (JSON)").fill("{status: failed}")
    page.get_by_label("Schedule (cron)").fill("every morning")
    page.get_by_role("button", name="Add subscription").click()
    summary_box = page.locator(".error-summary")
    expect(summary_box).to_contain_text("Filter is not valid JSON")
    expect(page.get_by_label("Filter (JSON)")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Event")).to_have_value("deploy.done")
    page.get_by_label("Filter (JSON)").fill("")
    page.get_by_role("button", name="Add subscription").click()
    expect(page.locator("#f-address-error")).to_be_visible()
    expect(page.locator("#f-schedule-error")).to_be_visible()
    page.get_by_label("Recipient").fill("ops@example.com")
    page.get_by_label("Schedule (cron)").fill("")
    page.get_by_label("Template").select_option("")
    page.get_by_role("button", name="Add subscription").click()
    expect(page.locator("#f-template-error")).to_contain_text("is required for events other than")
    shot(page, "subscriptions-errors")
    assert len(subscriptions.list()) == 2

    page.get_by_role("button", name=f"Remove subscription {first.id}").click()
    expect(page.get_by_text(f"Subscription {first.id} removed")).to_be_visible()
    expect(row(page, "oncall@example.com")).to_have_count(0)
    assert [s.address for s in subscriptions.list()] == ["team-lead@example.com"]


def test_viewers_see_subscriptions_and_change_nothing(
    page: Any, live_server: LiveServer, accounts: dict[str, Any]
) -> None:
    subscriptions = live_server.pr.notifications.subscriptions
    kept = subscriptions.add({"event": "alert.*", "address": "viewer-test@example.com"})
    sign_in(page, live_server.url, *accounts["viewer"])
    page.goto(live_server.url + LIST)
    expect(row(page, "viewer-test@example.com")).to_contain_text("alert")
    expect(page.get_by_role("button", name="Add subscription")).to_have_count(0)
    expect(page.get_by_role("button", name=f"Remove subscription {kept.id}")).to_have_count(0)
    token = str(page.locator('input[name="csrf_token"]').first.get_attribute("value"))
    added = page.request.post(
        live_server.url + LIST,
        form={"csrf_token": token, "event": "run.*", "address": "sneaky@example.com"},
    )
    removed = page.request.post(
        f"{live_server.url}{LIST}/{kept.id}/remove", form={"csrf_token": token}
    )
    assert added.status == 403 and removed.status == 403
    assert subscriptions.get(kept.id).address == "viewer-test@example.com"
    assert all(s.address != "sneaky@example.com" for s in subscriptions.list())


def test_subscription_forms_need_their_csrf_token(
    page: Any, live_server: LiveServer, accounts: dict[str, Any]
) -> None:
    subscriptions = live_server.pr.notifications.subscriptions
    kept = subscriptions.add({"event": "alert.*", "address": "csrf-test@example.com"})
    sign_in(page, live_server.url, *accounts["admin"])
    page.goto(live_server.url + LIST)
    page.evaluate("document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())")
    page.get_by_role("button", name=f"Remove subscription {kept.id}").click()
    expect(page.get_by_role("heading", name="This form has expired")).to_be_visible()
    assert subscriptions.get(kept.id).address == "csrf-test@example.com"
