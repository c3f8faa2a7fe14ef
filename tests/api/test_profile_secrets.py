"""Secrets over REST: references are the operator's, a stored secret stays with its server.

An administrator's API key must not turn postroom into a file or environment reader
(``file:``/``env:`` references), nor send a stored password to a server of its choosing.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from fastapi.testclient import TestClient

from postroom import Postroom
from postroom.api import create_app
from postroom.oauth2.tables import OAuth2Token
from tests.api.conftest import CANARY
from tests.api.helpers import API, assert_error, basic_profile, path
from tests.integration.smtp_fakes import closed_port, fake_smtp

PROFILES = path("profiles")
CONFIGS = path("oauth2-configs")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _refs(app: Postroom, tmp_path: Path) -> list[str]:
    """References an administrator could try: postroom's keys, a real file, a missing one."""
    real = tmp_path / "real-secret"
    real.write_text("s3cret\n")
    return [
        f"file:{app.settings.key_file}",
        f"file:{app.settings.key_file.parent}/../{app.settings.key_file.parent.name}/secret.key",
        "env:POSTROOM_SECRET_KEYS",
        f"file:{real}",
        f"file:{tmp_path}/no-such-file",
        "file:/proc/self/environ",
        "env:HOME",
        "env:NO_SUCH_VARIABLE_X",
    ]


def test_admin_cannot_store_a_reference_and_the_answer_reveals_nothing(
    app: Postroom, admin: TestClient, tmp_path: Path
) -> None:
    messages = set()
    for ref in _refs(app, tmp_path):
        error = assert_error(
            admin.post(PROFILES, json=basic_profile(password=ref)),
            422,
            "validation_error",
            "smtp.password",
        )
        messages.add(error["message"])
        assert str(tmp_path) not in error["message"] and "secret.key" not in error["message"]
    # one message whatever the path: existing, missing, postroom's own key file
    assert len(messages) == 1, messages
    assert admin.get(PROFILES).json() == []

    assert admin.post(PROFILES, json=basic_profile()).status_code == 201
    for ref in _refs(app, tmp_path):
        assert_error(
            admin.put(path("profiles", "QA alerts"), json={"smtp": {"password": ref}}),
            422,
            "validation_error",
            "smtp.password",
        )
        settings = basic_profile(password=ref)
        assert_error(
            admin.post(f"{API}/connection-tests", json={"profile": settings}),
            422,
            "validation_error",
            "smtp.password",
        )
    assert app.profiles.spec_with_secrets("QA alerts").smtp.password == CANARY


def test_the_key_file_never_reaches_a_server_an_admin_names(
    app: Postroom, admin: TestClient, ca: trustme.CA
) -> None:
    key = app.settings.key_file.read_text().strip() if app.settings.key_file.exists() else None
    assert key, "the test installation keeps its key in the key file"
    with fake_smtp(ca, starttls=False, password=key) as srv:
        data = basic_profile(
            host="127.0.0.1",
            port=srv.port,
            security="none",
            password=f"file:{app.settings.key_file}",
        )
        response = admin.post(PROFILES, json=data)
        if response.status_code == 201:  # the old behaviour: show what it leads to
            test = admin.post(path("profiles", "QA alerts", "test"), json={}).json()
            pytest.fail(f"stored a key-file reference; the test logged in: {test['ok']}")
        assert_error(response, 422, "validation_error", "smtp.password")
        assert srv.recorded.logins == []


def test_admin_cannot_reference_in_an_oauth2_client_secret(
    app: Postroom, admin: TestClient, tmp_path: Path
) -> None:
    body = {
        "name": "Google Workspace",
        "provider": "google",
        "client_id": "client-123",
        "scopes": ["https://mail.google.com/"],
    }
    for ref in _refs(app, tmp_path):
        assert_error(
            admin.post(CONFIGS, json={**body, "client_secret": ref}),
            422,
            "validation_error",
            "client_secret",
        )
    assert admin.post(CONFIGS, json={**body, "client_secret": CANARY}).status_code == 201
    assert_error(
        admin.put(path("oauth2-configs", "Google Workspace"), json={"client_secret": "env:HOME"}),
        422,
        "validation_error",
        "client_secret",
    )
    assert app.oauth2.client_secret("Google Workspace") == CANARY


@pytest.fixture
def allow_listed(app_factory: Any, tmp_path: Path) -> Iterator[tuple[Postroom, TestClient, Path]]:
    """An installation whose operator allowed ``QA_SMTP_*`` and files under ``secrets/``."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    app = app_factory(
        "sqlite",
        secret_ref_env="QA_SMTP_*, POSTROOM_*",
        secret_ref_paths=f"{secrets},{tmp_path / 'data'}",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        key = app.accounts.create_api_key("ci-key", role="admin").key
        client = TestClient(create_app(app), headers={"Authorization": f"Bearer {key}"})
    yield app, client, secrets
    client.close()


def test_the_operator_allow_list_admits_references_but_never_postroom_keys(
    allow_listed: tuple[Postroom, TestClient, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, client, secrets = allow_listed
    (secrets / "pw").write_text("from-file\n")
    monkeypatch.setenv("QA_SMTP_PW", "from-env")
    r = client.post(PROFILES, json=basic_profile(password="env:QA_SMTP_PW"))
    assert r.status_code == 201, r.text
    assert app.profiles.spec_with_secrets("QA alerts").smtp.password == "from-env"
    r = client.post(PROFILES, json=basic_profile("Files", password=f"file:{secrets}/pw"))
    assert r.status_code == 201, r.text
    assert app.profiles.spec_with_secrets("Files").smtp.password == "from-file"
    (secrets / "link").symlink_to(app.settings.key_file)
    for ref in (
        "env:QA_OTHER",  # not on the list
        "env:POSTROOM_SECRET_KEYS",  # on the list by its pattern, and still never
        f"file:{secrets}/../outside",
        f"file:{secrets}/link",  # a symlink to the key file
        f"file:{app.settings.key_file}",  # its directory is on the list, and still never
        "file:relative/pw",
    ):
        assert_error(
            client.post(PROFILES, json=basic_profile("Bad", password=ref)),
            422,
            "validation_error",
            "smtp.password",
        )


def test_changed_destination_needs_the_password_again_in_a_test(
    app: Postroom, admin: TestClient, ca: trustme.CA
) -> None:
    old_port = closed_port()
    app.profiles.create(basic_profile(host="127.0.0.1", port=old_port, security="none"))
    with fake_smtp(ca, starttls=False, password=CANARY) as srv:
        for kept in ("********", "", None):
            settings = basic_profile(host="127.0.0.1", port=srv.port, security="none")
            settings["smtp"]["password"] = kept  # type: ignore[index]
            r = admin.post(
                f"{API}/connection-tests", json={"profile": settings, "existing": "QA alerts"}
            )
            error = assert_error(r, 422, "validation_error", "smtp.password")
            assert "again" in error["message"]
        assert srv.recorded.logins == []  # the stored password never went there
        # typed again, it is used
        settings = basic_profile(host="127.0.0.1", port=srv.port, security="none")
        r = admin.post(
            f"{API}/connection-tests", json={"profile": settings, "existing": "QA alerts"}
        )
        assert r.status_code == 200 and r.json()["ok"] is True, r.text


@pytest.mark.parametrize(
    "change",
    [
        {"host": "mail.example.net"},
        {"host": "SMTP.EXAMPLE.COM", "port": 2525},
        {"security": "tls"},
        {"username": "other@example.com"},
    ],
)
def test_changed_destination_needs_the_password_again_on_save(
    app: Postroom, admin: TestClient, change: dict[str, Any]
) -> None:
    created = admin.post(PROFILES, json=basic_profile()).json()
    for kept in ("********", "", None):
        smtp = {**change, "password": kept}
        assert_error(
            admin.put(path("profiles", "QA alerts"), json={"smtp": smtp}),
            422,
            "validation_error",
            "smtp.password",
        )
    assert admin.get(path("profiles", "QA alerts")).json() == created  # nothing saved
    r = admin.put(path("profiles", "QA alerts"), json={"smtp": {**change, "password": "n3w"}})
    assert r.status_code == 200, r.text
    # the host's case is not a new destination
    r = admin.put(path("profiles", "QA alerts"), json={"smtp": {"host": "Mail.Example.Net"}})
    assert r.status_code == (200 if change.get("host") == "mail.example.net" else 422), r.text


def test_imap_secret_follows_only_its_own_destination(app: Postroom, admin: TestClient) -> None:
    data = basic_profile()
    data["imap"] = {
        "host": "imap.example.com",
        "username": "qa@example.com",
        "password": "imap-" + CANARY,
    }
    assert admin.post(PROFILES, json=data).status_code == 201
    # an SMTP change does not touch IMAP's secret, and the other way round
    r = admin.put(
        path("profiles", "QA alerts"), json={"imap": {"port": 143, "security": "starttls"}}
    )
    assert_error(r, 422, "validation_error", "imap.password")
    r = admin.put(
        path("profiles", "QA alerts"),
        json={
            "smtp": {"port": 465, "security": "tls", "password": "n3w"},
            "imap": {"folder": "QA"},
        },
    )
    assert r.status_code == 200, r.text
    assert app.profiles.spec_with_secrets("QA alerts").imap.password == "imap-" + CANARY  # type: ignore[union-attr]


def test_changed_token_url_needs_the_client_secret_again_and_drops_tokens(
    app: Postroom, admin: TestClient
) -> None:
    body = {
        "name": "Corp IdP",
        "provider": "generic",
        "grant": "client_credentials",
        "client_id": "client-123",
        "client_secret": CANARY,
        "token_url": "https://idp.example.com/token",
    }
    assert admin.post(CONFIGS, json=body).status_code == 201
    config_id = app.oauth2.get("Corp IdP").id
    with app.sessions() as s:
        s.add(OAuth2Token(config_id=config_id, scopes=[], version=1, failures=0))
        s.commit()
    name = path("oauth2-configs", "Corp IdP")
    assert admin.put(name, json={"client_id": "client-456"}).status_code == 200
    for moved in (
        {"token_url": "https://attacker.example.net/token"},
        {"provider": "microsoft", "tenant": "contoso.com", "token_url": None},
    ):
        assert_error(admin.put(name, json=moved), 422, "validation_error", "client_secret")
    with app.sessions() as s:
        assert s.get(OAuth2Token, config_id) is not None  # nothing changed
    r = admin.put(name, json={"token_url": "https://idp2.example.com/token", "client_secret": "n"})
    assert r.status_code == 200, r.text
    with app.sessions() as s:
        assert s.get(OAuth2Token, config_id) is None  # no token goes to the new endpoint
