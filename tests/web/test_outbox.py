"""The Outbox and Actions pages in a real browser: list, filters, attempts, retry, cancel."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from postroom.actions.service import ActionRead
from tests.web.conftest import LiveServer, shot, sign_in
from tests.web.outbox_data import Seeded, all_tokens, seed_actions, seed_outbox

OUTBOX = "/settings/email/outbox"


@pytest.fixture(scope="module")
def seeded(live_server: LiveServer) -> Seeded:
    return seed_outbox(live_server.pr)


@pytest.fixture(scope="module")
def actions(live_server: LiveServer, seeded: Seeded) -> tuple[ActionRead, ActionRead, ActionRead]:
    return seed_actions(live_server.pr)


def _row(page: Any, text: str) -> Any:
    return page.get_by_role("row").filter(has_text=text)


def test_outbox_lists_newest_first_and_filters_without_javascript(
    browser: Any, live_server: LiveServer, accounts: dict[str, Any], seeded: Seeded
) -> None:
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": 1280, "height": 900}
    )
    try:
        page = context.new_page()
        sign_in(page, live_server.url, *accounts["admin"])
        page.get_by_role("link", name="Outbox").click()
        page.wait_for_url(live_server.url + OUTBOX)
        expect(page.get_by_role("heading", name="Outbox", exact=True)).to_be_visible()
        ids = page.locator("tbody tr td:first-child").all_inner_texts()
        assert ids == sorted(ids, key=lambda t: -int(t.strip("#")))
        assert f"#{seeded.sent}" in ids and f"#{seeded.scheduled}" == ids[0]
        expect(_row(page, "Invoice run failed").locator(".status-badge")).to_have_text("Failed")
        expect(_row(page, "Invoice run failed")).to_contain_text("recipients refused: 550 5.1.1")
        expect(_row(page, "Disk almost full").locator(".status-badge")).to_have_text("Retrying")
        expect(_row(page, "Password reset")).to_contain_text("refused the connection")
        expect(_row(page, "Weekly summary")).to_contain_text("bob@postroom.test +2 more")
        shot(page, "outbox-list")

        page.get_by_label("Status", exact=True).select_option("retrying")
        page.get_by_role("button", name="Filter").click()
        assert "status=retrying" in page.url
        expect(page.locator("tbody tr")).to_have_count(2)
        page.get_by_label("Process", exact=True).fill("REPORTS")
        page.get_by_label("Status", exact=True).select_option("")
        page.get_by_role("button", name="Filter").click()
        expect(page.locator("tbody tr")).to_have_count(2)
        expect(_row(page, "Quarterly report")).to_be_visible()
        page.get_by_label("Process", exact=True).fill("")
        page.get_by_label("Profile", exact=True).fill("Legacy relay")
        page.get_by_role("button", name="Filter").click()
        expect(page.locator("tbody tr")).to_have_count(1)

        page.goto(live_server.url + OUTBOX + "?until=2001-01-01")
        expect(page.get_by_text("No messages match these filters")).to_be_visible()
        page.goto(live_server.url + OUTBOX + "?since=tomorrow")
        expect(page.locator("#outbox-since-error")).to_have_text("enter a date as YYYY-MM-DD")
        expect(page.locator("#outbox-since")).to_have_attribute("aria-invalid", "true")
    finally:
        context.close()


def test_message_page_shows_every_attempt_and_retry_queues_it_again(
    page: Any, live_server: LiveServer, accounts: dict[str, Any], seeded: Seeded
) -> None:
    pr = live_server.pr
    sign_in(page, live_server.url, *accounts["admin"])
    page.goto(live_server.url + OUTBOX)
    page.get_by_role("link", name="Weekly summary").click()
    page.wait_for_url(f"{live_server.url}{OUTBOX}/{seeded.partly_refused}")
    expect(page.get_by_role("heading", name=f"Message #{seeded.partly_refused}")).to_be_visible()
    expect(page.get_by_text("Some recipients were refused")).to_be_visible()
    attempt = page.locator("tbody tr").first
    expect(attempt).to_contain_text("250")
    expect(attempt).to_contain_text("gone@postroom.test — 550 5.1.1 no such user here")
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)

    page.goto(f"{live_server.url}{OUTBOX}/{seeded.failed}")
    expect(page.locator(".page-head .status-badge")).to_have_text("Failed")
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody tr").first).to_contain_text("Refused")
    expect(page.locator("tbody tr").first).to_contain_text(re.compile(r"\w+:\d+:\w+"))  # worker
    shot(page, "outbox-message")
    page.get_by_role("button", name="Retry").click()
    expect(page.get_by_role("status")).to_contain_text(f"Message {seeded.failed} is queued again")
    expect(page.locator(".page-head .status-badge")).to_have_text("Queued")
    assert pr.outbox.get(seeded.failed).status == "queued"
    # Queued again, it can be cancelled (and then retried) but not retried twice.
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("status")).to_contain_text("cancelled: it will not be sent")
    assert pr.outbox.get(seeded.failed).status == "cancelled"


def test_cancel_and_a_conflict_shown_as_a_message(
    page: Any, live_server: LiveServer, accounts: dict[str, Any], seeded: Seeded
) -> None:
    pr = live_server.pr
    sign_in(page, live_server.url, *accounts["admin"])
    page.goto(f"{live_server.url}{OUTBOX}/{seeded.scheduled}")
    expect(page.get_by_text("due in 2 h")).to_be_visible()
    expect(page.get_by_text("No delivery attempt yet")).to_be_visible()
    # Someone else cancels it first: the click then explains why nothing happened.
    pr.outbox.cancel(seeded.scheduled)
    page.get_by_role("button", name="Cancel").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text(f"Message {seeded.scheduled} is cancelled")
    expect(alert).to_contain_text("only queued or retrying messages can be cancelled")
    expect(page.locator(".page-head .status-badge")).to_have_text("Cancelled")
    page.get_by_role("button", name="Retry").click()
    expect(page.get_by_role("status")).to_contain_text("queued again")
    assert pr.outbox.get(seeded.scheduled).status == "queued"


def test_viewer_cannot_retry_and_a_post_without_csrf_is_refused(
    page: Any, live_server: LiveServer, accounts: dict[str, Any], seeded: Seeded
) -> None:
    pr = live_server.pr
    url = f"{live_server.url}{OUTBOX}/{seeded.retrying}"
    sign_in(page, live_server.url, *accounts["viewer"])
    page.goto(url)
    expect(page.get_by_role("button", name="Retry")).to_be_disabled()
    expect(page.get_by_role("button", name="Cancel")).to_be_disabled()
    expect(page.get_by_text("only administrators can retry or cancel")).to_be_visible()
    shot(page, "outbox-message-viewer")
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    for action in ("retry", "cancel"):
        response = page.request.post(f"{url}/{action}", form={"csrf_token": str(token)})
        assert response.status == 403 and "viewer role" in response.text()
    assert pr.outbox.get(seeded.retrying).status == "retrying"

    page.context.clear_cookies()
    sign_in(page, live_server.url, *accounts["admin"])
    page.goto(url)
    page.evaluate("document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())")
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("heading", name="This form has expired")).to_be_visible()
    response = page.request.post(f"{url}/retry", form={"csrf_token": "forged"})
    assert response.status == 403
    assert pr.outbox.get(seeded.retrying).status == "retrying"


def test_actions_list_and_detail_never_show_a_link_token(
    page: Any,
    live_server: LiveServer,
    accounts: dict[str, Any],
    actions: tuple[ActionRead, ActionRead, ActionRead],
) -> None:
    pending, decided, expired = actions
    sign_in(page, live_server.url, *accounts["admin"])
    page.get_by_role("link", name="Actions", exact=True).click()
    expect(page.get_by_role("heading", name="Actions", exact=True)).to_be_visible()
    expect(_row(page, pending.subject).locator(".status-badge")).to_have_text("Pending")
    expect(_row(page, expired.subject).locator(".status-badge")).to_have_text("Expired")
    decided_row = _row(page, decided.subject)
    expect(decided_row.locator(".status-badge")).to_have_text("Decided")
    expect(decided_row).to_contain_text("approve")
    expect(decided_row).to_contain_text("lead@postroom.test")
    shot(page, "actions-list")
    tokens = all_tokens(pending, decided, expired)
    assert not [t for t in tokens if t in page.content()]

    page.get_by_label("Status", exact=True).select_option("expired")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(_row(page, expired.subject)).to_be_visible()

    page.goto(live_server.url + "/settings/email/actions")
    page.get_by_role("link", name=decided.subject).click()
    page.wait_for_url(f"{live_server.url}/settings/email/actions/{decided.id}")
    expect(page.get_by_text("Decided: approve")).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text("link (confirmed on the page)")
    mails = page.locator("tbody tr")
    expect(mails).to_have_count(2)
    expect(mails.first).to_contain_text("lead@postroom.test")
    shot(page, "action-detail")
    assert not [t for t in tokens if t in page.content()]
    mails.first.get_by_role("link").click()
    expect(page.get_by_role("heading", name=re.compile(r"^Message #\d+"))).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text(f"[#{decided.id}]")
    assert not [t for t in tokens if t in page.content()]


def test_outbox_pages_fit_a_phone_screen(
    browser: Any,
    live_server: LiveServer,
    accounts: dict[str, Any],
    seeded: Seeded,
    actions: tuple[ActionRead, ActionRead, ActionRead],
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page = context.new_page()
        sign_in(page, live_server.url, *accounts["admin"])
        for path, name in (
            (OUTBOX, "outbox-list-phone"),
            (f"{OUTBOX}/{seeded.partly_refused}", "outbox-message-phone"),
            ("/settings/email/actions", "actions-list-phone"),
        ):
            page.goto(live_server.url + path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{path} scrolls sideways ({width}px)"
            shot(page, name)
    finally:
        context.close()
