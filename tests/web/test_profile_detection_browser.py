"""The profile form's Detect button in a real browser (JavaScript on and off): the suggested
servers fill the form, nothing is saved, a malformed address is shown inline."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from postroom import Postroom
from postroom.settings import Settings
from tests.harness.detection import DetectionServers, detection_servers
from tests.web.conftest import LiveServer, _free_port, shot, sign_in


@pytest.fixture(scope="module")
def servers() -> Iterator[DetectionServers]:
    with detection_servers() as running:
        yield running


@pytest.fixture(scope="module")
def live_server(
    tmp_path_factory: pytest.TempPathFactory, servers: DetectionServers
) -> Iterator[LiveServer]:
    """As tests.web.conftest's, with detection pointed at the loopback DNS and HTTP servers."""
    import uvicorn

    from postroom.api import create_app

    settings = Settings(data_dir=tmp_path_factory.mktemp("web-detect"), **servers.settings())  # type: ignore[arg-type]
    pr = Postroom.open(settings=settings)
    port = _free_port()
    api = create_app(pr)
    config = uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="postroom-web-detect", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    yield LiveServer(f"http://127.0.0.1:{port}", pr, api.state.postroom_web)
    server.should_exit = True
    thread.join(timeout=10)
    pr.close()


@pytest.mark.parametrize("javascript", [True, False])
def test_detect_fills_the_form_and_saves_nothing(
    browser: Any, live_server: LiveServer, accounts: dict[str, Any], javascript: bool
) -> None:
    context = browser.new_context(
        java_script_enabled=javascript, viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        base = live_server.url
        sign_in(page, base, *accounts["admin"])
        page.goto(base + "/settings/email/new")
        page.get_by_label("Profile name").fill("Detected")

        page.get_by_label("Detect from an address").fill("dave@")
        page.get_by_role("button", name="Detect", exact=True).click()
        field = page.locator("#f-detect-address")
        expect(field).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#f-detect-address-error")).to_contain_text("name@example.com")
        expect(page.get_by_label("Profile name")).to_have_value("Detected")

        field.fill("dave@srv.test")
        page.get_by_role("button", name="Detect", exact=True).click()
        expect(page.locator("#detect-result")).to_contain_text("Filled in from srv")
        expect(page.get_by_label("SMTP host")).to_have_value("mail.srv.test")
        expect(page.get_by_label("SMTP port")).to_have_value("587")
        expect(page.locator("#f-imap-host")).to_have_value("imap.srv.test")
        expect(page.get_by_label("From address")).to_have_value("dave@srv.test")
        expect(page.get_by_label("Profile name")).to_have_value("Detected")
        shot(page, f"profile-detect-{'js' if javascript else 'nojs'}")

        field.fill("erin@gmail.com")
        page.get_by_role("button", name="Detect", exact=True).click()
        expect(page.get_by_label("SMTP host")).to_have_value("smtp.gmail.com")
        expect(page.locator("#preset-note")).to_contain_text("app password")
        assert live_server.pr.profiles.list() == []
    finally:
        context.close()
