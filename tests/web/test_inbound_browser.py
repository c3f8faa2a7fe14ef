"""The Inbound page in a browser: listener health (a dead listener in red) and messages."""

from __future__ import annotations

from typing import Any

from tests.web.conftest import LiveServer, shot, sign_in
from tests.web.test_inbound_http import seed_inbound


def test_inbound_page(
    page: Any, live_server: LiveServer, accounts: dict[str, tuple[str, str]]
) -> None:
    ids = seed_inbound(live_server.pr)
    sign_in(page, live_server.url, *accounts["admin"])
    page.get_by_role("link", name="Inbound", exact=True).click()
    page.wait_for_url(live_server.url + "/settings/email/inbound")
    assert page.locator('.listener-state[data-state="error"]').inner_text() == "Error (stale)"
    assert page.locator('.listener-state[data-state="idle"]').count() == 1
    shot(page, "inbound")
    page.get_by_role("link", name=f"Inbound {ids['plain']}").click()
    page.get_by_role("heading", name=f"Inbound #{ids['plain']}").wait_for()
    assert "Please pay <b>now</b>" in page.locator("pre.mail-text").inner_text()
