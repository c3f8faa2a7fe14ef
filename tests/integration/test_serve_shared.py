"""Two real `postroom serve` processes on one database behave as one: a session signed out
through one is refused by the other, and X-Forwarded-For is believed only from the
proxies the operator lists (uvicorn's own default would believe any local client)."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from postroom import Postroom
from postroom.throttles import sign_in_checks
from tests.integration.serve_procs import csrf, env_for, serving, sign_in

ADA = ("ada", "ada-password-123")
PAGE = "/settings/email"


def test_two_serve_processes_share_sessions_and_throttles(
    app_factory: Callable[..., Postroom], backend: str
) -> None:
    app = app_factory(backend)
    app.accounts.create_admin(*ADA)
    app.accounts.create_admin("bob", "bob-password-123")
    envs = env_for(app), env_for(app, POSTROOM_TRUSTED_PROXIES="127.0.0.1")
    with (
        serving(*envs) as (one, behind_proxy),
        httpx.Client(base_url=one, timeout=30) as a,
        httpx.Client(base_url=behind_proxy, timeout=30) as b,
    ):
        assert sign_in(a, *ADA) == 303
        cookie = {"Cookie": f"postroom_session={a.cookies['postroom_session']}"}
        assert b.get(PAGE, headers=cookie).status_code == 200
        b.cookies.set("postroom_session", a.cookies["postroom_session"])
        assert b.post("/logout", data={"csrf_token": csrf(b.get(PAGE).text)}).status_code == 303
        assert a.get(PAGE, headers=cookie).status_code == 303  # signed out everywhere

        a.cookies.clear()

        # no proxy is trusted: a forged X-Forwarded-For does not escape the throttle (the
        # first failures are counted directly: each costs a password hash through HTTP)
        for _ in range(3):
            app.throttles.hit(*sign_in_checks("ada", "127.0.0.1"))
        for i in range(2):
            forged = {"X-Forwarded-For": f"127.0.9.{i + 1}"}
            assert sign_in(a, "ada", "wrong-password", headers=forged) == 401
        assert sign_in(a, *ADA, headers={"X-Forwarded-For": "127.0.9.99"}) == 429

        # a trusted proxy's word is believed: its clients are counted apart
        with httpx.Client(base_url=behind_proxy, timeout=30) as c:
            for _ in range(3):
                app.throttles.hit(*sign_in_checks("bob", "127.0.8.1"))
            for _ in range(2):
                hop = {"X-Forwarded-For": "127.0.8.1"}
                assert sign_in(c, "bob", "wrong-password", headers=hop) == 401
            assert sign_in(c, "bob", "bob-password-123", headers=hop) == 429
            other = {"X-Forwarded-For": "127.0.8.2"}
            assert sign_in(c, "bob", "bob-password-123", headers=other) == 303
