"""/oauth2-configs: the client secret is write-only."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from postroom import Postroom
from tests.api.conftest import CANARY
from tests.api.helpers import assert_error, basic_profile, path

CONFIGS = path("oauth2-configs")


def config(name: str = "Google Workspace", **changes: Any) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "google",
        "grant": "authorization_code",
        "client_id": "client-123",
        "client_secret": CANARY,
        "scopes": ["https://mail.google.com/"],
        "username": "qa@example.com",
        **changes,
    }


def test_crud_round_trip_keeps_the_secret_write_only(admin: TestClient, app: Postroom) -> None:
    response = admin.post(CONFIGS, json=config())
    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == path("oauth2-configs", "Google Workspace")
    assert created["client_secret_set"] is True
    assert "client_secret" not in created
    assert created["used_by"] == []
    assert admin.get(CONFIGS).json() == [created]
    assert admin.get(path("oauth2-configs", "google workspace")).json() == created

    response = admin.put(
        path("oauth2-configs", "Google Workspace"),
        json={"version": created["version"], "client_id": "client-456", "client_secret": ""},
    )
    assert response.status_code == 200, response.text
    assert response.json()["client_id"] == "client-456"
    assert app.oauth2.client_secret("Google Workspace") == CANARY

    response = admin.delete(path("oauth2-configs", "Google Workspace"))
    assert response.status_code == 204
    assert_error(admin.get(path("oauth2-configs", "Google Workspace")), 404, "not_found")


def test_invalid_config_is_422_with_field(admin: TestClient) -> None:
    body = config(provider="generic")  # a generic provider needs its token_url
    assert_error(admin.post(CONFIGS, json=body), 422, "validation_error", "token_url")
    assert_error(
        admin.post(CONFIGS, json=config(scopes=["two words"])), 422, "validation_error", "scopes"
    )
    assert_error(admin.post(CONFIGS, json=config(extra=1)), 422, "validation_error", "extra")
    assert admin.get(CONFIGS).json() == []


def test_profile_uses_config_and_delete_is_refused(admin: TestClient) -> None:
    assert admin.post(CONFIGS, json=config()).status_code == 201
    profile = basic_profile(auth="oauth2", oauth2_config="Google Workspace")
    response = admin.post(path("profiles"), json=profile)
    assert response.status_code == 201, response.text
    assert response.json()["smtp"]["password_set"] is False
    assert admin.get(path("oauth2-configs", "Google Workspace")).json()["used_by"] == ["QA alerts"]
    assert_error(admin.delete(path("oauth2-configs", "Google Workspace")), 409, "conflict")


def test_stale_version_is_409(admin: TestClient) -> None:
    created = admin.post(CONFIGS, json=config()).json()
    url = path("oauth2-configs", "Google Workspace")
    assert admin.put(url, json={"client_id": "b"}).status_code == 200
    response = admin.put(url, json={"version": created["version"], "client_id": "c"})
    assert_error(response, 409, "stale_version")
    assert admin.get(url).json()["client_id"] == "b"
