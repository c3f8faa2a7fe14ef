"""OAuth2 sign-in to the real Postfix (submission) and Dovecot (IMAP) of the harness.

Dovecot validates each bearer token at the local authorization server's introspection
endpoint; Postfix's SASL goes through Dovecot. So a passing login here means the token was
issued by the authorization server to this mailbox and is still active.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from sqlalchemy import update

from postroom import Postroom
from postroom.db.tables import utcnow
from postroom.diagnostics.steps import Diagnosis
from postroom.oauth2 import sasl
from postroom.oauth2.access import bearer_for
from postroom.oauth2.smtp_auth import authenticate
from postroom.oauth2.tables import OAuth2Token
from postroom.outbox.worker import Worker
from tests.harness.mailservers import MailServers
from tests.harness.oauth2_helpers import add_config, connect, knobs
from tests.harness.oauth2server import LocalAuthServer

pytestmark = pytest.mark.mailservers

ALICE = "alice@postroom.test"
BOB = "bob@postroom.test"
MakeApp = Callable[..., Postroom]


def profile(servers: MailServers, name: str = "M365-like", config: str = "local") -> dict[str, Any]:
    ca = Path(servers.ca_pem).read_text()
    return {
        "name": name,
        "smtp": {
            "host": servers.host, "port": servers.ports["submission"], "security": "starttls",
            "ca_bundle": ca, "auth": "oauth2", "oauth2_config": config,
            "connect_timeout_s": 5, "send_timeout_s": 10,
        },
        "sender": {"from_address": ALICE},
        "imap": {
            "host": servers.host, "port": servers.ports["imaps"], "security": "tls",
            "ca_bundle": ca, "auth": "oauth2", "oauth2_config": config,
        },
    }  # fmt: skip


@pytest.fixture
def connected(
    app_factory: MakeApp, mail_servers: MailServers, oauth2_server: LocalAuthServer
) -> Postroom:
    app = app_factory("sqlite")
    add_config(app, oauth2_server)
    asyncio.run(connect(app))
    app.profiles.create(profile(mail_servers))
    return app


def names(d: Diagnosis) -> list[str]:
    return [s.name for s in d.steps]


async def test_xoauth2_diagnosis_passes_on_postfix_and_dovecot(connected: Postroom) -> None:
    d = await connected.atest_profile("M365-like", smtp=True, imap=True)
    assert d.ok, d.error
    assert names(d) == [
        "smtp.resolve", "smtp.connect", "smtp.greeting", "smtp.ehlo", "smtp.starttls",
        "smtp.tls", "smtp.oauth2", "smtp.auth",
        "imap.resolve", "imap.connect", "imap.tls", "imap.capability", "imap.oauth2",
        "imap.auth", "imap.select",
    ]  # fmt: skip
    by_name = {s.name: s.detail for s in d.steps}
    assert "XOAUTH2" in by_name["smtp.auth"] and ALICE in by_name["smtp.auth"]
    assert "XOAUTH2" in by_name["imap.auth"]
    assert f"access token for {ALICE}" in by_name["smtp.oauth2"]


async def test_roundtrip_and_delivery_through_the_worker(
    connected: Postroom, mail_servers: MailServers
) -> None:
    d = await connected.atest_profile("M365-like", roundtrip=True, send_to=ALICE)
    assert d.ok, d.error
    subject = f"oauth2 delivery {uuid.uuid4().hex[:8]}"
    connected.send({"to": [ALICE], "subject": subject, "text": "hi"}, profile="M365-like")
    await Worker(connected).run(drain=True)
    assert [m.status for m in connected.outbox.list()] == ["sent"]
    await asyncio.to_thread(mail_servers.wait_for_mail, ALICE, lambda m: m["Subject"] == subject)


async def test_oauthbearer_works_on_smtp_and_imap(
    connected: Postroom, mail_servers: MailServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sasl, "MECHANISMS", ("oauthbearer",))
    d = await connected.atest_profile("M365-like", smtp=True, imap=True)
    assert d.ok, d.error
    auth = [s.detail for s in d.steps if s.name.endswith(".auth")]
    assert len(auth) == 2 and all("(OAUTHBEARER)" in detail for detail in auth)


async def test_a_token_for_another_mailbox_is_refused(
    connected: Postroom, mail_servers: MailServers
) -> None:
    token = await bearer_for("local")
    client = aiosmtplib.SMTP(
        hostname=mail_servers.host, port=mail_servers.ports["submission"],
        tls_context=mail_servers.client_ssl_context(), start_tls=True,
    )  # fmt: skip
    await client.connect()
    try:
        wrong = type(token)(**{**token.__dict__, "username": BOB})
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as err:
            await authenticate(client, wrong, host=mail_servers.host, port=0)
        assert err.value.code == 535
        # and the right user with a made-up token: refused too
        forged = type(token)(**{**token.__dict__, "token": "at-forged"})
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await authenticate(client, forged, host=mail_servers.host, port=0)
    finally:
        client.close()


def _expire_cached(app: Postroom) -> None:
    with app.sessions() as s:
        s.execute(update(OAuth2Token).values(access_expires_at=utcnow() - timedelta(seconds=1)))
        s.commit()
    app.oauth2_lifecycle.tokens.drop_cached("local")


async def test_revoked_grant_is_oauth2_token_failed_and_deliveries_wait_until_reconnected(
    connected: Postroom, mail_servers: MailServers, oauth2_server: LocalAuthServer
) -> None:
    oauth2_server.revoke_user(ALICE)
    _expire_cached(connected)

    d = await connected.atest_profile("M365-like")
    assert not d.ok and d.error is not None
    assert d.error.code == "oauth2_token_failed"
    assert d.steps[-1].name == "oauth2"
    assert "invalid_grant" in d.error.message and "reconnect" in d.error.hint
    assert "error=invalid_grant" in d.steps[-1].detail
    status = connected.oauth2_lifecycle.status("local")
    assert status.state == "consent_needed" and status.paused_profiles == ["M365-like"]

    subject = f"held {uuid.uuid4().hex[:8]}"
    connected.send({"to": [ALICE], "subject": subject, "text": "wait"}, profile="M365-like")
    await Worker(connected).run(drain=True)  # returns: a paused profile has nothing due
    assert [m.status for m in connected.outbox.list()] == ["queued"]

    await connect(connected)
    assert connected.oauth2_lifecycle.status("local").paused_profiles == []
    await Worker(connected).run(drain=True)
    assert [m.status for m in connected.outbox.list()] == ["sent"]
    await asyncio.to_thread(mail_servers.wait_for_mail, ALICE, lambda m: m["Subject"] == subject)


async def test_revocation_found_by_the_worker_pauses_and_the_message_is_not_failed(
    connected: Postroom, mail_servers: MailServers, oauth2_server: LocalAuthServer
) -> None:
    # the access token is still cached: the server refuses it, the refresh meets invalid_grant
    await bearer_for("local")
    oauth2_server.revoke_user(ALICE)
    subject = f"found {uuid.uuid4().hex[:8]}"
    connected.send({"to": [ALICE], "subject": subject, "text": "x"}, profile="M365-like")
    await Worker(connected).run(drain=True)
    [message] = connected.outbox.list()
    assert message.status == "retrying" and "reconnect" in (message.last_error or "")
    assert connected.oauth2_lifecycle.status("local").paused_profiles == ["M365-like"]

    await connect(connected)
    await Worker(connected).run(drain=True)
    assert [m.status for m in connected.outbox.list()] == ["sent"]


async def test_imap_login_with_a_revoked_token_drops_it(
    connected: Postroom, oauth2_server: LocalAuthServer
) -> None:
    with knobs(oauth2_server, rotation="lenient"):
        first = await bearer_for("local")
        oauth2_server.find(access_token=first.token).revoked = True  # type: ignore[union-attr]
        d = await connected.atest_profile("M365-like", smtp=False, imap=True)
        assert d.error is not None and d.error.code == "auth_failed"
        # the refused token was forgotten: the next test fetches a new one and passes
        d = await connected.atest_profile("M365-like", smtp=False, imap=True)
        assert d.ok, d.error
        assert (await bearer_for("local")).token != first.token


async def test_sasl_wire_format_is_what_dovecot_accepts(connected: Postroom) -> None:
    token = await bearer_for("local")
    raw = sasl.xoauth2_response(token.username or "", token.token)
    assert base64.b64encode(raw).startswith(b"dXNlcj1")  # "user="


async def test_app_only_token_signs_in_to_the_granted_mailbox(
    app_factory: MakeApp, mail_servers: MailServers, oauth2_server: LocalAuthServer
) -> None:
    app = app_factory("sqlite")
    add_config(app, oauth2_server, "app-only", grant="client_credentials", mailbox=ALICE,
               username=ALICE, scopes=("mail",))  # fmt: skip
    app.profiles.create(profile(mail_servers, "App only", config="app-only"))
    d = await app.atest_profile("App only", smtp=True, imap=True)
    assert d.ok, d.error
    assert app.oauth2_lifecycle.status("app-only").state == "connected"
