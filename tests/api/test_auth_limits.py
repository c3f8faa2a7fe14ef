"""Wrong API keys are limited per client address (with failed sign-ins, across keys and
processes: 429 with Retry-After once limited), and a key's last use is written cheaply."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from postroom import Postroom
from postroom.accounts import LAST_USED_PRECISION
from postroom.api import create_app
from postroom.db.tables import ApiKey, utcnow
from postroom.throttles import FAILED_AUTH_ADDRESS
from tests.api.helpers import path

PROFILES = path("profiles")


def _client(app: Postroom, address: str, key: str | None = None) -> TestClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return TestClient(create_app(app), client=(address, 40000), headers=headers)


def _wrong(client: TestClient, i: int) -> int:
    wrong = f"prk_wrong-key-{i:04d}-" + "x" * 30
    return client.get(PROFILES, headers={"Authorization": f"Bearer {wrong}"}).status_code


def test_wrong_keys_from_one_address_get_429_in_every_process(
    app_factory: Callable[..., Postroom], backend: str
) -> None:
    one, other = app_factory(backend), app_factory(backend)
    good = one.accounts.create_api_key("ci", role="admin").key
    a, b = _client(one, "127.0.4.1"), _client(other, "127.0.4.1")
    statuses = [_wrong((a, b)[i % 2], i) for i in range(FAILED_AUTH_ADDRESS.count)]
    assert statuses == [401] * FAILED_AUTH_ADDRESS.count
    response = a.get(PROFILES, headers={"Authorization": "Bearer prk_yet-another-wrong-key"})
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= FAILED_AUTH_ADDRESS.window.total_seconds()
    assert _wrong(b, 999) == 429
    # a valid key still works from there; other addresses are not limited
    assert a.get(PROFILES, headers={"Authorization": f"Bearer {good}"}).status_code == 200
    assert _wrong(_client(other, "127.0.4.2"), 0) == 401
    # the web sign-in shares the count: the sprayer's address may not guess passwords
    web = TestClient(create_app(other), client=("127.0.4.1", 40001), follow_redirects=False)
    token = re.search(r'name="csrf_token" value="([^"]+)"', web.get("/login").text)
    assert token
    form = {"csrf_token": token.group(1), "username": "ada", "password": "any-password-1"}
    assert web.post("/login", data=form).status_code == 429


def test_last_used_at_is_written_at_most_once_a_minute(app: Postroom) -> None:
    created = app.accounts.create_api_key("ci", role="admin")
    client = _client(app, "127.0.4.3", created.key)

    def last_used() -> object:
        with app.sessions() as s:
            return s.scalar(select(ApiKey.last_used_at).where(ApiKey.name == "ci"))

    assert last_used() is None
    assert client.get(PROFILES).status_code == 200
    first = last_used()
    assert first is not None
    assert client.get(PROFILES).status_code == 200
    assert last_used() == first  # a recent write is not repeated
    earlier = utcnow() - LAST_USED_PRECISION - timedelta(seconds=5)
    with app.sessions() as s:
        s.execute(update(ApiKey).values(last_used_at=earlier))
        s.commit()
    assert client.get(PROFILES).status_code == 200
    assert last_used() > earlier  # type: ignore[operator]
    listed = {k.name: k for k in app.accounts.list_api_keys()}
    assert listed["ci"].last_used_at == last_used()
