"""The token lifecycle against the local Authlib authorization server (no mail servers).

Covered: authorization code + PKCE, state checks, cache until shortly before expiry, refresh
with rotation persisted (compare-and-swap), one refresh at a time across processes, a process
killed between the token endpoint's answer and the database write, invalid_grant → consent
needed, backoff on 5xx and timeouts, client credentials, device code, the network policy on
the token endpoint, and that no token shows in logs, status or errors.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import select, update

from postroom import Postroom
from postroom.db.tables import utcnow
from postroom.oauth2 import tokens as tokens_module
from postroom.oauth2.errors import FlowError, TokenError
from postroom.oauth2.http import post_form
from postroom.oauth2.tables import OAuth2Token
from tests.conftest import basic_profile
from tests.harness.certs import HarnessCerts
from tests.harness.oauth2_helpers import add_config, browser, connect, knobs
from tests.harness.oauth2server import LocalAuthServer

MakeApp = Callable[..., Postroom]
ROOT = Path(__file__).resolve().parents[2]


def row(app: Postroom) -> OAuth2Token:
    with app.sessions() as s:
        found = s.scalar(select(OAuth2Token))
        assert found is not None
        return found


def expire_stored(app: Postroom) -> None:
    with app.sessions() as s:
        s.execute(update(OAuth2Token).values(access_expires_at=utcnow() - timedelta(seconds=1)))
        s.commit()
    app.oauth2_lifecycle.tokens.drop_cached("local")


@pytest.fixture
def server(oauth2_server: LocalAuthServer) -> LocalAuthServer:
    with knobs(oauth2_server):
        yield oauth2_server


@pytest.fixture
def connected(app: Postroom, server: LocalAuthServer) -> Postroom:
    add_config(app, server)
    asyncio.run(connect(app))
    return app


# -- authorization code + PKCE ----------------------------------------------------------------


async def test_sign_in_records_account_scopes_and_tokens_encrypted(
    sqlite_app: Postroom, server: LocalAuthServer
) -> None:
    add_config(sqlite_app, server)
    done = await connect(sqlite_app)
    assert done.account == "alice@postroom.test"
    status = sqlite_app.oauth2_lifecycle.status("local")
    assert status.state == "connected" and not status.consent_needed
    assert status.account == "alice@postroom.test" and "mail" in status.scopes
    assert status.access_token_expires_at is not None and status.connected_at is not None
    stored = row(sqlite_app)
    token = server.tokens[-1]
    assert token.refresh_token not in (stored.refresh_token or "")  # ciphertext only
    assert stored.refresh_token and stored.refresh_token.startswith("gAAAA")
    assert server.calls("authorization_code") == 1


async def test_state_is_single_use_unknown_or_expired(
    sqlite_app: Postroom, server: LocalAuthServer
) -> None:
    add_config(sqlite_app, server)
    flows = sqlite_app.oauth2_lifecycle.flows
    start = await flows.start_authorization("local", redirect_uri="http://localhost:9/cb")
    from postroom.oauth2.protocol import parse_redirect

    code, state, _ = parse_redirect(await asyncio.to_thread(browser, start.authorization_url))
    assert state is not None
    with pytest.raises(FlowError) as unknown:
        await flows.complete_authorization(state="forged-" + state, code=code)
    assert unknown.value.error == "invalid_state"
    await flows.complete_authorization(state=state, code=code)
    with pytest.raises(FlowError) as used:
        await flows.complete_authorization(state=state, code=code)
    assert used.value.error == "state_used"

    start = await flows.start_authorization("local", redirect_uri="http://localhost:9/cb")
    code, state, _ = parse_redirect(await asyncio.to_thread(browser, start.authorization_url))
    from postroom.oauth2.tables import OAuth2Flow

    with sqlite_app.sessions() as s:
        s.execute(update(OAuth2Flow).values(expires_at=utcnow() - timedelta(seconds=1)))
        s.commit()
    with pytest.raises(FlowError) as expired:
        await flows.complete_authorization(state=state or "", code=code)
    assert expired.value.error == "state_expired"


async def test_declined_consent_is_reported(sqlite_app: Postroom, server: LocalAuthServer) -> None:
    add_config(sqlite_app, server)
    server.deny_next = True
    flows = sqlite_app.oauth2_lifecycle.flows
    start = await flows.start_authorization("local", redirect_uri="http://localhost:9/cb")
    from postroom.oauth2.protocol import parse_redirect

    code, state, error = parse_redirect(await asyncio.to_thread(browser, start.authorization_url))
    with pytest.raises(FlowError) as err:
        await flows.complete_authorization(state=state or "", code=code, **error)
    assert err.value.error == "access_denied"


# -- cache, expiry, refresh with rotation ------------------------------------------------------


async def test_cached_until_shortly_before_expiry_then_refreshed_and_rotation_stored(
    sqlite_app: Postroom, server: LocalAuthServer
) -> None:
    server.access_lifetime = 2
    add_config(sqlite_app, server)
    await connect(sqlite_app)
    tokens = sqlite_app.oauth2_lifecycle.tokens
    before = row(sqlite_app)
    first = await tokens.access_token("local")
    assert (await tokens.access_token("local")) is first and server.calls("refresh_token") == 0

    await asyncio.sleep(2.0)  # expired (10 % of the lifetime ahead of time)
    second = await tokens.access_token("local")
    assert second.token != first.token and second.fresh
    assert server.calls("refresh_token") == 1
    after = row(sqlite_app)
    assert after.version == before.version + 1
    assert after.refresh_token != before.refresh_token  # the rotated one, stored
    old = sqlite_app.box.decrypt(before.refresh_token or "")
    new = sqlite_app.box.decrypt(after.refresh_token or "")
    assert server.find(refresh_token=old).refresh_revoked  # type: ignore[union-attr]
    assert server.find(refresh_token=new) is not None
    # another process (a fresh service on the same database) reuses the stored token
    other = type(tokens)(tokens.store, policy=tokens.policy)
    assert (await other.access_token("local")).token == second.token
    assert server.calls("refresh_token") == 1


async def test_concurrent_refreshes_make_one_call(
    app: Postroom, app_factory: MakeApp, backend: str, server: LocalAuthServer
) -> None:
    add_config(app, server)
    await connect(app)
    expire_stored(app)
    others = [app_factory(backend) for _ in range(3)]  # separate caches and locks
    server.token_delay_s = 0.5
    results = await asyncio.gather(
        *(a.oauth2_lifecycle.tokens.access_token("local") for a in [app, *others, app])
    )
    assert server.calls("refresh_token") == 1
    assert len({t.token for t in results}) == 1


def child(app: Postroom, mode: str, lease_s: float = 30.0) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [
        mode,
        str(app.settings.data_dir),
        app.settings.database_url or "",
        "local",
        str(lease_s),
    ]
    return subprocess.Popen(
        [sys.executable, "-m", "tests.harness.oauth2_child", *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.postgres
async def test_refreshes_from_several_processes_make_one_call(
    app: Postroom, server: LocalAuthServer
) -> None:
    add_config(app, server)
    await connect(app)
    expire_stored(app)
    server.token_delay_s = 1.0
    procs = [child(app, "token") for _ in range(4)]
    outputs = [await asyncio.to_thread(p.communicate, timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs
    assert len({out.strip() for out, _ in outputs}) == 1
    assert server.calls("refresh_token") == 1


@pytest.mark.parametrize("rotation", ["strict", "lenient"])
async def test_process_killed_between_answer_and_store(
    sqlite_app: Postroom, server: LocalAuthServer, rotation: str
) -> None:
    """The answer was received, the process died before storing it. The lease it held
    expires; the next process refreshes with the refresh token still stored (the old one).

    strict rotation (the old refresh token died when the new one was issued): the refresh
    fails with invalid_grant → consent needed, deliveries paused, a person reconnects.
    lenient rotation (the old one stays valid): the next process recovers on its own.
    """
    server.rotation = rotation
    add_config(sqlite_app, server)
    await connect(sqlite_app)
    expire_stored(sqlite_app)
    before = row(sqlite_app)

    proc = child(sqlite_app, "die-before-store", lease_s=2.0)
    await asyncio.to_thread(proc.communicate, timeout=60)
    assert proc.returncode == 9
    assert server.calls("refresh_token") == 1
    dead = row(sqlite_app)
    assert dead.refresh_token == before.refresh_token and dead.version == before.version
    assert dead.lease_owner is not None  # left behind by the dead process

    tokens = sqlite_app.oauth2_lifecycle.tokens
    started = time.monotonic()
    if rotation == "strict":
        with pytest.raises(TokenError) as err:
            await tokens.access_token("local")
        assert err.value.error == "invalid_grant" and err.value.consent_needed
        assert sqlite_app.oauth2_lifecycle.status("local").state == "consent_needed"
        await connect(sqlite_app)  # a person reconnects
        assert sqlite_app.oauth2_lifecycle.status("local").state == "connected"
    else:
        token = await tokens.access_token("local")
        assert token.fresh and row(sqlite_app).version == before.version + 1
    assert time.monotonic() - started < 10  # waited for the lease, not forever
    assert server.calls("refresh_token") == 2


# -- failures ------------------------------------------------------------------------------------


async def test_invalid_grant_marks_consent_needed_and_stops_calling(
    connected: Postroom, server: LocalAuthServer
) -> None:
    server.revoke_user("alice@postroom.test")
    expire_stored(connected)
    tokens = connected.oauth2_lifecycle.tokens
    with pytest.raises(TokenError) as err:
        await tokens.access_token("local")
    assert err.value.consent_needed and err.value.error == "invalid_grant"
    status = connected.oauth2_lifecycle.status("local")
    assert status.state == "consent_needed" and status.consent_needed
    assert status.last_error is not None and status.last_error.error == "invalid_grant"
    with pytest.raises(TokenError):
        await tokens.access_token("local", ignore_backoff=True)
    assert server.calls("refresh_token") == 1  # no second call: a person must act
    await connect(connected)
    assert (await tokens.access_token("local")).fresh is False


async def test_server_errors_back_off(connected: Postroom, server: LocalAuthServer) -> None:
    expire_stored(connected)
    server.fail_next.append((503, {"error": "temporarily_unavailable"}))
    tokens = connected.oauth2_lifecycle.tokens
    with pytest.raises(TokenError) as err:
        await tokens.access_token("local")
    assert err.value.transient and not err.value.consent_needed
    status = connected.oauth2_lifecycle.status("local")
    assert status.state == "backing_off" and status.retry_after is not None
    with pytest.raises(TokenError):  # within the backoff: no call at all
        await tokens.access_token("local")
    assert server.calls("refresh_token") == 1
    token = await tokens.access_token("local", ignore_backoff=True)  # a person's test
    assert token.fresh and connected.oauth2_lifecycle.status("local").state == "connected"


async def test_a_silent_token_endpoint_times_out_and_backs_off(
    connected: Postroom, server: LocalAuthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens_module, "post_form", partial(post_form, timeout=0.3))
    expire_stored(connected)
    server.token_delay_s = 1.0
    with pytest.raises(TokenError) as err:
        await connected.oauth2_lifecycle.tokens.access_token("local")
    assert err.value.error == "network_error" and err.value.transient
    assert "did not answer" in err.value.message
    assert connected.oauth2_lifecycle.status("local").state == "backing_off"


async def test_blocked_token_endpoint_is_refused_by_policy(
    app_factory: MakeApp, server: LocalAuthServer
) -> None:
    app = app_factory("sqlite", net_deny="127.0.0.0/8")
    add_config(app, server, grant="client_credentials", mailbox="alice@postroom.test")
    with pytest.raises(TokenError) as err:
        await app.oauth2_lifecycle.tokens.access_token("local")
    assert "network policy" in err.value.message and not err.value.transient
    assert server.calls("client_credentials") == 0


# -- other grants --------------------------------------------------------------------------------


async def test_client_credentials_fetch_cache_and_refetch(
    sqlite_app: Postroom, server: LocalAuthServer
) -> None:
    add_config(
        sqlite_app, server, grant="client_credentials", mailbox="alice@postroom.test",
        username="alice@postroom.test", scopes=("mail",),
    )  # fmt: skip
    lifecycle = sqlite_app.oauth2_lifecycle
    assert lifecycle.status("local").state == "not_connected"
    done = await lifecycle.flows.connect_client_credentials("local")
    assert done.account == "alice@postroom.test"
    first = await lifecycle.tokens.access_token("local")
    assert first.username == "alice@postroom.test"
    expire_stored(sqlite_app)
    second = await lifecycle.tokens.access_token("local")
    assert second.token != first.token
    assert server.calls("client_credentials") == 2
    assert lifecycle.status("local").state == "connected"


async def test_device_code_flow(sqlite_app: Postroom, server: LocalAuthServer) -> None:
    add_config(sqlite_app, server, grant="device_code")
    flows = sqlite_app.oauth2_lifecycle.flows
    start = await flows.start_device("local")
    assert start.user_code and start.verification_uri.endswith("/device")
    await asyncio.sleep(start.interval_s)
    assert await flows.poll_device("local") is None  # pending
    assert await flows.poll_device("local") is None  # too early: no call made
    server.approve_device(start.user_code)
    await asyncio.sleep(start.interval_s)
    done = await flows.poll_device("local")
    assert done is not None and done.account == "alice@postroom.test"
    assert sqlite_app.oauth2_lifecycle.status("local").state == "connected"
    assert server.calls("urn:ietf:params:oauth:grant-type:device_code") == 2


async def test_not_connected_yet_is_consent_needed(
    sqlite_app: Postroom, server: LocalAuthServer
) -> None:
    add_config(sqlite_app, server)
    with pytest.raises(TokenError) as err:
        await sqlite_app.oauth2_lifecycle.tokens.access_token("local")
    assert err.value.error == "not_connected" and "oauth2 connect local" in err.value.message


# -- secrets -------------------------------------------------------------------------------------


async def test_no_token_in_logs_status_errors_or_reprs(
    connected: Postroom, server: LocalAuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = connected.oauth2_lifecycle.tokens
    token = await tokens.access_token("local")
    expire_stored(connected)
    fresh = await tokens.access_token("local")
    server.revoke_user("alice@postroom.test")
    expire_stored(connected)
    with pytest.raises(TokenError) as err:
        await tokens.access_token("local")
    secrets = {t.access_token for t in server.tokens} | {
        t.refresh_token for t in server.tokens if t.refresh_token
    }
    # the authorization server's own (Authlib) debug log in this process is not ours
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("authlib")]
    shown = " ".join(
        [
            *ours,
            connected.oauth2_lifecycle.status("local").model_dump_json(),
            str(err.value),
            err.value.detail,
            repr(token),
            repr(fresh),
            token.describe(),
            repr(connected.oauth2_lifecycle.store.load("local")),
        ]
    )
    assert not [s for s in secrets if s in shown]
    assert hashlib.sha256(token.token.encode()).hexdigest() not in shown


async def test_key_rotation_reencrypts_stored_tokens(connected: Postroom) -> None:
    before = row(connected)
    token = await connected.oauth2_lifecycle.tokens.access_token("local")
    connected.rotate_keys(retire_old=True)
    after = row(connected)
    assert after.refresh_token != before.refresh_token
    connected.oauth2_lifecycle.tokens.drop_cached("local")
    assert (await connected.oauth2_lifecycle.tokens.access_token("local")).token == token.token


# -- TLS to the token endpoint -----------------------------------------------------------------


@pytest.mark.parametrize("cert", ["valid", "wrong_host"])
async def test_https_token_endpoint_verifies_the_host_name(
    sqlite_app: Postroom, harness_certs: HarnessCerts, cert: str
) -> None:
    """The connection goes to the address the policy checked; TLS still checks 'localhost'."""
    files = getattr(harness_certs, cert)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert, files.key)
    tls_server = LocalAuthServer(url_host="localhost", ssl_context=context).start()
    try:
        add_config(sqlite_app, tls_server, grant="client_credentials",
                   mailbox="alice@postroom.test", username="alice@postroom.test")  # fmt: skip
        tokens = sqlite_app.oauth2_lifecycle.tokens
        tokens.ssl_context = harness_certs.client_context()
        if cert == "valid":
            token = await tokens.access_token("local")
            assert token.fresh and tls_server.calls("client_credentials") == 1
        else:
            with pytest.raises(TokenError) as err:
                await tokens.access_token("local")
            assert "TLS" in err.value.message and not err.value.transient
            assert tls_server.calls("client_credentials") == 0
    finally:
        tls_server.stop()


# -- paused deliveries -------------------------------------------------------------------------


async def test_consent_needed_pauses_sending_profiles_only_while_they_use_it(
    connected: Postroom, server: LocalAuthServer
) -> None:
    smtp = {"host": "smtp.example.com", "auth": "oauth2", "oauth2_config": "local"}
    connected.profiles.create(basic_profile("Sends", **smtp))
    connected.profiles.create(basic_profile("Other"))
    connected.send({"to": ["x@example.com"], "subject": "s", "text": "t"}, profile="Sends")
    server.revoke_user("alice@postroom.test")
    expire_stored(connected)
    with pytest.raises(TokenError):
        await connected.oauth2_lifecycle.tokens.access_token("local")
    assert connected.oauth2_lifecycle.status("local").paused_profiles == ["Sends"]
    queue = connected.outbox.queue
    assert queue.claim("w", limit=10, lease_s=30) == [] and queue.due_or_in_flight() == 0

    # switched to a password meanwhile: no longer held back by the configuration
    connected.profiles.update(
        "Sends", {"smtp": {"auth": "basic", "username": "u", "password": "p"}}
    )
    assert connected.oauth2_lifecycle.status("local").paused_profiles == []
    assert len(queue.claim("w", limit=10, lease_s=30)) == 1
