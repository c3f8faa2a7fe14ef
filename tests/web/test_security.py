"""Signed cookies, sealed form secrets, sign-in throttling and the setup link (no browser)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from postroom import Postroom
from postroom.throttles import ThrottleEvent, Throttles, minutes, sign_in_checks
from postroom.web.security import Signer, WebSession, load_installation_secret, new_session
from postroom.web.setup import consume_setup_token, setup_url, valid_setup_token


def test_signed_values_cannot_be_altered() -> None:
    signer = Signer(b"k" * 32)
    token = signer.sign("session", {"u": "ada", "r": "viewer"})
    assert signer.unsign("session", token) == {"u": "ada", "r": "viewer"}
    body, mac = token.split(".")
    forged = Signer(b"k" * 32).sign("session", {"u": "ada", "r": "admin"}).split(".")[0]
    assert signer.unsign("session", f"{forged}.{mac}") is None
    assert signer.unsign("flash", token) is None  # keys differ per purpose
    assert Signer(b"other" * 8).unsign("session", token) is None
    assert signer.unsign("session", "garbage") is None


def test_sessions_expire_and_sign_in_rotates_them() -> None:
    signer = Signer(b"k" * 32)
    anonymous = new_session()
    signed_in = anonymous.signed_in("ada", "admin")
    assert signed_in.sid != anonymous.sid and signed_in.csrf != anonymous.csrf
    assert WebSession.from_cookie(signer, signed_in.to_cookie(signer)) == signed_in
    old = WebSession(sid="s", csrf="c", issued=int(time.time()) - 13 * 3600, user="ada")
    assert WebSession.from_cookie(signer, old.to_cookie(signer)) is None
    assert signed_in.csrf_ok(signed_in.csrf)
    assert not signed_in.csrf_ok(None) and not signed_in.csrf_ok("x") and not signed_in.csrf_ok("é")


def test_sealed_form_secrets_expire_and_stay_in_their_session() -> None:
    signer = Signer(b"k" * 32)
    token = signer.seal("form-password:s1", "hunter2-long")
    assert "hunter2" not in token
    assert signer.unseal("form-password:s1", token, ttl_s=60) == "hunter2-long"
    assert signer.unseal("form-password:s2", token, ttl_s=60) is None


def test_throttle_counts_per_username_and_address(app: Postroom) -> None:
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    throttle = Throttles(app.sessions, clock=lambda: now[0])
    for _ in range(5):
        assert throttle.wait_s(*sign_in_checks("Ada", "10.0.0.1")) == 0
        throttle.hit(*sign_in_checks("Ada", "10.0.0.1"))
    assert throttle.wait_s(*sign_in_checks("ada", "10.0.0.1")) == pytest.approx(900)
    assert minutes(throttle.wait_s(*sign_in_checks("ada", "10.0.0.1"))) == 15
    assert throttle.wait_s(*sign_in_checks("ada", "10.0.0.2")) == 0
    assert throttle.wait_s(*sign_in_checks("bob", "10.0.0.1")) == 0
    now[0] += timedelta(seconds=901)
    assert throttle.wait_s(*sign_in_checks("ada", "10.0.0.1")) == 0
    throttle.hit(*sign_in_checks("ada", "10.0.0.1"))
    throttle.clear(*sign_in_checks("ada", "10.0.0.1")[0])
    assert throttle.wait_s(*sign_in_checks("ada", "10.0.0.1")) == 0


def test_old_throttle_events_are_swept(app: Postroom) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    Throttles(app.sessions, clock=lambda: start).hit(*sign_in_checks("ada", "10.0.0.1"))
    later = Throttles(app.sessions, clock=lambda: start + timedelta(minutes=16))
    later.hit(*sign_in_checks("bob", "10.0.0.1"))
    with app.sessions() as s:
        assert s.scalar(select(func.count(ThrottleEvent.id))) == 3  # bob's three, not ada's


def test_installation_secret_is_made_once_and_kept(sqlite_app: Postroom) -> None:
    first = load_installation_secret(sqlite_app)
    assert len(first) >= 32
    assert load_installation_secret(sqlite_app) == first


def test_setup_link_works_once_and_only_without_an_admin(sqlite_app: Postroom) -> None:
    url = setup_url(sqlite_app, base_url="https://mail.example.com/")
    assert url is not None and url.startswith("https://mail.example.com/setup/")
    token = url.rsplit("/", 1)[1]
    assert valid_setup_token(sqlite_app, token)
    assert not valid_setup_token(sqlite_app, token + "x")
    newer = setup_url(sqlite_app)
    assert newer is not None and newer.startswith("http://127.0.0.1:8600/setup/")
    assert not valid_setup_token(sqlite_app, token)  # a new link voids the old one
    token = newer.rsplit("/", 1)[1]
    assert consume_setup_token(sqlite_app, token) is not None
    assert consume_setup_token(sqlite_app, token) is None
    sqlite_app.accounts.create_admin("ada", "ada-password-123")
    assert setup_url(sqlite_app) is None
