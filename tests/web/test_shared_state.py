"""Sessions and throttles live in the database: two app instances on one database (two
``postroom serve`` processes behind a load balancer, or one restarted) behave as one.

Each test opens two Postroom objects on the same SQLite file or PostgreSQL schema, each
with its own FastAPI app and therefore its own in-process state.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable

import pytest
from sqlalchemy import update

from postroom import Postroom
from postroom.api import create_app
from postroom.db.tables import Admin
from postroom.throttles import FAILED_AUTH_ADDRESS, SIGN_IN_ACCOUNT, sign_in_checks

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

ADA = ("ada", "ada-password-123")
PAGE = "/settings/email"


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def _client(pr: Postroom, address: str = "127.0.0.1") -> TestClient:
    return TestClient(create_app(pr), follow_redirects=False, client=(address, 50000))


def _sign_in(client: TestClient, username: str, password: str) -> int:
    token = _csrf(client.get("/login").text)
    response = client.post(
        "/login", data={"csrf_token": token, "username": username, "password": password}
    )
    return response.status_code


def _cookie_on(client: TestClient, cookie: str) -> int:
    """Status of the protected page when the request carries ``cookie`` as its session
    (an explicit Cookie header: the client's own cookie jar is not consulted)."""
    return client.get(PAGE, headers={"Cookie": f"postroom_session={cookie}"}).status_code


Pair = tuple[Postroom, Postroom]


@pytest.fixture
def two(app_factory: Callable[..., Postroom], backend: str) -> Pair:
    first = app_factory(backend)
    first.accounts.create_admin(*ADA, email="ada@example.com")
    return first, app_factory(backend)


def test_sign_out_ends_the_session_in_every_process_and_after_a_restart(
    two: Pair, app_factory: Callable[..., Postroom], backend: str
) -> None:
    one, other = two
    with _client(one) as a, _client(other) as b:
        assert _sign_in(a, *ADA) == 303
        cookie = a.cookies["postroom_session"]
        assert _cookie_on(b, cookie) == 200  # the other process knows the session
        token = _csrf(a.get(PAGE).text)
        assert a.post("/logout", data={"csrf_token": token}).status_code == 303
        assert a.get(PAGE).status_code == 303
        # the signed-out cookie, replayed to the other process: sign in again
        response = b.get(PAGE, headers={"Cookie": f"postroom_session={cookie}"})
        assert response.status_code == 303 and response.headers["location"].startswith("/login")
    restarted = app_factory(backend)
    with _client(restarted) as c:
        assert _cookie_on(c, cookie) == 303


def test_a_new_password_ends_the_sessions_of_the_account_everywhere(two: Pair) -> None:
    one, other = two
    one.accounts.create_admin("bob", "bob-password-123")
    with _client(one) as a, _client(other) as b, _client(one) as bob:
        assert _sign_in(a, *ADA) == 303 and _sign_in(bob, "bob", "bob-password-123") == 303
        cookie = a.cookies["postroom_session"]
        # the operator sets a new password (CLI, Python API): no process accepts old sessions
        other.accounts.set_password("ada", "ada-new-password-1")
        assert _cookie_on(a, cookie) == 303
        assert _cookie_on(b, cookie) == 303
        assert bob.get(PAGE).status_code == 200  # other accounts keep theirs

        # a reset link used through one process ends the sessions held by the other
        assert _sign_in(a, "ada", "ada-new-password-1") == 303
        cookie = a.cookies["postroom_session"]
        ticket = one.accounts.request_password_reset("ada")
        assert ticket is not None
        form = b.get(f"/reset/{ticket.token}").text
        response = b.post(
            f"/reset/{ticket.token}",
            data={
                "csrf_token": _csrf(form),
                "password": "ada-third-password",
                "password_confirm": "ada-third-password",
            },
        )
        assert response.status_code == 303
        assert _cookie_on(a, cookie) == 303
        assert _sign_in(a, "ada", "ada-third-password") == 303


def test_a_changed_role_applies_to_open_sessions(two: Pair) -> None:
    one, other = two
    other.accounts.create_admin("vic", "vic-password-123", role="admin")
    with _client(one) as a:
        assert _sign_in(a, "vic", "vic-password-123") == 303
        with one.sessions() as s:
            s.execute(update(Admin).where(Admin.username == "vic").values(role="viewer"))
            s.commit()
        token = _csrf(a.get(PAGE).text)
        response = a.post("/settings/email/profiles/1/default", data={"csrf_token": token})
        assert response.status_code == 403 and "viewer role" in response.text


def test_failed_sign_ins_count_across_processes(two: Pair) -> None:
    one, other = two
    with _client(one) as a, _client(other) as b:
        for client in (a, b, a, b, a):
            assert _sign_in(client, "ada", "wrong-password") == 401
        # the sixth try, right password, through either process: throttled
        assert _sign_in(b, *ADA) == 429
        assert _sign_in(a, *ADA) == 429


def test_one_account_is_throttled_whatever_address_guesses(two: Pair) -> None:
    one, other = two
    one.accounts.create_admin("bob", "bob-password-123")
    # most of the guesses counted directly (each costs a password hash through HTTP) ...
    for i in range(SIGN_IN_ACCOUNT.count - 3):
        one.throttles.hit(*sign_in_checks("ada", f"127.0.1.{i + 1}"))
    # ... the last ones through both processes, each from another address
    for i, pr in enumerate((one, other, one)):
        with _client(pr, f"127.0.2.{i + 1}") as guesser:
            assert _sign_in(guesser, "ADA", f"guess-{i}-password") == 401
    with _client(other, "127.0.2.99") as owner:
        assert _sign_in(owner, *ADA) == 429
        assert _sign_in(owner, "bob", "bob-password-123") == 303  # other accounts are not


def test_one_address_is_throttled_whatever_account_it_guesses(two: Pair) -> None:
    one, other = two
    for i in range(FAILED_AUTH_ADDRESS.count - 3):
        other.throttles.hit(*sign_in_checks(f"user-{i}", "127.0.3.1"))
    with _client(one, "127.0.3.1") as a, _client(other, "127.0.3.1") as b:
        for i, client in enumerate((a, b, a)):
            assert _sign_in(client, f"other-user-{i}", "some-password-1") == 401
        token = _csrf(b.get("/login").text)
        response = b.post("/login", data={"csrf_token": token, "username": ADA[0],
                                          "password": ADA[1]})  # fmt: skip
        assert response.status_code == 429
        assert "Too many failed sign-ins" in response.text
        assert 0 < int(response.headers["Retry-After"]) <= FAILED_AUTH_ADDRESS.window.seconds
    with _client(other, "127.0.3.2") as elsewhere:
        assert _sign_in(elsewhere, *ADA) == 303
