"""API keys: none, wrong or revoked → 401; role "sender" may not touch configuration."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from postroom import Postroom
from tests.api.conftest import MakeClient
from tests.api.helpers import assert_error, basic_profile, path

CONFIG_ROUTES = [
    ("GET", path("profiles")),
    ("POST", path("profiles")),
    ("GET", path("profiles", "QA alerts")),
    ("PUT", path("profiles", "QA alerts")),
    ("PATCH", path("profiles", "QA alerts")),
    ("DELETE", path("profiles", "QA alerts")),
    ("POST", path("profiles", "QA alerts", "set-default")),
    ("GET", path("bindings")),
    ("PUT", path("bindings", "invoices")),
    ("DELETE", path("bindings", "invoices")),
    ("GET", path("default-profile")),
    ("PUT", path("default-profile")),
    ("GET", path("processes", "invoices", "explain")),
    ("GET", path("explain") + "?process=invoices"),
    ("GET", path("oauth2-configs")),
    ("POST", path("oauth2-configs")),
    ("GET", path("oauth2-configs", "g")),
    ("PUT", path("oauth2-configs", "g")),
    ("DELETE", path("oauth2-configs", "g")),
    ("GET", path("audit")),
]
IDS = [f"{method} {url}" for method, url in CONFIG_ROUTES]


def _call(client: TestClient, method: str, url: str) -> object:
    body = {"profile": "QA alerts"} if method in ("PUT", "POST", "PATCH") else None
    return client.request(method, url, json=body)


@pytest.fixture
def stored(admin: TestClient) -> list[object]:
    """A profile bound to "invoices"; returns the state to compare with."""
    admin.post(path("profiles"), json=basic_profile())
    admin.put(path("bindings", "invoices"), json={"profile": "QA alerts"})
    return [admin.get(path("profiles")).json(), admin.get(path("bindings")).json()]


def _state(admin: TestClient) -> list[object]:
    return [admin.get(path("profiles")).json(), admin.get(path("bindings")).json()]


@pytest.mark.parametrize(("method", "url"), CONFIG_ROUTES, ids=IDS)
def test_no_key_is_401(
    anonymous: TestClient, admin: TestClient, stored: list[object], method: str, url: str
) -> None:
    response = anonymous.request(method, url, json={"profile": "QA alerts"})
    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert _state(admin) == stored


@pytest.mark.parametrize(("method", "url"), CONFIG_ROUTES, ids=IDS)
def test_sender_role_is_403(
    sender: TestClient, admin: TestClient, stored: list[object], method: str, url: str
) -> None:
    response = sender.request(method, url, json={"profile": "QA alerts"})
    error = assert_error(response, 403, "forbidden")
    assert "admin" in error["message"]
    assert _state(admin) == stored


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer prk_not-a-real-key",
        "Bearer not-even-the-prefix",
        "Bearer " + "prk_" + "x" * 300,
    ],
    ids=["unknown", "no prefix", "too long"],
)
def test_wrong_key_is_401(anonymous: TestClient, authorization: str) -> None:
    response = anonymous.get(path("profiles"), headers={"Authorization": authorization})
    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_other_schemes_are_401(anonymous: TestClient, admin_key: str) -> None:
    response = anonymous.get(path("profiles"), headers={"Authorization": f"Basic {admin_key}"})
    assert_error(response, 401, "unauthorized")
    response = anonymous.get(path("profiles"), headers={"Authorization": admin_key})
    assert_error(response, 401, "unauthorized")


def test_revoked_key_is_401(app: Postroom, make_client: MakeClient) -> None:
    key = app.accounts.create_api_key("old", role="admin").key
    client = make_client(key)
    assert client.get(path("profiles")).status_code == 200
    app.accounts.revoke_api_key("old")
    response = client.get(path("profiles"))
    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_admin_key_is_accepted(admin: TestClient) -> None:
    assert admin.get(path("profiles")).status_code == 200


@pytest.mark.parametrize("url", ["/healthz", "/readyz", "/", "/api/v1/openapi.json"])
def test_health_and_docs_need_no_key(anonymous: TestClient, url: str) -> None:
    assert anonymous.get(url).status_code == 200
