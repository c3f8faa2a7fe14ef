"""Browser tests of the admin UI: a real server (uvicorn in a thread) and Debian's Chromium.

Each test module gets its own postroom installation and server; every test gets a fresh
browser context (cookies, storage). Screenshots go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from postroom import Postroom
from postroom.settings import Settings
from tests.conftest import require_service
from tests.harness.mailservers import MailServers

CHROMIUM = os.environ.get("POSTROOM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"

ADMIN = ("ada", "ada-password-123")
VIEWER = ("victor", "victor-password-123")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    pr: Postroom
    #: the UI's state (``postroom.web.core.WebState``): tests reset its throttles
    web: Any = None


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """postroom's whole app (UI + API) served by uvicorn on a free loopback port."""
    import uvicorn

    from postroom.api import create_app

    pr = Postroom.open(settings=Settings(data_dir=tmp_path_factory.mktemp("web-data")))
    port = _free_port()
    api = create_app(pr)
    config = uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="postroom-web-test", daemon=True)
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


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (skipped, or failed in CI, when missing).

    Module scope on purpose: Playwright's sync API keeps an event loop marked as running in
    this thread until it stops, which would break later tests that call ``asyncio.run``.
    """
    if not os.access(CHROMIUM, os.X_OK):
        require_service("Chromium", f"{CHROMIUM} not found (Debian package chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        require_service("Playwright", str(exc))
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    except Exception as exc:  # noqa: BLE001 - any launch fault means "not available"
        playwright.stop()
        require_service("Chromium", str(exc).splitlines()[0])
    yield browser
    browser.close()
    playwright.stop()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) with JavaScript on."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(15_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any) -> Any:
    return context.new_page()


def shot(page: Any, name: str, *, full_page: bool = True) -> Path:
    """Save a screenshot of the page as ``artifacts/screenshots/<name>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def sign_in(page: Any, base: str, username: str, password: str) -> None:
    """Sign in through the form and wait for the Email Settings page."""
    page.goto(base + "/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(base + "/settings/email")


@pytest.fixture(scope="module")
def accounts(live_server: LiveServer) -> dict[str, tuple[str, str]]:
    """An admin and a viewer, created the way `postroom admin create` does."""
    live_server.pr.accounts.create_admin(*ADMIN, role="admin")
    live_server.pr.accounts.create_admin(*VIEWER, role="viewer")
    return {"admin": ADMIN, "viewer": VIEWER}


@dataclass
class SmtpTarget:
    host: str
    port: int
    ca_pem: str
    username: str
    password: str
    imaps_port: int


@pytest.fixture(scope="session")
def smtp_target(mail_servers: MailServers) -> SmtpTarget:
    """The harness Postfix's submission port (STARTTLS, AUTH) and Dovecot's IMAPS port."""
    return SmtpTarget(
        host=mail_servers.host,
        port=mail_servers.ports["submission"],
        ca_pem=Path(mail_servers.ca_pem).read_text(),
        username="alice@postroom.test",
        password=mail_servers.users["alice@postroom.test"],
        imaps_port=mail_servers.ports["imaps"],
    )
