"""The Outbox and Actions pages without a browser: filters, paging, roles, CSRF, no tokens."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from postroom import Postroom
from postroom.api import create_app
from postroom.outbox.service import SendRequest
from postroom.web.views.outbox import older_page
from tests.web.outbox_data import Seeded, all_tokens, seed_actions, seed_outbox

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

OUTBOX = "/settings/email/outbox"
ACTIONS = "/settings/email/actions"


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def _signed_in(pr: Postroom, username: str, password: str) -> TestClient:
    client = TestClient(create_app(pr), follow_redirects=False)
    token = _csrf(client.get("/login").text)
    response = client.post(
        "/login", data={"csrf_token": token, "username": username, "password": password}
    )
    assert response.status_code == 303
    return client


def _ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'aria-label="Message (\d+)"', html)]


@pytest.fixture
def pr(sqlite_app: Postroom) -> Postroom:
    sqlite_app.accounts.create_admin("ada", "ada-password-123")
    sqlite_app.accounts.create_admin("vic", "vic-password-123", role="viewer")
    return sqlite_app


@pytest.fixture
def admin(pr: Postroom) -> Iterator[TestClient]:
    with _signed_in(pr, "ada", "ada-password-123") as client:
        yield client


@pytest.fixture
def seeded(pr: Postroom) -> Seeded:
    return seed_outbox(pr)


def test_empty_outbox_and_actions_say_so(admin: TestClient) -> None:
    page = admin.get(OUTBOX)
    assert page.status_code == 200 and "The outbox is empty" in page.text
    page = admin.get(ACTIONS)
    assert page.status_code == 200 and "No action requests yet" in page.text


def test_outbox_filters_by_status_profile_process_and_dates(
    admin: TestClient, seeded: Seeded
) -> None:
    everything = admin.get(OUTBOX).text
    assert _ids(everything) == [6, 5, 4, 3, 2, 1]
    assert _ids(admin.get(OUTBOX + "?status=retrying").text) == [
        seeded.unreachable,
        seeded.retrying,
    ]
    assert _ids(admin.get(OUTBOX + "?profile=legacy+RELAY").text) == [seeded.unreachable]
    assert _ids(admin.get(OUTBOX + "?process=reports&status=sent").text) == [seeded.partly_refused]
    today = datetime.now(UTC).date()
    assert len(_ids(admin.get(f"{OUTBOX}?since={today}&until={today}").text)) == 6
    before = admin.get(f"{OUTBOX}?until={today - timedelta(days=1)}")
    assert _ids(before.text) == [] and "No messages match these filters" in before.text


def test_bad_filter_values_are_named_at_their_fields(admin: TestClient, seeded: Seeded) -> None:
    page = admin.get(OUTBOX + "?status=lost&since=2025-02-30&until=soon")
    assert page.status_code == 422
    assert 'id="outbox-status-error">choose one of the statuses' in page.text
    assert 'id="outbox-since-error">enter a date as YYYY-MM-DD' in page.text
    assert 'id="outbox-until-error"' in page.text and _ids(page.text) == []
    page = admin.get(OUTBOX + "?since=2025-03-02&until=2025-03-01")
    assert page.status_code == 422 and "must not be before the start date" in page.text
    page = admin.get(ACTIONS + "?status=maybe")
    assert page.status_code == 422 and "choose pending, decided or expired" in page.text


def test_older_link_pages_through_messages_stored_in_one_instant(
    pr: Postroom, admin: TestClient
) -> None:
    pr.profiles.create(
        {
            "name": "Bulk",
            "smtp": {"host": "127.0.0.1", "port": 1, "security": "none"},
            "sender": {"from_address": "bulk@postroom.test"},
        }
    )
    message = {"to": ["x@postroom.test"], "subject": "Batch", "text": "."}
    ids = pr.send_many([SendRequest(message, profile="Bulk") for _ in range(60)])
    newest_first = sorted(ids, reverse=True)

    first = admin.get(OUTBOX + "?limit=25&profile=Bulk")
    assert _ids(first.text) == newest_first[:25]
    older = re.search(r'href="(/settings/email/outbox\?[^"]+)" rel="next"', first.text)
    assert older and "before=" in older.group(1) and "profile=Bulk" in older.group(1)
    second = admin.get(older.group(1).replace("&amp;", "&"))
    assert _ids(second.text) == newest_first[25:50] and "← Newest" in second.text
    third_url = re.search(r'href="(/settings/email/outbox\?[^"]+)" rel="next"', second.text)
    assert third_url
    third = admin.get(third_url.group(1).replace("&amp;", "&"))
    assert _ids(third.text) == newest_first[50:] and 'rel="next"' not in third.text

    # the paging itself, on a page size the form does not offer
    page, more = older_page(pr, {}, limit=7, before=newest_first[10])
    assert [m.id for m in page] == newest_first[11:18] and more
    assert admin.get(OUTBOX + "?before=999999").status_code == 404


def test_message_page_shows_the_attempts_and_offers_what_fits_its_status(
    admin: TestClient, seeded: Seeded
) -> None:
    failed = admin.get(f"{OUTBOX}/{seeded.failed}").text
    assert "550 5.1.1 no such user here" in failed and "gave up" in failed
    assert f'action="{OUTBOX}/{seeded.failed}/retry"' in failed
    assert "/cancel" not in failed
    sent = admin.get(f"{OUTBOX}/{seeded.sent}").text
    assert "2.0.0 queued" in sent and "/retry" not in sent and "/cancel" not in sent
    retrying = admin.get(f"{OUTBOX}/{seeded.retrying}").text
    assert "/retry" in retrying and "/cancel" in retrying and "next attempt" in retrying
    scheduled = admin.get(f"{OUTBOX}/{seeded.scheduled}").text
    assert "No delivery attempt yet" in scheduled and "/retry" not in scheduled
    assert admin.get(f"{OUTBOX}/424242").status_code == 404
    assert admin.get(f"{OUTBOX}/not-a-number").status_code == 404


def test_retry_and_cancel_by_post_and_conflicts_become_a_message(
    pr: Postroom, admin: TestClient, seeded: Seeded
) -> None:
    token = _csrf(admin.get(f"{OUTBOX}/{seeded.failed}").text)
    response = admin.post(f"{OUTBOX}/{seeded.failed}/retry", data={"csrf_token": token})
    assert response.status_code == 303
    assert response.headers["location"] == f"{OUTBOX}/{seeded.failed}"
    assert pr.outbox.get(seeded.failed).status == "queued"
    assert "is queued again" in admin.get(response.headers["location"]).text

    response = admin.post(f"{OUTBOX}/{seeded.scheduled}/cancel", data={"csrf_token": token})
    assert response.status_code == 303 and pr.outbox.get(seeded.scheduled).status == "cancelled"

    response = admin.post(f"{OUTBOX}/{seeded.sent}/retry", data={"csrf_token": token})
    assert response.status_code == 303 and pr.outbox.get(seeded.sent).status == "sent"
    page = admin.get(response.headers["location"]).text
    assert 'class="flash flash-error" role="alert"' in page
    assert f"Message {seeded.sent} is sent; only failed, cancelled" in page
    assert admin.post(f"{OUTBOX}/424242/cancel", data={"csrf_token": token}).status_code == 404


def test_viewers_and_forms_without_their_token_change_nothing(
    pr: Postroom, admin: TestClient, seeded: Seeded
) -> None:
    response = admin.post(f"{OUTBOX}/{seeded.retrying}/cancel", data={})
    assert response.status_code == 403 and "This form has expired" in response.text
    with _signed_in(pr, "vic", "vic-password-123") as viewer:
        page = viewer.get(f"{OUTBOX}/{seeded.retrying}").text
        assert page.count(' disabled aria-describedby="viewer-note"') == 2
        token = _csrf(page)
        for action in ("retry", "cancel"):
            response = viewer.post(
                f"{OUTBOX}/{seeded.retrying}/{action}", data={"csrf_token": token}
            )
            assert response.status_code == 403 and "viewer role" in response.text
    assert pr.outbox.get(seeded.retrying).status == "retrying"


def test_actions_list_statuses_filters_and_detail_without_tokens(
    pr: Postroom, admin: TestClient
) -> None:
    pending, decided, expired = seed_actions(pr)
    tokens = all_tokens(pending, decided, expired)
    page = admin.get(ACTIONS).text
    found = re.findall(r'href="/settings/email/actions/(act_[0-9a-f]+)"', page)
    assert found == [expired.id, decided.id, pending.id]
    for state, action in (("pending", pending), ("decided", decided), ("expired", expired)):
        filtered = admin.get(f"{ACTIONS}?status={state}").text
        assert re.findall(r'href="/settings/email/actions/(act_[0-9a-f]+)"', filtered) == [
            action.id
        ]
    assert "No action requests match" in admin.get(ACTIONS + "?process=other").text
    first = admin.get(ACTIONS + "?limit=25&before=" + decided.id).text
    assert re.findall(r'href="/settings/email/actions/(act_[0-9a-f]+)"', first) == [pending.id]

    detail = admin.get(f"{ACTIONS}/{decided.id}")
    assert detail.status_code == 200
    assert "Decided: approve" in detail.text and "lead@postroom.test" in detail.text
    outbox_ids = re.findall(r'href="/settings/email/outbox/(\d+)"', detail.text)
    assert len(outbox_ids) == 2
    pages = [page, detail.text] + [admin.get(f"{OUTBOX}/{i}").text for i in outbox_ids]
    pages.append(admin.get(OUTBOX).text)
    assert not [t for t in tokens for html in pages if t in html]
    assert "automation.example.com/orch/actions/" not in "".join(pages)
    assert admin.get(f"{ACTIONS}/act_0000000000000000").status_code == 404
