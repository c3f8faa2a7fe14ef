"""Inbound pages and OAuth2 Connect without a browser: health, list, detail, roles, CSRF."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import update

from postroom import Postroom
from postroom.api import create_app
from postroom.db.tables import utcnow
from postroom.imap.parse import InboundMessage as Parsed
from postroom.imap.parse import parse_inbound
from postroom.inbound.schemas import ListenerState
from postroom.inbound.store import Location
from postroom.inbound.tables import InboundMailbox
from tests.conftest import basic_profile

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

INBOUND = "/settings/email/inbound"
OAUTH2 = "/settings/email/oauth2"

PLAIN = (
    b"From: carol@postroom.test\r\nTo: support@postroom.test\r\nSubject: Invoice 42\r\n"
    b"Message-ID: <inv42@postroom.test>\r\nDate: Mon, 02 Mar 2026 10:00:00 +0000\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\nPlease pay <b>now</b> & thanks.\r\n"
)
HTML = (
    b"From: mallory@postroom.test\r\nTo: support@postroom.test\r\nSubject: Click me\r\n"
    b"Message-ID: <evil@postroom.test>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<p>hi</p><script>alert('pwned')</script>\r\n"
    b'--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="a.pdf"'
    b"\r\n\r\n%PDF-1.4\r\n--b--\r\n"
)


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
    return [int(i) for i in re.findall(r'aria-label="Inbound (\d+)"', html)]


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
def viewer(pr: Postroom) -> Iterator[TestClient]:
    with _signed_in(pr, "vic", "vic-password-123") as client:
        yield client


def _receiving(pr: Postroom, name: str) -> int:
    data = basic_profile(name)
    data["imap"] = {"host": "imap.example.com", "username": "s@example.com", "password": "pw"}
    return pr.profiles.create(data).id


def seed_inbound(pr: Postroom) -> dict[str, int]:
    """Two receiving profiles (one live, one whose listener died) and three messages."""
    boxes, store = pr.inbound.mailboxes, pr.inbound.store
    support = _receiving(pr, "Support inbox")
    mailbox = boxes.ensure(support, "INBOX")
    assert boxes.acquire(mailbox, "web-test", lease_s=300)
    boxes.position(mailbox, "web-test", 777)
    where = Location(mailbox, "web-test", support, "Support inbox", "INBOX", 777)
    ids: dict[str, int] = {}
    for uid, raw in ((1, PLAIN), (2, HTML)):
        parsed = parse_inbound(raw)
        assert isinstance(parsed, Parsed)
        stored = store.store(where, uid, parsed, size=len(raw), sha256=f"{uid:064x}", bounce=None)
        assert stored is not None
        ids["plain" if uid == 1 else "html"] = stored
    rejected = store.reject(
        where, 3, size=99_000_000, message_id="<big@x>", reason="over the 25 MB limit"
    )
    assert rejected is not None
    ids["rejected"] = rejected
    boxes.set_state(mailbox, "web-test", ListenerState.IDLE, polled=True)

    alerts = _receiving(pr, "Dead listener")
    dead = boxes.ensure(alerts, "INBOX")
    assert boxes.acquire(dead, "gone", lease_s=300)
    boxes.set_state(dead, "gone", ListenerState.IDLE, error="login refused", code="auth_failed")
    with pr.sessions() as s:  # the listener stopped refreshing its state an hour ago
        s.execute(
            update(InboundMailbox)
            .where(InboundMailbox.id == dead)
            .values(state_at=utcnow() - timedelta(hours=1))
        )
        s.commit()
    return ids


def test_inbound_health_list_filters_and_detail(admin: TestClient, pr: Postroom) -> None:
    ids = seed_inbound(pr)
    page = admin.get(INBOUND)
    assert page.status_code == 200
    html = page.text
    assert 'href="/settings/email/inbound" aria-current="page"' in html
    # the live listener is active; the dead one shows as error (stale), never as idle
    dead, live = re.findall(r'data-state="(\w+)"', html)  # profiles by name
    assert (dead, live) == ("error", "idle")
    assert 'badge-err status-badge listener-state" data-state="error"' in html
    assert "(stale)" in html and "listener_stale" in html and "777 / 3" in html
    assert _ids(html) == [ids["rejected"], ids["html"], ids["plain"]]
    assert "over the 25 MB limit" in html

    rejected = admin.get(INBOUND + "?status=rejected")
    assert _ids(rejected.text) == [ids["rejected"]]
    assert _ids(admin.get(INBOUND + "?profile=support+INBOX").text) == _ids(html)  # any case
    unknown = admin.get(INBOUND + "?profile=nobody")
    assert unknown.status_code == 422 and "there is no profile of that name" in unknown.text
    assert admin.get(INBOUND + "?profile=Support+inbox&status=received").status_code == 200
    assert admin.get(INBOUND + "?status=nonsense").status_code == 422

    plain = admin.get(f"{INBOUND}/{ids['plain']}").text
    assert "Invoice 42" in plain and "carol@postroom.test" in plain
    assert "Please pay &lt;b&gt;now&lt;/b&gt; &amp; thanks." in plain  # escaped, in <pre>
    assert '<pre class="mail-text">' in plain

    evil = admin.get(f"{INBOUND}/{ids['html']}").text
    assert "<script>alert" not in evil  # the HTML part is never page markup
    assert '<iframe class="mail-frame" sandbox srcdoc="&lt;p&gt;hi' in evil
    assert "a.pdf" in evil and "application/pdf" in evil

    refused = admin.get(f"{INBOUND}/{ids['rejected']}").text
    assert "Rejected:" in refused and "over the 25 MB limit" in refused
    assert admin.get(INBOUND + "/999999").status_code == 404
    assert admin.get(INBOUND + "/abc").status_code == 404


def test_inbound_empty_states(admin: TestClient) -> None:
    html = admin.get(INBOUND).text
    assert "No profile receives mail" in html and "No mail received yet" in html


def test_viewer_reads_inbound_and_cannot_connect(viewer: TestClient, pr: Postroom) -> None:
    ids = seed_inbound(pr)
    assert viewer.get(INBOUND).status_code == 200
    assert viewer.get(f"{INBOUND}/{ids['plain']}").status_code == 200
    config = _generic(pr)
    page = viewer.get(f"{OAUTH2}/{config}").text
    assert re.search(r'<button type="submit" class="btn" disabled[^>]*>Connect</button>', page)
    refused = viewer.post(f"{OAUTH2}/{config}/connect", data={"csrf_token": _csrf(page)})
    assert refused.status_code == 403


def _generic(pr: Postroom) -> int:
    return pr.oauth2.create(
        {
            "name": "Loopback IdP",
            "provider": "generic",
            "grant": "authorization_code",
            "client_id": "client-web",
            "client_secret": "s3cret-value",
            "authorize_url": "http://127.0.0.1:9/authorize",
            "token_url": "http://127.0.0.1:9/token",
            "scopes": ["mail", "offline_access"],
        }
    ).id


def test_connect_redirects_to_the_providers_sign_in(admin: TestClient, pr: Postroom) -> None:
    config = _generic(pr)
    page = admin.get(f"{OAUTH2}/{config}")
    assert page.status_code == 200
    html = page.text
    assert "Connection" in html and "Consent needed" in html and "badge-err" in html
    assert "mail offline_access" in html
    # without the form's token nothing starts
    assert admin.post(f"{OAUTH2}/{config}/connect", data={}).status_code == 403
    response = admin.post(f"{OAUTH2}/{config}/connect", data={"csrf_token": _csrf(html)})
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert (location.scheme, location.netloc, location.path) == (
        "http",
        "127.0.0.1:9",
        "/authorize",
    )
    query = parse_qs(location.query)
    assert query["client_id"] == ["client-web"] and query["response_type"] == ["code"]
    assert query["redirect_uri"] == ["http://testserver/oauth2/callback"]
    assert query["state"] and query["code_challenge"]
    assert pr.oauth2_lifecycle.status("Loopback IdP").state == "not_connected"
