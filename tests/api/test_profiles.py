"""/api/v1/profiles: the CRUD round trip, secrets, versions, deleting what is in use."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from postroom import Postroom
from tests.api.conftest import CANARY
from tests.api.helpers import assert_error, basic_profile, path
from tests.conftest import clear_default

PROFILES = path("profiles")


def create(client: TestClient, name: str = "QA alerts", **smtp: object) -> dict[str, object]:
    response = client.post(PROFILES, json=basic_profile(name, **smtp))
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def test_crud_round_trip(admin: TestClient) -> None:
    assert admin.get(PROFILES).json() == []

    response = admin.post(PROFILES, json=basic_profile())
    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == path("profiles", "QA alerts")
    assert created["name"] == "QA alerts"
    assert created["smtp"]["host"] == "smtp.example.com"
    assert created["smtp"]["password_set"] is True
    assert "password" not in created["smtp"]
    assert created["sender"]["from_address"] == "qa@example.com"
    assert created["version"] == 1
    assert created["is_default"] is True  # the first profile becomes the default (issue 22)

    assert admin.get(path("profiles", "QA alerts")).json() == created
    assert admin.get(path("profiles", "qa ALERTS")).json() == created  # names are case-blind
    assert admin.get(PROFILES).json() == [created]

    response = admin.put(
        path("profiles", "QA alerts"),
        # a new port is a new destination: the password comes along (see test_destination_*)
        json={"description": "alerts", "smtp": {"port": 2525, "password": "n3w-pass"}},
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["description"] == "alerts"
    assert updated["smtp"]["port"] == 2525
    assert updated["smtp"]["host"] == "smtp.example.com"  # merged, not replaced
    assert updated["smtp"]["password_set"] is True
    assert updated["version"] == 2

    response = admin.patch(path("profiles", "QA alerts"), json={"sender": {"from_name": "QA"}})
    assert response.status_code == 200, response.text
    assert response.json()["sender"] == {
        "from_address": "qa@example.com",
        "from_name": "QA",
        "reply_to": None,
    }
    assert response.json()["description"] == "alerts"

    # the default (the first profile) is deleted only when forced
    assert_error(admin.delete(path("profiles", "QA alerts")), 409, "conflict")
    response = admin.delete(path("profiles", "QA alerts"), params={"force": "true"})
    assert response.status_code == 200, response.text
    assert response.json() == {"name": "QA alerts", "unbound": [], "was_default": True}
    assert_error(admin.get(path("profiles", "QA alerts")), 404, "not_found")
    assert admin.get(PROFILES).json() == []


def test_name_with_a_slash_is_addressable(admin: TestClient) -> None:
    create(admin, "Sales / EU")
    assert admin.get(path("profiles", "Sales / EU")).json()["name"] == "Sales / EU"
    response = admin.post(path("profiles", "Sales / EU", "set-default"))
    assert response.status_code == 200, response.text
    assert response.json()["is_default"] is True
    assert admin.delete(path("profiles", "Sales / EU") + "?force=true").status_code == 200


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_unknown_profile_is_404(admin: TestClient, method: str) -> None:
    kwargs = {"json": {"description": "x"}} if method in ("put", "patch") else {}
    response = admin.request(method.upper(), path("profiles", "nope"), **kwargs)
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize("kept", ["********", "", None], ids=["masked", "empty", "omitted"])
def test_masked_empty_or_omitted_password_keeps_the_secret(
    admin: TestClient, app: Postroom, kept: str | None
) -> None:
    create(admin)
    # not the destination (host, port, security, username): the stored secret stays
    smtp: dict[str, object] = {"auth_domain": "CORP", "send_timeout_s": 45}
    if kept is not None:
        smtp["password"] = kept
    response = admin.put(path("profiles", "QA alerts"), json={"smtp": smtp})
    assert response.status_code == 200, response.text
    assert response.json()["smtp"]["password_set"] is True
    assert response.json()["smtp"]["auth_domain"] == "CORP"
    assert app.profiles.spec_with_secrets("QA alerts").smtp.password == CANARY


def test_new_password_replaces_the_secret(admin: TestClient, app: Postroom) -> None:
    create(admin)
    response = admin.put(path("profiles", "QA alerts"), json={"smtp": {"password": "n3w-pass"}})
    assert response.status_code == 200, response.text
    assert "n3w-pass" not in response.text
    assert app.profiles.spec_with_secrets("QA alerts").smtp.password == "n3w-pass"


def test_stale_version_is_409_and_changes_nothing(admin: TestClient) -> None:
    create(admin)
    assert admin.put(path("profiles", "QA alerts"), json={"description": "one"}).status_code == 200
    before = admin.get(PROFILES).json()
    assert before[0]["version"] == 2

    response = admin.put(
        path("profiles", "QA alerts"),
        json={"version": 1, "description": "two", "smtp": {"password": "other-pass"}},
    )
    assert_error(response, 409, "stale_version")
    assert admin.get(PROFILES).json() == before

    response = admin.patch(path("profiles", "QA alerts"), json={"version": 2, "description": "2"})
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 3


@pytest.mark.parametrize("version", ["2", 1.5, True, [2]])
def test_version_must_be_a_whole_number(admin: TestClient, version: object) -> None:
    create(admin)
    before = admin.get(PROFILES).json()
    response = admin.put(path("profiles", "QA alerts"), json={"version": version})
    assert_error(response, 422, "validation_error", field="version")
    assert admin.get(PROFILES).json() == before


def test_suspicious_combination_is_saved_with_a_warning(admin: TestClient) -> None:
    created = create(admin, port=465, security="starttls")
    assert created["warnings"] == [
        {
            "field": "smtp.security",
            "message": "Port 465 expects TLS from the first byte; you probably want "
            "security 'tls'.",
        }
    ]
    response = admin.put(
        path("profiles", "QA alerts"), json={"smtp": {"security": "tls", "password": "n3w-pass"}}
    )
    assert response.json()["warnings"] == []


def test_delete_refused_while_bound_lists_processes(admin: TestClient, app: Postroom) -> None:
    create(admin)
    clear_default(app)  # here only the processes keep it
    for process in ("invoices", "hr/onboarding"):
        response = admin.put(path("bindings", process), json={"profile": "QA alerts"})
        assert response.status_code == 200, response.text
    before = admin.get(PROFILES).json()

    error = assert_error(admin.delete(path("profiles", "QA alerts")), 409, "conflict")
    assert error["processes"] == ["hr/onboarding", "invoices"]
    assert error["is_default"] is False
    assert "hr/onboarding" in error["message"]
    assert admin.get(PROFILES).json() == before
    assert len(admin.get(path("bindings")).json()) == 2


def test_delete_refused_while_default(admin: TestClient) -> None:
    create(admin)
    assert admin.post(path("profiles", "QA alerts", "set-default")).status_code == 200

    error = assert_error(admin.delete(path("profiles", "QA alerts")), 409, "conflict")
    assert error["processes"] == []
    assert error["is_default"] is True
    assert admin.get(path("default-profile")).json() == {"profile": "QA alerts"}


def test_forced_delete_unbinds_and_reports_it(admin: TestClient) -> None:
    create(admin)
    create(admin, "Other")
    admin.put(path("bindings", "invoices"), json={"profile": "QA alerts"})
    admin.put(path("bindings", "payroll"), json={"profile": "Other"})
    admin.put(path("default-profile"), json={"profile": "QA alerts"})

    response = admin.delete(path("profiles", "qa alerts") + "?force=true")
    assert response.status_code == 200, response.text
    assert response.json() == {"name": "QA alerts", "unbound": ["invoices"], "was_default": True}
    assert admin.get(path("bindings")).json() == [{"process": "payroll", "profile": "Other"}]
    assert admin.get(path("default-profile")).json() == {"profile": None}
    assert admin.get(path("processes", "invoices", "explain")).json()["reason"] == "none"


def test_disabling_a_bound_profile_needs_force(admin: TestClient) -> None:
    create(admin)
    admin.put(path("bindings", "invoices"), json={"profile": "QA alerts"})
    before = admin.get(PROFILES).json()

    response = admin.put(path("profiles", "QA alerts"), json={"enabled": False})
    error = assert_error(response, 409, "conflict")
    assert error["processes"] == ["invoices"]
    assert admin.get(PROFILES).json() == before

    response = admin.put(path("profiles", "QA alerts") + "?force=true", json={"enabled": False})
    assert response.status_code == 200, response.text
    assert response.json()["enabled"] is False


def test_set_default_marks_the_profile(admin: TestClient) -> None:
    create(admin)
    response = admin.post(path("profiles", "qa alerts", "set-default"))
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "QA alerts"
    assert response.json()["is_default"] is True
    assert_error(admin.post(path("profiles", "nope", "set-default")), 404, "not_found")


def test_usage_counts_and_last_used_in_rest(admin: TestClient, app: Postroom) -> None:
    from sqlalchemy import update

    from postroom.db.tables import OutboxMessage

    create(admin)
    id = app.send({"to": ["bob@example.com"], "subject": "s", "text": "t"}, profile="QA alerts")
    with app.sessions() as s:
        s.execute(update(OutboxMessage).where(OutboxMessage.id == id).values(status="failed"))
        s.commit()
    got = admin.get(path("profiles", "QA alerts")).json()
    assert got["usage"] == {"sent_7d": 0, "failed_7d": 1, "sent_30d": 0, "failed_30d": 1}
    assert got["last_used_at"] is None
    assert admin.get(PROFILES).json()[0]["usage"]["failed_30d"] == 1


def test_first_profile_created_is_the_default(admin: TestClient) -> None:
    first = admin.post(PROFILES, json=basic_profile("First"))
    assert first.status_code == 201 and first.json()["is_default"] is True
    second = admin.post(PROFILES, json=basic_profile("Second"))
    assert second.status_code == 201 and second.json()["is_default"] is False
    assert admin.get(path("default-profile")).json()["profile"] == "First"
