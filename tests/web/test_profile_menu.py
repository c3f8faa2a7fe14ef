"""The profile table's More menu in a real browser: every item reachable, whatever the row."""

from __future__ import annotations

import socket
from typing import Any

from playwright.sync_api import expect

from tests.conftest import clear_default
from tests.web.conftest import LiveServer, shot, sign_in


def _spec(name: str) -> dict[str, Any]:
    # Never connected to: the menu is about layout only.
    return {
        "name": name,
        "smtp": {"host": "127.0.0.1", "port": 2525, "security": "none", "auth": "none"},
        "sender": {"from_address": "alerts@example.com"},
    }


def _assert_items_on_top(page: Any, name: str) -> list[str]:
    """Each menu item is visible and is what a click at its centre would hit."""
    page.get_by_label(f"More actions for {name}").click()
    items = page.locator("details.menu[open] .menu-panel").locator("a, button")
    labels: list[str] = items.evaluate_all("els => els.map(e => e.getAttribute('aria-label'))")
    for label in labels:
        item = page.get_by_label(label, exact=True)
        expect(item).to_be_visible()
        hit = item.evaluate(
            """el => {
                const r = el.getBoundingClientRect();
                const x = r.left + r.width / 2, y = r.top + r.height / 2;
                if (x < 0 || y < 0 || x > innerWidth || y > innerHeight) return false;
                const top = document.elementFromPoint(x, y);
                return top === el || el.contains(top);
            }"""
        )
        assert hit, f"{label!r} is hidden under something else (clipped menu)"
    return labels


def test_more_menu_of_the_only_row_shows_every_item(
    page: Any, live_server: LiveServer, accounts: dict[str, Any]
) -> None:
    live_server.pr.profiles.create(_spec("Solo"))
    clear_default(live_server.pr)  # as the first profile it became the default (issue 22)
    sign_in(page, live_server.url, *accounts["admin"])
    labels = _assert_items_on_top(page, "Solo")
    assert labels[0] == "Duplicate Solo" and "Disable Solo" in labels and "Delete Solo" in labels
    shot(page, "profile-menu-one-row", full_page=False)
    page.get_by_label("Disable Solo", exact=True).click()
    expect(page.get_by_text("Profile 'Solo' disabled.")).to_be_visible()


def test_more_menu_of_the_last_row_on_a_phone(
    page: Any, live_server: LiveServer, accounts: dict[str, Any]
) -> None:
    live_server.pr.profiles.create(_spec("Zulu"))
    clear_default(live_server.pr)  # created while there was no default, it became it
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, live_server.url, *accounts["admin"])
    labels = _assert_items_on_top(page, "Zulu")
    assert "Set Zulu as system default" in labels


def test_enter_in_the_test_address_runs_the_test_and_saves_nothing(
    page: Any, live_server: LiveServer, accounts: dict[str, Any]
) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on: the test fails fast
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    before = {p.name for p in live_server.pr.profiles.list()}
    sign_in(page, live_server.url, *accounts["admin"])
    page.goto(live_server.url + "/settings/email/new")
    page.get_by_label("Profile name").fill("Enter key")
    page.get_by_label("SMTP host").fill("127.0.0.1")
    page.get_by_label("SMTP port").fill(str(closed_port))
    page.get_by_label("Security", exact=True).first.select_option("none")
    page.get_by_label("From address").fill("alerts@example.com")
    page.get_by_label("Method", exact=True).select_option("none")
    page.get_by_label("Send a test message to").fill("qa@example.com")
    page.get_by_label("Send a test message to").press("Enter")
    result = page.locator("#result-smtp")
    expect(result.locator(".diagnosis")).to_have_attribute("data-ok", "false", timeout=30_000)
    assert page.url.endswith("/settings/email/new")
    assert {p.name for p in live_server.pr.profiles.list()} == before
    # on a phone, each step's time stays on one line ("12 ms", not "12" over "ms")
    page.set_viewport_size({"width": 390, "height": 844})
    times = result.locator(".step .ms")
    assert times.count() >= 1
    lines = times.evaluate_all(
        "els => els.map(e => { const r = document.createRange(); r.selectNodeContents(e);"
        " return new Set(Array.from(r.getClientRects()).map(x => Math.round(x.top))).size; })"
    )
    assert all(n <= 1 for n in lines), lines


def test_switching_presets_in_the_browser_leaves_nothing_behind(
    page: Any, live_server: LiveServer, accounts: dict[str, Any]
) -> None:
    sign_in(page, live_server.url, *accounts["admin"])
    page.goto(live_server.url + "/settings/email/new")
    preset = page.get_by_label("Provider preset")
    preset.select_option("gmail")
    expect(page.locator("#f-imap-host")).to_have_value("imap.gmail.com")
    preset.select_option("ses")
    expect(page.locator("#f-imap-host")).to_have_value("")
    preset.select_option("microsoft365")
    expect(page.get_by_label("Method", exact=True)).to_have_value("oauth2")
    expect(page.locator("#preset-note")).to_contain_text("Use OAuth2")
    preset.select_option("sendgrid")
    expect(page.locator("#f-smtp-username")).to_have_value("apikey")
    preset.select_option("mailgun")
    expect(page.locator("#f-smtp-username")).to_have_value("")


def test_viewers_see_disabled_buttons_as_disabled(
    page: Any, live_server: LiveServer, accounts: dict[str, Any]
) -> None:
    profile = live_server.pr.profiles.create(_spec("Viewed"))
    sign_in(page, live_server.url, *accounts["viewer"])
    page.goto(f"{live_server.url}/settings/email/profiles/{profile.id}")
    button = page.get_by_role("button", name="Test SMTP")
    expect(button).to_be_disabled()
    style = button.evaluate(
        "el => { const s = getComputedStyle(el); return [s.opacity, s.cursor]; }"
    )
    assert float(style[0]) <= 0.6 and style[1] == "not-allowed", style
