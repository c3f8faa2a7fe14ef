"""The connection test is safe to expose: one rate limit for the REST API and the web UI,
kept in the database (so every process counts together); an operator switch that turns
tests off on every surface; the hardened settings refuse loopback without connecting."""

from __future__ import annotations

import re
import socket
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from postroom import Postroom
from postroom.api import create_app
from postroom.api.routes.connection_tests import TESTS_PER_MINUTE as CONNECTION_TESTS_PER_MINUTE
from postroom.cli import cli
from postroom.errors import PostroomError
from tests.api.helpers import API, assert_error, basic_profile, path
from tests.integration.fake_servers import TcpServer
from tests.integration.smtp_fakes import closed_port

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

FETCH = {"X-Requested-With": "postroom-fetch"}


class CountingServer:
    """A loopback server that counts connections and turns each away with 421."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()
        self.server = TcpServer(self._handle)

    def _handle(self, conn: socket.socket, stop: threading.Event) -> None:
        with self._lock:
            self.count += 1
        conn.sendall(b"421 4.3.2 not now\r\n")

    def __enter__(self) -> CountingServer:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.close()

    @property
    def port(self) -> int:
        return self.server.port


@pytest.fixture
def counting() -> Iterator[CountingServer]:
    with CountingServer() as server:
        yield server


def _profile(port: int) -> dict[str, Any]:
    return basic_profile(host="127.0.0.1", port=port, security="none")


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field"
    return match.group(1)


def _web_admin(pr: Postroom) -> TestClient:
    client = TestClient(create_app(pr), follow_redirects=False)
    token = _csrf(client.get("/login").text)
    r = client.post(
        "/login", data={"csrf_token": token, "username": "ada", "password": "ada-password-123"}
    )
    assert r.status_code == 303
    return client


def _ui_test(client: TestClient, profile_id: int, *, fetch: bool = True) -> Any:
    token = _csrf(client.get(f"/settings/email/profiles/{profile_id}").text)
    data = {
        "csrf_token": token, "action": "test_smtp", "name": "QA alerts",
        "smtp.host": "127.0.0.1", "smtp.port": str(closed_port()), "smtp.security": "none",
        "smtp.auth": "none", "sender.from_address": "qa@example.com", "max_connections": "4",
    }  # fmt: skip
    return client.post(
        f"/settings/email/profiles/{profile_id}", data=data, headers=FETCH if fetch else {}
    )


# -- one limit, in the database -------------------------------------------------------------


def test_web_ui_tests_are_limited_and_the_count_is_shared_by_processes(
    app_factory: Callable[..., Postroom], backend: str
) -> None:
    first, second = app_factory(backend), app_factory(backend)  # two "serve" processes
    first.accounts.create_admin("ada", "ada-password-123")
    profile_id = first.profiles.create(_profile(closed_port())).id
    with _web_admin(first) as one, _web_admin(second) as two:
        for i in range(CONNECTION_TESTS_PER_MINUTE):
            client = one if i % 2 else two
            r = _ui_test(client, profile_id)
            assert r.status_code == 200, r.text
            assert 'data-code="connect_refused"' in r.text
        refused = _ui_test(one, profile_id)
        assert refused.status_code == 429
        assert refused.headers["x-postroom-result"] == "1"  # the script shows it in place
        assert 'data-refused="rate_limited"' in refused.text
        assert f"At most {CONNECTION_TESTS_PER_MINUTE} connection tests per minute" in refused.text
        page = _ui_test(two, profile_id, fetch=False)  # without JavaScript: the whole form
        assert page.status_code == 429 and "<html" in page.text
        assert "connection tests per minute" in page.text


def test_rest_tests_are_limited_across_processes(
    app_factory: Callable[..., Postroom], backend: str
) -> None:
    first, second = app_factory(backend), app_factory(backend)
    key = first.accounts.create_api_key("ci", role="admin").key
    auth = {"Authorization": f"Bearer {key}"}
    settings = _profile(closed_port())
    with (
        TestClient(create_app(first), headers=auth) as one,
        TestClient(create_app(second), headers=auth) as two,
    ):
        for i in range(CONNECTION_TESTS_PER_MINUTE):
            r = (one if i % 2 else two).post(f"{API}/connection-tests", json={"profile": settings})
            assert r.status_code == 200, r.text
        r = one.post(f"{API}/connection-tests", json={"profile": settings})
        assert_error(r, 429, "rate_limited")
        assert 0 < int(r.headers["Retry-After"]) <= 60
        # invalid settings are refused before they count, and do not run
        assert_error(
            two.post(f"{API}/connection-tests", json={"profile": _profile(0)}),
            422, "validation_error", "smtp.port",
        )  # fmt: skip


# -- the operator's switch ------------------------------------------------------------------


def test_disabled_tests_are_refused_on_every_surface_and_connect_nowhere(
    app_factory: Callable[..., Postroom], counting: CountingServer, tmp_path: Path
) -> None:
    pr = app_factory("sqlite", connection_tests="disabled")
    pr.accounts.create_admin("ada", "ada-password-123")
    profile_id = pr.profiles.create(_profile(counting.port)).id

    with pytest.raises(PostroomError) as exc:  # the Python API
        pr.test_profile("QA alerts")
    assert exc.value.code == "connection_tests_disabled"
    assert "operator" in exc.value.message and "POSTROOM_CONNECTION_TESTS" in exc.value.message

    key = pr.accounts.create_api_key("ci", role="admin").key
    with TestClient(create_app(pr), headers={"Authorization": f"Bearer {key}"}) as rest:
        for r in (
            rest.post(path("profiles", "QA alerts", "test"), json={}),
            rest.post(f"{API}/connection-tests", json={"profile": _profile(counting.port)}),
        ):
            error = assert_error(r, 403, "connection_tests_disabled")
            assert "operator" in error["message"]

    with _web_admin(pr) as web:
        assert "data-tests-disabled" in web.get(f"/settings/email/profiles/{profile_id}").text
        r = _ui_test(web, profile_id)
        assert r.status_code == 403 and 'data-refused="connection_tests_disabled"' in r.text
        assert "disabled on this installation by its operator" in r.text

    env = {
        "POSTROOM_DATA_DIR": str(pr.settings.data_dir),
        "POSTROOM_CONNECTION_TESTS": "disabled",
    }
    result = CliRunner().invoke(cli, ["profile", "test", "QA alerts", "--json"], env=env)
    assert result.exit_code == 1, result.output
    assert "disabled on this installation by its operator" in result.output
    assert "Traceback" not in result.output

    assert counting.count == 0


def test_bad_switch_value_names_the_variable(tmp_path: Path) -> None:
    env = {"POSTROOM_DATA_DIR": str(tmp_path), "POSTROOM_CONNECTION_TESTS": "maybe"}
    result = CliRunner().invoke(cli, ["profile", "list"], env=env)
    assert result.exit_code != 0 and "POSTROOM_CONNECTION_TESTS" in result.output


# -- hardened settings, for real on loopback ------------------------------------------------


def test_hardened_settings_refuse_loopback_without_connecting(
    app_factory: Callable[..., Postroom], counting: CountingServer
) -> None:
    pr = app_factory("sqlite", net_profile="hardened", net_ports="")
    d = pr.test_profile(settings=_profile(counting.port))
    assert d.error is not None and d.error.code == "blocked_by_policy", d
    assert "POSTROOM_NET_PROFILE=hardened" in d.model_dump_json()
    # the same installation with the default profile does reach it (the test can fail)
    default = app_factory("sqlite")
    assert default.test_profile(settings=_profile(counting.port)).error is not None
    assert counting.count == 1
