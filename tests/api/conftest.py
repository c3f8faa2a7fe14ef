"""REST API fixtures: clients holding an admin key, a sender key, or no key.

Every response any of these clients receives is checked after the test: the canary
password of ``basic_profile()`` must never appear in one.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import httpx
import pytest

from postroom import Postroom
from postroom.api import create_app

with warnings.catch_warnings():
    # Starlette would rather run its TestClient on httpx2; httpx works the same here.
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

CANARY = "CANARY-7f3a-secret"

MakeClient = Callable[..., TestClient]


@pytest.fixture
def seen_responses() -> Iterator[list[httpx.Response]]:
    """Every response of the test's clients; none may contain the canary secret."""
    seen: list[httpx.Response] = []
    yield seen
    leaks = [f"{r.request.method} {r.request.url}" for r in seen if CANARY in r.text]
    assert not leaks, f"the canary secret appeared in responses to: {leaks}"


@pytest.fixture
def make_client(app: Postroom, seen_responses: list[httpx.Response]) -> Iterator[MakeClient]:
    """``make_client(key=None, raise_server_exceptions=True)`` → a TestClient of the API."""
    clients: list[TestClient] = []

    def remember(response: httpx.Response) -> None:
        response.read()
        seen_responses.append(response)

    def make(key: str | None = None, *, raise_server_exceptions: bool = True) -> TestClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        client = TestClient(
            create_app(app), headers=headers, raise_server_exceptions=raise_server_exceptions
        )
        client.event_hooks = {"response": [remember]}
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def admin_key(app: Postroom) -> str:
    return app.accounts.create_api_key("ci-key", role="admin").key


@pytest.fixture
def admin(make_client: MakeClient, admin_key: str) -> TestClient:
    """A client holding the admin key named "ci-key"."""
    return make_client(admin_key)


@pytest.fixture
def sender(make_client: MakeClient, app: Postroom) -> TestClient:
    return make_client(app.accounts.create_api_key("mailer", role="sender").key)


@pytest.fixture
def anonymous(make_client: MakeClient) -> TestClient:
    return make_client()
