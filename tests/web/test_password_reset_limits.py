"""Password reset without a system default profile, its limits, and what voids a link.

No mail server here: this module's installation has no default profile, so every request
ends in the audit log ("no mail could be sent") while the page answers as always.
"""

from __future__ import annotations

import hashlib
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import update
from typer.testing import CliRunner

from postroom import Postroom
from postroom.accounts import RESET_LIMIT, PasswordReset
from postroom.audit import AuditRead
from postroom.cli import cli
from postroom.db.tables import utcnow
from postroom.settings import Settings
from postroom.throttles import RESET_REQUESTS_ADDRESS
from tests.web.conftest import LiveServer, shot, sign_in

ANSWER = "If an account matches, a reset link was sent to its address."
NINA = ("nina", "nina-password-123")


@pytest.fixture(scope="module")
def nina(live_server: LiveServer) -> Postroom:
    live_server.pr.accounts.create_admin(*NINA, email="nina@example.com")
    live_server.pr.accounts.create_admin("otto", "otto-password-123")  # no email address
    return live_server.pr


def age_links(pr: Postroom) -> None:
    """Move every link out of the per-account window (as if 15 minutes had passed)."""
    with pr.sessions() as s:
        s.execute(update(PasswordReset).values(created_at=utcnow() - timedelta(hours=1)))
        s.commit()


@pytest.fixture(autouse=True)
def fresh_limits(live_server: LiveServer) -> None:
    live_server.pr.throttles.clear(RESET_REQUESTS_ADDRESS)
    age_links(live_server.pr)


def requests_for(pr: Postroom, username: str) -> list[AuditRead]:
    entries = pr.audit.list(limit=500, target_type="admin", target=username)
    return [e for e in entries if e.action == "request_password_reset"]


def wait_for_entries(pr: Postroom, username: str, count: int) -> list[AuditRead]:
    deadline = time.monotonic() + 10
    while len(found := requests_for(pr, username)) < count:
        assert time.monotonic() < deadline, f"{username}: {len(found)} of {count} entries"
        time.sleep(0.05)
    time.sleep(0.2)  # and no more than that
    return requests_for(pr, username)


def post_request(page: Any, base: str, login: str) -> Any:
    page.goto(base + "/forgot-password")
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    return page.request.post(base + "/forgot-password", form={"csrf_token": token, "login": login})


def test_without_a_default_profile_the_answer_stays_and_the_audit_log_says_why(
    page: Any, live_server: LiveServer, nina: Postroom, accounts: dict[str, Any]
) -> None:
    base = live_server.url
    for login in ("nina", "otto"):
        page.goto(base + "/forgot-password")
        page.get_by_label("Username or email address").fill(login)
        page.get_by_role("button", name="Send reset link").click()
        expect(page.locator("#reset-sent")).to_contain_text(ANSWER)
    (entry,) = wait_for_entries(nina, "nina", 1)
    assert entry.details["mail_sent"] is False
    assert "no mail could be sent" in entry.details["error"]
    assert "no system default profile" in entry.details["error"]
    (no_address,) = wait_for_entries(nina, "otto", 1)
    assert no_address.details["error"] == "the account has no email address"
    with nina.sessions() as s:  # the link that could not be mailed is void
        assert all(r.used_at is not None for r in s.query(PasswordReset))

    sign_in(page, base, *accounts["admin"])
    page.goto(base + "/settings/email/audit?type=admin")
    row = page.get_by_role("row").filter(has_text="request password reset").filter(has_text="nina")
    expect(row.first).to_contain_text("no mail could be sent")
    assert nina.outbox.list() == []


def test_requests_are_limited_per_account_and_per_address(
    page: Any, live_server: LiveServer, nina: Postroom
) -> None:
    base, before = live_server.url, len(requests_for(nina, "nina"))
    answers = {post_request(page, base, "NINA").text() for _ in range(RESET_LIMIT + 1)}
    assert all(ANSWER in a for a in answers)
    # one more than the limit was asked for; the account got the limit's worth of links
    assert len(wait_for_entries(nina, "nina", before + RESET_LIMIT)) == before + RESET_LIMIT

    assert post_request(page, base, "someone-else").status == 200  # the address's 5th
    page.goto(base + "/forgot-password")
    page.get_by_label("Username or email address").fill("someone-else")
    page.get_by_role("button", name="Send reset link").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Too many reset requests from your address")
    expect(alert).to_contain_text(re.compile(r"Wait 1[45] minutes"))
    expect(page.get_by_label("Username or email address")).to_have_value("someone-else")
    shot(page, "forgot-password-throttled")


def test_a_link_dies_when_it_expires_when_another_is_used_or_the_password_changes(
    page: Any, live_server: LiveServer, nina: Postroom
) -> None:
    accounts, base = nina.accounts, live_server.url
    expired = accounts.request_password_reset("nina")
    first = accounts.request_password_reset("nina@EXAMPLE.com")
    assert expired is not None and first is not None
    digest = hashlib.sha256(expired.token.encode()).hexdigest()
    with nina.sessions() as s:
        s.execute(
            update(PasswordReset)
            .where(PasswordReset.token_hash == digest)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        s.commit()
    response = page.goto(f"{base}/reset/{expired.token}")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="This link is not valid any more")).to_be_visible()

    page.goto(f"{base}/reset/{first.token}")
    accounts.set_password("nina", "nina-changed-elsewhere-1")  # e.g. by another admin
    page.get_by_label("New password", exact=True).fill("nina-password-456")
    page.get_by_label("Repeat the new password").fill("nina-password-456")
    page.get_by_role("button", name="Set new password").click()
    expect(page.get_by_role("heading", name="This link is not valid any more")).to_be_visible()
    assert accounts.verify_admin("nina", "nina-password-456") is None

    age_links(nina)
    one, two = accounts.request_password_reset("nina"), accounts.request_password_reset("nina")
    assert one is not None and two is not None
    assert accounts.reset_password(one.token, "nina-password-789") == "nina"
    assert accounts.reset_link_user(two.token) is None  # using one link voids the others
    accounts.set_password("nina", NINA[1])


def test_a_reset_signs_the_account_out_everywhere(
    browser: Any, page: Any, live_server: LiveServer, nina: Postroom
) -> None:
    base = live_server.url
    elsewhere = browser.new_context()
    try:
        other = elsewhere.new_page()
        sign_in(other, base, *NINA)
        ticket = nina.accounts.request_password_reset("nina")
        assert ticket is not None
        time.sleep(1.1)  # sessions count whole seconds: the reset must come after the sign-in
        page.goto(f"{base}/reset/{ticket.token}")
        page.get_by_label("New password", exact=True).fill("nina-password-000")
        page.get_by_label("Repeat the new password").fill("nina-password-000")
        page.get_by_role("button", name="Set new password").click()
        page.wait_for_url(base + "/login")
        other.goto(base + "/settings/email")
        assert "/login" in other.url  # the session from before the reset is refused
        sign_in(page, base, "nina", "nina-password-000")
    finally:
        elsewhere.close()
        nina.accounts.set_password("nina", NINA[1])


def test_your_account_sets_the_recovery_address_after_the_password(
    page: Any, live_server: LiveServer, nina: Postroom, accounts: dict[str, Any]
) -> None:
    sign_in(page, live_server.url, *accounts["viewer"])
    page.get_by_role("link", name="Your account").click()
    expect(page.get_by_text("No address is set")).to_be_visible()
    # /account has a password form too: this test fills the recovery form's own field
    recovery = page.get_by_role("group", name="Password recovery")
    page.get_by_label("Email address").fill("victor@example.com")
    recovery.get_by_label("Current password").fill("not-my-password")
    page.get_by_role("button", name="Save email address").click()
    expect(page.locator("#account-current-password-error")).to_have_text(
        "is not your current password"
    )
    page.get_by_label("Email address").fill("nina@example.com")
    recovery.get_by_label("Current password").fill(accounts["viewer"][1])
    page.get_by_role("button", name="Save email address").click()
    expect(page.locator("#account-email-error")).to_have_text("another account uses this address")
    page.get_by_label("Email address").fill("victor@example.com")
    recovery.get_by_label("Current password").fill(accounts["viewer"][1])
    page.get_by_role("button", name="Save email address").click()
    expect(page.get_by_text("Reset links now go to victor@example.com.")).to_be_visible()
    shot(page, "account")
    assert nina.accounts.get_admin("victor").email == "victor@example.com"


def test_admin_create_takes_an_email_address(tmp_path: Path) -> None:
    env = {"POSTROOM_DATA_DIR": str(tmp_path / "data")}
    runner = CliRunner()
    args = ["admin", "create", "carla", "--password-stdin", "--email", "carla@example.com"]
    result = runner.invoke(cli, args, input="carla-password-1\n", env=env)
    assert result.exit_code == 0, result.output
    bad = runner.invoke(cli, [*args[:2], "dora", "--password-stdin", "--email", "not an address"],
                        input="dora-password-12\n", env=env)  # fmt: skip
    assert bad.exit_code == 2 and "email" in bad.output
    with Postroom.open(settings=Settings(data_dir=tmp_path / "data")) as pr:
        assert pr.accounts.get_admin("carla").email == "carla@example.com"
