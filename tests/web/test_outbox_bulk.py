"""The outbox's search box, bulk retry/cancel with a confirmation naming the count, and the
live counts, in a real browser (issue 24, deliver item 2); also at 390 px and without
JavaScript (the counts are plain links then)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from postroom import Postroom
from tests.web.conftest import LiveServer, shot, sign_in

OUTBOX = "/settings/email/outbox"


def _profile(pr: Postroom) -> None:
    pr.profiles.create(
        {"name": "Bulk relay", "smtp": {"host": "127.0.0.1", "port": 1, "security": "none"},
         "sender": {"from_address": "robot@postroom.test"}}
    )  # fmt: skip


def _failed(pr: Postroom, subject: str, to: str) -> int:
    id = pr.send({"to": [to], "subject": subject, "text": "x"}, profile="Bulk relay")
    with pr.engine.begin() as conn:
        conn.execute(
            text("UPDATE outbox_messages SET status = 'failed' WHERE id = :id"), {"id": id}
        )
    return id


@pytest.fixture(scope="module")
def failed(live_server: LiveServer) -> list[int]:
    _profile(live_server.pr)
    return [_failed(live_server.pr, f"Payroll export {n}", f"hr{n}@payroll.test") for n in range(3)]


def test_search_then_retry_the_matching_set_after_a_confirmation(
    page: Any, live_server: LiveServer, accounts: dict[str, Any], failed: list[int]
) -> None:
    pr = live_server.pr
    other = _failed(pr, "Unrelated", "someone@else.test")
    sign_in(page, live_server.url, *accounts["admin"])
    page.goto(live_server.url + OUTBOX)
    page.get_by_label("Search", exact=True).fill("PAYROLL.test")
    page.get_by_label("Status", exact=True).select_option("failed")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr")).to_have_count(3)
    assert "q=PAYROLL.test" in page.url
    page.get_by_label("Search", exact=True).fill(f"#{failed[1]}")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    page.get_by_label("Search", exact=True).fill("payroll export")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr")).to_have_count(3)

    page.get_by_role("link", name="Retry matching…").click()
    expect(page.get_by_role("heading", name="Retry 3 messages?")).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text("payroll export")
    shot(page, "outbox-bulk-confirm")
    # the count is what the confirmation acts on; nothing changed yet
    assert {pr.outbox.get(i).status for i in failed} == {"failed"}
    page.get_by_role("button", name="Retry 3 messages").click()
    expect(page.get_by_role("status")).to_contain_text("3 message(s) queued again.")
    assert {pr.outbox.get(i).status for i in failed} == {"queued"}
    assert pr.outbox.get(other).status == "failed"
    entries = [e for e in pr.audit.list(limit=20) if e.action == "bulk_retry"]
    assert entries[0].details == {
        "filter": {"status": "failed", "search": "payroll export"},
        "count": 3,
    }
    assert entries[0].actor == f"web:{accounts['admin'][0]}"

    # cancel them again: the confirmation names the count for cancel too
    page.goto(live_server.url + OUTBOX + "?q=payroll+export")
    page.get_by_role("link", name="Cancel matching…").click()
    expect(page.get_by_role("heading", name="Cancel 3 messages?")).to_be_visible()
    page.get_by_role("button", name="Cancel 3 messages").click()
    expect(page.get_by_role("status")).to_contain_text("3 message(s) cancelled.")
    page.goto(live_server.url + OUTBOX + "/bulk?action=cancel&q=payroll+export")
    expect(page.get_by_role("heading", name="No matching message can be cancelled")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)


def test_bad_search_and_a_viewer(
    page: Any, live_server: LiveServer, accounts: dict[str, Any], failed: list[int]
) -> None:
    sign_in(page, live_server.url, *accounts["admin"])
    page.goto(live_server.url + OUTBOX + "?q=" + "x" * 201)
    expect(page.locator("#outbox-q-error")).to_have_text("must be at most 200 characters")
    expect(page.locator("#outbox-q")).to_have_attribute("aria-invalid", "true")
    page.goto(live_server.url + OUTBOX + "/bulk?action=retry&status=sent")
    expect(page.get_by_role("alert")).to_contain_text("status: only failed")
    page.goto(live_server.url + OUTBOX + "/bulk?action=retry")  # no filter: no "everything"
    expect(page.get_by_role("alert")).to_contain_text("choose at least one filter")

    page.context.clear_cookies()
    sign_in(page, live_server.url, *accounts["viewer"])
    page.goto(live_server.url + OUTBOX + "?q=payroll")
    expect(page.get_by_role("link", name="Retry matching…")).to_have_count(0)
    page.goto(live_server.url + OUTBOX + "/bulk?action=retry&q=payroll")
    expect(page.get_by_role("button", name="Retry 3 messages")).to_be_disabled()
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    response = page.request.post(
        live_server.url + OUTBOX + "/bulk",
        form={"csrf_token": str(token), "action": "retry", "q": "payroll"},
    )
    assert response.status == 403


def test_counts_refresh_without_a_reload(
    page: Any, live_server: LiveServer, accounts: dict[str, Any], failed: list[int]
) -> None:
    pr = live_server.pr
    sign_in(page, live_server.url, *accounts["admin"])
    page.goto(live_server.url + OUTBOX)
    all_count = page.locator('.count[data-status="all"]')
    before = int(all_count.inner_text())
    bounced = page.locator(".status-counts li").filter(has=page.locator('[data-status="bounced"]'))
    expect(bounced).to_be_hidden()
    id = _failed(pr, "Live count", "live@payroll.test")
    with pr.engine.begin() as conn:
        conn.execute(
            text("UPDATE outbox_messages SET status = 'bounced' WHERE id = :id"), {"id": id}
        )
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")  # as on coming back
    expect(all_count).to_have_text(str(before + 1))
    expect(bounced).to_be_visible()
    expect(bounced.locator(".count")).to_have_text("1")
    # and by itself, on the timer (10 s)
    _failed(pr, "Live count 2", "live2@payroll.test")
    expect(all_count).to_have_text(str(before + 2), timeout=15_000)


def test_without_javascript_and_on_a_phone(
    browser: Any, live_server: LiveServer, accounts: dict[str, Any], failed: list[int]
) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page, live_server.url, *accounts["admin"])
        page.goto(live_server.url + OUTBOX)
        page.get_by_role("link", name="Failed").first.click()
        assert "status=failed" in page.url
        page.get_by_label("Search", exact=True).fill("live")
        page.get_by_role("button", name="Filter").click()
        page.get_by_role("link", name="Retry matching…").click()
        expect(page.get_by_role("heading", name="Retry 1 message?")).to_be_visible()
    finally:
        context.close()
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page = context.new_page()
        sign_in(page, live_server.url, *accounts["admin"])
        for path, name in (
            (OUTBOX + "?q=payroll", "outbox-search-phone"),
            (OUTBOX + "/bulk?action=retry&q=payroll", "outbox-bulk-phone"),
        ):
            page.goto(live_server.url + path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{path} scrolls sideways ({width}px)"
            shot(page, name)
    finally:
        context.close()
