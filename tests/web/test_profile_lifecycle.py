"""A profile's lifecycle in a real browser against the test Postfix (issue 22): usage, the
first profile as the default."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from playwright.sync_api import expect

from postroom.outbox.worker import Worker
from tests.web.conftest import LiveServer, SmtpTarget, shot, sign_in

pytestmark = pytest.mark.mailservers


def _profile(target: SmtpTarget, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "smtp": {
            "host": target.host, "port": target.port, "security": "starttls",
            "ca_bundle": target.ca_pem, "auth": "basic", "username": target.username,
            "password": target.password,
        },
        "sender": {"from_address": target.username, "from_name": name},
    }  # fmt: skip


def test_first_profile_becomes_the_default_and_the_page_says_so_until_then(
    page: Any, live_server: LiveServer, accounts: dict[str, Any], smtp_target: SmtpTarget
) -> None:
    base = live_server.url
    sign_in(page, base, *accounts["admin"])
    warning = page.locator(".no-default")
    expect(warning).to_contain_text("postroom's own mail (password resets)")
    expect(warning).to_contain_text("nowhere to go")
    page.get_by_role("link", name="+ Create your first profile").click()
    page.get_by_label("Profile name").fill("First")
    page.get_by_label("SMTP host").fill(smtp_target.host)
    page.get_by_label("SMTP port").fill(str(smtp_target.port))
    page.get_by_label("Security", exact=True).first.select_option("starttls")
    page.get_by_label("CA bundle (PEM)").first.fill(smtp_target.ca_pem)
    page.get_by_label("From address").fill(smtp_target.username)
    page.get_by_label("Method", exact=True).select_option("basic")
    page.locator("#f-smtp-username").fill(smtp_target.username)
    page.locator("#f-smtp-password").fill(smtp_target.password)
    page.get_by_role("button", name="Create profile").click()
    expect(page.get_by_role("status").filter(has_text="Profile 'First' created.")).to_contain_text(
        "It is now the system default"
    )
    shot(page, "profile-first-is-default")
    page.goto(base + "/settings/email")
    expect(page.get_by_role("row").filter(has_text="First")).to_contain_text("Default")
    expect(page.locator(".no-default")).to_have_count(0)


def test_last_used_and_counts_after_five_sends(
    page: Any, live_server: LiveServer, accounts: dict[str, Any], smtp_target: SmtpTarget
) -> None:
    pr = live_server.pr
    pr.profiles.create(_profile(smtp_target, "Usage A"))
    pr.profiles.create(_profile(smtp_target, "Usage B"))
    for i in range(5):
        pr.send(
            {"to": ["bob@postroom.test"], "subject": f"usage {i}", "text": "x"}, profile="Usage A"
        )
    worker = Worker(pr, poll_s=0.05)
    # Playwright's sync API runs an event loop in this thread: drain in another one
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, asyncio.wait_for(worker.run(drain=True), 60)).result(90)
    assert worker.sent == 5
    sign_in(page, live_server.url, *accounts["admin"])
    row_a = page.get_by_role("row").filter(has_text="Usage A")
    row_b = page.get_by_role("row").filter(has_text="Usage B")
    expect(row_a.locator('[data-label="Last used"]')).not_to_contain_text("Never")
    expect(row_a.locator('[data-label="Last used"]')).to_contain_text("7 days: 5 sent")
    expect(row_b.locator('[data-label="Last used"]')).to_contain_text("Never")
    shot(page, "profile-list-usage")


def test_personal_mailbox_is_warned_in_the_list(
    page: Any, live_server: LiveServer, accounts: dict[str, Any], smtp_target: SmtpTarget
) -> None:
    data = _profile(smtp_target, "Personal")
    data["smtp"]["username"] = "jane.doe@gmail.com"
    data["sender"]["from_address"] = "alerts@postroom.test"
    live_server.pr.profiles.create(data)
    sign_in(page, live_server.url, *accounts["admin"])
    badge = page.get_by_role("row").filter(has_text="Personal").locator(".badge-warn")
    expect(badge).to_contain_text("2 warnings")
    expect(badge).to_have_attribute("title", re.compile("personal account at gmail.com"))
    expect(badge).to_have_attribute("title", re.compile("differs from the username"))


def test_unused_profile_is_flagged_filtered_and_disabled_in_one_click(
    page: Any, live_server: LiveServer, accounts: dict[str, Any], smtp_target: SmtpTarget
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from postroom.db.tables import Profile, utcnow

    pr = live_server.pr
    if pr.get_default() is None:  # else the first profile would be the default: never unused
        pr.profiles.create(_profile(smtp_target, "Keeper"))
    pr.profiles.create(_profile(smtp_target, "Stale one"))
    with pr.sessions() as s:
        old = utcnow() - timedelta(days=200)
        s.execute(update(Profile).where(Profile.name == "Stale one").values(created_at=old))
        s.commit()
    sign_in(page, live_server.url, *accounts["admin"])
    row = page.get_by_role("row").filter(has_text="Stale one")
    expect(row.locator(".unused-reason")).to_contain_text("bound to no process, and never used")
    page.get_by_role("link", name="Show unused profiles only").click()
    names = page.locator("td.name > a").all_inner_texts()
    assert names == ["Stale one"], names
    shot(page, "profile-list-unused")
    page.locator('summary[aria-label="More actions for Stale one"]').click()
    page.get_by_label("Disable Stale one", exact=True).click()
    expect(page.get_by_text("Profile 'Stale one' disabled.")).to_be_visible()
    assert pr.profiles.get("Stale one").enabled is False
