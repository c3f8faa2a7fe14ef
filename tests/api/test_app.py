"""The application: health, readiness, start page, OpenAPI, error shapes."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

import postroom.api.app as api_module
from postroom import Postroom
from tests.api.conftest import CANARY, MakeClient
from tests.api.helpers import assert_error, basic_profile, path


def test_nothing_is_built_at_import_time() -> None:
    assert not [v for v in vars(api_module).values() if isinstance(v, FastAPI)]


def test_healthz(anonymous: TestClient) -> None:
    response = anonymous.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_checks_the_database(anonymous: TestClient, app: Postroom) -> None:
    # No profile yet, so no default: ready, with a warning saying where mail can't go (issue
    # 22 item 4; before, readyz said nothing about it).
    response = anonymous.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["database"]) == ("ok", "ok")
    assert "No system default profile" in body["warnings"][0]
    assert "password resets" in body["warnings"][0]
    app.profiles.create(basic_profile())
    response = anonymous.get("/readyz")
    assert response.json() == {"status": "ok", "database": "ok"}


def test_readyz_is_503_when_the_database_is_down(
    anonymous: TestClient, app: Postroom, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = create_engine("postgresql+psycopg://nobody:pw@127.0.0.1:1/none?connect_timeout=2")
    monkeypatch.setattr(app, "engine", dead)
    response = anonymous.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "unreachable"}
    assert "pw" not in response.text
    dead.dispose()


def test_start_page_is_served_without_a_key(anonymous: TestClient) -> None:
    # The admin UI owns "/" (it replaced the API's placeholder page).
    response = anonymous.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")


def test_openapi_lists_the_routes(admin: TestClient) -> None:
    admin.post(path("profiles"), json=basic_profile())  # the document must not leak it
    response = admin.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert CANARY not in response.text
    doc = response.json()
    expected = {
        "/api/v1/profiles": {"get", "post"},
        "/api/v1/profiles/{name}": {"get", "put", "patch", "delete"},
        "/api/v1/profiles/{name}/set-default": {"post"},
        "/api/v1/bindings": {"get"},
        "/api/v1/bindings/{process}": {"put", "delete"},
        "/api/v1/default-profile": {"get", "put"},
        "/api/v1/processes/{process}/explain": {"get"},
        "/api/v1/explain": {"get"},
        "/api/v1/oauth2-configs": {"get", "post"},
        "/api/v1/oauth2-configs/{name}": {"get", "put", "delete"},
        "/api/v1/audit": {"get"},
        "/healthz": {"get"},
        "/readyz": {"get"},
    }
    for route, methods in expected.items():
        assert set(doc["paths"][route]) == methods, route
    schemas = doc["components"]["schemas"]
    create = doc["paths"]["/api/v1/profiles"]["post"]
    ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/ProfileCreate"
    assert set(schemas["ProfileCreate"]["required"]) == {"name", "smtp", "sender"}
    assert "required" not in schemas["ProfileUpdate"]
    assert "version" in schemas["ProfileUpdate"]["properties"]
    assert schemas["SmtpSettingsInput"]["properties"]["password"]["writeOnly"] is True
    assert "password" not in str(schemas["ProfileRead"])
    assert "client_secret" not in schemas["OAuth2ConfigRead"]["properties"]
    assert doc["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    for ref_target in _refs(doc):
        assert ref_target in schemas, ref_target


def _refs(node: object) -> set[str]:
    if isinstance(node, dict):
        found = set()
        for key, value in node.items():
            if key == "$ref":
                found.add(value.rsplit("/", 1)[-1])
            else:
                found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node)) if node else set()
    return set()


def test_no_page_loads_assets_from_a_cdn(anonymous: TestClient) -> None:
    # Swagger UI would pull its scripts from a CDN; only the OpenAPI JSON is served
    assert anonymous.get("/api/v1/docs").status_code == 404
    assert anonymous.get("/api/v1/openapi.json").status_code == 200


def test_unknown_route_and_wrong_method_use_the_error_shape(admin: TestClient) -> None:
    assert_error(admin.get("/api/v1/nothing-here"), 404, "not_found")
    assert_error(admin.delete(path("audit")), 405, "method_not_allowed")


def test_unexpected_error_is_500_without_details(
    app: Postroom, make_client: MakeClient, admin_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode() -> None:
        raise RuntimeError(f"database password is {CANARY}")

    monkeypatch.setattr(app.profiles, "list", explode)
    client = make_client(admin_key, raise_server_exceptions=False)
    response = client.get(path("profiles"))
    assert response.status_code == 500
    assert response.json() == {
        "error": {
            "code": "internal_error",
            "message": "Something went wrong inside postroom; the server log has the details.",
        }
    }
    assert "RuntimeError" not in response.text
    assert "Traceback" not in response.text
