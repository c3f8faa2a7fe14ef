"""A profile's lifecycle in a real browser against the test Postfix (issue 22): usage."""

from __future__ import annotations

import asyncio
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
