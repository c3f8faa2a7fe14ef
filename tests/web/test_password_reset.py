"""Forgot password, end to end: the request page, the mail through the system default
profile (the harness Postfix, STARTTLS + AUTH), a worker delivering it to Dovecot, the link
opened in the browser, the new password, and the dead link afterwards."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import delete

from postroom import Postroom
from postroom.accounts import PasswordReset
from postroom.audit import AuditRead
from postroom.throttles import RESET_REQUESTS_ADDRESS
from tests.harness.mailservers import MailServers
from tests.web.conftest import LiveServer, SmtpTarget, shot, sign_in
from tests.web.outbox_data import drain

pytestmark = pytest.mark.mailservers

ROSA = ("rosa", "rosa-old-password-1")
NEW_PASSWORD = "rosa-new-password-2"
ANSWER = "If an account matches, a reset link was sent to its address."


@pytest.fixture(scope="module")
def system_mail(live_server: LiveServer, smtp_target: SmtpTarget) -> Postroom:
    """The harness submission port as the system default; rosa's address is bob's mailbox."""
    pr = live_server.pr
    pr.profiles.create(
        {
            "name": "System mail",
            "smtp": {
                "host": smtp_target.host,
                "port": smtp_target.port,
                "security": "starttls",
                "ca_bundle": smtp_target.ca_pem,
                "auth": "basic",
                "username": smtp_target.username,
                "password": smtp_target.password,
            },
            "sender": {"from_address": "alice@postroom.test", "from_name": "Postroom"},
        }
    )
    pr.set_default("System mail")
    pr.accounts.create_admin(*ROSA, email="bob@postroom.test")
    return pr


@pytest.fixture(autouse=True)
def fresh_limits(live_server: LiveServer) -> None:
    """Each test starts under the per-address and per-account limits."""
    live_server.pr.throttles.clear(RESET_REQUESTS_ADDRESS)
    with live_server.pr.sessions() as s:
        s.execute(delete(PasswordReset))
        s.commit()


def wait_for(what: str, check: Callable[[], Any], timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def reset_entries(pr: Postroom, username: str) -> list[AuditRead]:
    return [
        e
        for e in pr.audit.list(limit=200, target_type="admin", target=username)
        if e.action == "request_password_reset"
    ]


def request_reset(page: Any, base: str, login: str) -> str:
    """Ask for a link on the page; returns the answer's text."""
    page.goto(base + "/login")
    page.get_by_role("link", name="Forgot password?").click()
    page.get_by_label("Username or email address").fill(login)
    page.get_by_role("button", name="Send reset link").click()
    answer = page.locator("#reset-sent")
    expect(answer).to_contain_text(ANSWER)
    return str(answer.inner_text())


def text_part(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


def test_a_forgotten_password_is_replaced_through_the_mailed_link(
    page: Any,
    context: Any,
    live_server: LiveServer,
    system_mail: Postroom,
    mail_servers: MailServers,
) -> None:
    pr, base = system_mail, live_server.url
    before = len(reset_entries(pr, "rosa"))
    page.goto(base + "/forgot-password")
    shot(page, "forgot-password-form")
    request_reset(page, base, "bob@postroom.test")  # the email address finds the account too
    shot(page, "forgot-password")

    entry = wait_for("the reset mail", lambda: reset_entries(pr, "rosa")[before:])[0]
    assert entry.details["mail_sent"] is True and entry.details["to"] == "bob@postroom.test"
    queued = pr.outbox.get(entry.details["outbox_id"])
    assert queued.profile == "System mail" and queued.recipients == ["bob@postroom.test"]
    drain(pr)
    assert pr.outbox.get(queued.id).status == "sent"

    mail = mail_servers.wait_for_mail(
        "bob@postroom.test", lambda m: m["Message-ID"] == queued.message_id, timeout=20
    )
    assert mail["Subject"] == "Reset your postroom password"
    assert mail["Auto-Submitted"] == "auto-generated"
    text = text_part(mail)
    links = re.findall(re.escape(base) + r"/reset/[A-Za-z0-9_-]{20,}", text)
    assert links, text
    link = links[0]
    assert "30 minutes" in text and "127.0.0.1" in text
    html = mail.get_body(preferencelist=("html",))
    assert html is not None and link in str(html.get_content())
    token = link.rsplit("/", 1)[1]
    assert token not in str(pr.audit.list(limit=50))  # only its hash is stored

    page.goto(link)
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    expect(page.get_by_text("For the account rosa")).to_be_visible()
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    shot(page, "reset-password")
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD + "x")
    page.get_by_role("button", name="Set new password").click()
    expect(page.get_by_role("alert")).to_contain_text("does not match the new password")
    assert pr.accounts.reset_link_user(token) == "rosa"  # a failed attempt keeps the link
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set new password").click()
    page.wait_for_url(base + "/login")
    expect(page.get_by_text("Your password is changed.")).to_be_visible()

    sign_in(page, base, "rosa", NEW_PASSWORD)
    assert pr.accounts.verify_admin(*ROSA) is None

    # The link is dead now: opening it, or posting its form again, changes nothing.
    other = context.new_page()
    response = other.goto(link)
    assert response is not None and response.status == 404
    expect(other.get_by_role("heading", name="This link is not valid any more")).to_be_visible()
    shot(other, "reset-link-used")
    expect(other.locator('form[action^="/reset/"]')).to_have_count(0)
    csrf = other.locator('input[name="csrf_token"]').first.get_attribute("value")
    replay = other.request.post(
        link,
        form={"csrf_token": str(csrf), "password": "replayed-password-9",
              "password_confirm": "replayed-password-9"},
    )  # fmt: skip
    assert replay.status == 404 and "not valid any more" in replay.text()
    assert pr.accounts.reset_link_user(token) is None
    assert pr.accounts.verify_admin("rosa", NEW_PASSWORD) is not None


def test_an_unknown_account_gets_the_same_answer_as_fast(
    page: Any, live_server: LiveServer, system_mail: Postroom
) -> None:
    pr, base = system_mail, live_server.url
    sent_before = len(pr.outbox.list(limit=1000))
    known = request_reset(page, base, "rosa")
    unknown = request_reset(page, base, "nobody-at-all")
    assert known == unknown

    def timed(login: str) -> float:
        page.goto(base + "/forgot-password")
        token = page.locator('input[name="csrf_token"]').get_attribute("value")
        started = time.perf_counter()
        response = page.request.post(
            base + "/forgot-password", form={"csrf_token": token, "login": login}
        )
        elapsed = time.perf_counter() - started
        assert response.status == 200 and ANSWER in response.text()
        return elapsed

    # The account is looked up after the answer went out: both answers take the same time.
    live_server.pr.throttles.clear(RESET_REQUESTS_ADDRESS)
    assert abs(timed("rosa") - timed("nobody-at-all")) < 0.25
    wait_for("rosa's mails", lambda: len(pr.outbox.list(limit=1000)) >= sent_before + 2)
    time.sleep(0.3)
    assert len(pr.outbox.list(limit=1000)) == sent_before + 2  # none for the unknown name


def test_reset_forms_need_their_csrf_token(
    page: Any, live_server: LiveServer, system_mail: Postroom
) -> None:
    pr, base = system_mail, live_server.url
    entries = len(reset_entries(pr, "rosa"))
    response = page.request.post(base + "/forgot-password", form={"login": "rosa"})
    assert response.status == 403 and "This form has expired" in response.text()
    time.sleep(0.3)
    assert len(reset_entries(pr, "rosa")) == entries

    ticket = pr.accounts.request_password_reset("rosa")
    assert ticket is not None
    page.goto(f"{base}/reset/{ticket.token}")
    page.evaluate("document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())")
    page.get_by_label("New password", exact=True).fill("forged-password-123")
    page.get_by_label("Repeat the new password").fill("forged-password-123")
    page.get_by_role("button", name="Set new password").click()
    expect(page.get_by_role("heading", name="This form has expired")).to_be_visible()
    assert pr.accounts.verify_admin("rosa", "forged-password-123") is None
    assert pr.accounts.reset_link_user(ticket.token) == "rosa"  # still usable by its owner
