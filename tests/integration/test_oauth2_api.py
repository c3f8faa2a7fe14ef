"""REST: connect (browser, device code, client credentials), the callback route, status."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest

from postroom import Postroom
from postroom.api import create_app
from tests.harness.oauth2_helpers import add_config, browser, knobs
from tests.harness.oauth2server import LocalAuthServer

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

PUBLIC = "https://postroom.example.com"
CALLBACK = PUBLIC + "/oauth2/callback"


@pytest.fixture
def server(oauth2_server: LocalAuthServer) -> Iterator[LocalAuthServer]:
    with knobs(oauth2_server):
        yield oauth2_server


@pytest.fixture
def pr(app_factory: Callable[..., Postroom]) -> Postroom:
    return app_factory("sqlite", public_url=PUBLIC)


@pytest.fixture
def api(pr: Postroom) -> Iterator[TestClient]:
    key = pr.accounts.create_api_key("admin", role="admin").key
    with TestClient(create_app(pr), headers={"Authorization": f"Bearer {key}"}) as client:
        yield client


def secrets_of(server: LocalAuthServer) -> set[str]:
    found = {t.access_token for t in server.tokens}
    return found | {t.refresh_token for t in server.tokens if t.refresh_token}


def test_browser_sign_in_through_the_callback_route(
    pr: Postroom, api: TestClient, server: LocalAuthServer
) -> None:
    client_id = add_config(pr, server)
    server.clients[client_id].redirect_uris = (CALLBACK,)
    started = api.post("/api/v1/oauth2-configs/local/connect")
    assert started.status_code == 200, started.text
    body = started.json()
    assert body["grant"] == "authorization_code" and body["redirect_uri"] == CALLBACK
    assert "code_challenge_method=S256" in body["authorization_url"]

    location = browser(body["authorization_url"])
    assert location.startswith(CALLBACK)
    callback = urlsplit(location)
    anonymous = TestClient(create_app(pr))  # the browser holds no API key
    done = anonymous.get(f"{callback.path}?{callback.query}")
    assert done.status_code == 200 and "Connected" in done.text
    assert "alice@postroom.test" in done.text and done.headers["cache-control"] == "no-store"
    again = anonymous.get(f"{callback.path}?{callback.query}")
    assert again.status_code == 400 and "already completed" in again.text

    status = api.get("/api/v1/oauth2-configs/local/status")
    assert status.status_code == 200
    st = status.json()
    assert st["state"] == "connected" and st["account"] == "alice@postroom.test"
    assert st["consent_needed"] is False and st["access_token_expires_at"]
    shown = started.text + done.text + status.text
    assert not [s for s in secrets_of(server) if s in shown]


def test_callback_with_a_forged_state_or_a_refusal(pr: Postroom, server: LocalAuthServer) -> None:
    anonymous = TestClient(create_app(pr))
    forged = anonymous.get("/oauth2/callback?state=forged&code=abc")
    assert forged.status_code == 400 and "unknown" in forged.text
    assert anonymous.get("/oauth2/callback").status_code == 400
    denied = anonymous.get("/oauth2/callback?state=forged&error=access_denied")
    assert denied.status_code == 400


def test_client_credentials_connect_and_provider_error(
    pr: Postroom, api: TestClient, server: LocalAuthServer
) -> None:
    add_config(pr, server, grant="client_credentials", mailbox="alice@postroom.test",
               username="alice@postroom.test", scopes=("mail",))  # fmt: skip
    ok = api.post("/api/v1/oauth2-configs/local/connect")
    assert ok.status_code == 200 and ok.json()["status"]["state"] == "connected"

    server.fail_next.append((401, {"error": "invalid_client", "error_description": "bad secret"}))
    refused = api.post("/api/v1/oauth2-configs/local/connect")
    assert refused.status_code == 502
    error = refused.json()["error"]
    assert error["code"] == "oauth2_token_failed" and error["provider_error"] == "invalid_client"
    assert error["provider_error_description"] == "bad secret"


def test_device_code_connect_and_poll(
    pr: Postroom, api: TestClient, server: LocalAuthServer
) -> None:
    import time

    add_config(pr, server, grant="device_code")
    started = api.post("/api/v1/oauth2-configs/local/connect").json()
    assert started["grant"] == "device_code" and started["user_code"]
    time.sleep(started["interval_s"])
    pending = api.post("/api/v1/oauth2-configs/local/connect/poll").json()
    assert pending["done"] is False and pending["status"]["state"] == "not_connected"
    server.approve_device(started["user_code"])
    time.sleep(started["interval_s"])
    done = api.post("/api/v1/oauth2-configs/local/connect/poll").json()
    assert done["done"] is True and done["status"]["account"] == "alice@postroom.test"


def test_connect_needs_an_admin_key(pr: Postroom, server: LocalAuthServer) -> None:
    add_config(pr, server)
    key = pr.accounts.create_api_key("mailer", role="sender").key
    sender = TestClient(create_app(pr), headers={"Authorization": f"Bearer {key}"})
    assert sender.post("/api/v1/oauth2-configs/local/connect").status_code == 403
    assert sender.get("/api/v1/oauth2-configs/local/status").status_code == 403
    assert TestClient(create_app(pr)).get("/api/v1/oauth2-configs/local/status").status_code == 401


def test_status_and_config_routes_coexist(
    pr: Postroom, api: TestClient, server: LocalAuthServer
) -> None:
    add_config(pr, server)
    assert api.get("/api/v1/oauth2-configs/local").json()["name"] == "local"
    st = api.get("/api/v1/oauth2-configs/local/status").json()
    assert st["state"] == "not_connected" and st["consent_needed"] is True
    assert api.get("/api/v1/oauth2-configs/nope/status").status_code == 404
    paths = api.get("/api/v1/openapi.json").json()["paths"]
    assert {"/oauth2/callback", "/api/v1/oauth2-configs/{name}/connect",
            "/api/v1/oauth2-configs/{name}/status"} <= set(paths)  # fmt: skip
