"""/bindings, /default-profile and the explainer."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from postroom import Postroom
from tests.api.helpers import assert_error, basic_profile, path
from tests.conftest import clear_default


@pytest.fixture
def profiles(admin: TestClient, app: Postroom) -> None:
    for name in ("QA alerts", "Billing"):
        assert admin.post(path("profiles"), json=basic_profile(name)).status_code == 201
    clear_default(app)  # the first one became the default; these tests start without one


@pytest.mark.usefixtures("profiles")
def test_bind_list_rebind_unbind(admin: TestClient) -> None:
    response = admin.put(path("bindings", "invoices"), json={"profile": "qa alerts"})
    assert response.status_code == 200, response.text
    assert response.json() == {"process": "invoices", "profile": "QA alerts"}
    admin.put(path("bindings", "hr/onboarding"), json={"profile": "Billing"})
    assert admin.get(path("bindings")).json() == [
        {"process": "hr/onboarding", "profile": "Billing"},
        {"process": "invoices", "profile": "QA alerts"},
    ]
    assert admin.get(path("bindings") + "?profile=billing").json() == [
        {"process": "hr/onboarding", "profile": "Billing"}
    ]

    response = admin.put(path("bindings", "invoices"), json={"profile": "Billing"})
    assert response.json() == {"process": "invoices", "profile": "Billing"}

    response = admin.delete(path("bindings", "hr/onboarding"))
    assert response.status_code == 204
    assert response.content == b""
    assert admin.get(path("bindings")).json() == [{"process": "invoices", "profile": "Billing"}]
    assert_error(admin.delete(path("bindings", "hr/onboarding")), 404, "not_found")


@pytest.mark.usefixtures("profiles")
def test_binding_refuses_unknown_profile_and_bad_bodies(admin: TestClient) -> None:
    assert_error(admin.put(path("bindings", "x"), json={"profile": "nope"}), 404, "not_found")
    assert_error(
        admin.put(path("bindings", "x"), json={"profile": ""}), 422, "validation_error", "profile"
    )
    assert_error(admin.put(path("bindings", "x"), json={}), 422, "validation_error", "profile")
    error = assert_error(
        admin.put(path("bindings", "x"), json={"profile": "Billing", "prio": 1}),
        422,
        "validation_error",
        "prio",
    )
    assert error["errors"] == [{"field": "prio", "message": "is not a known field"}]
    response = admin.put(
        path("bindings", "x"), content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert "field" not in assert_error(response, 422, "validation_error")
    # A line break never matches a route; the explainer takes it as a query parameter.
    response = admin.put(path("bindings", "bad\nname"), json={"profile": "Billing"})
    assert_error(response, 404, "not_found")
    response = admin.get(path("explain"), params={"process": "bad\r\nname"})
    assert_error(response, 422, "validation_error", "process")
    assert admin.get(path("bindings")).json() == []


@pytest.mark.usefixtures("profiles")
def test_default_profile(admin: TestClient) -> None:
    assert admin.get(path("default-profile")).json() == {"profile": None}
    response = admin.put(path("default-profile"), json={"profile": "billing"})
    assert response.status_code == 200, response.text
    assert response.json() == {"profile": "Billing"}
    assert admin.get(path("default-profile")).json() == {"profile": "Billing"}
    assert admin.get(path("profiles", "Billing")).json()["is_default"] is True
    assert_error(admin.put(path("default-profile"), json={"profile": "nope"}), 404, "not_found")


@pytest.mark.usefixtures("profiles")
def test_disabled_profile_cannot_become_default(admin: TestClient) -> None:
    admin.put(path("profiles", "Billing"), json={"enabled": False})
    assert_error(admin.put(path("default-profile"), json={"profile": "Billing"}), 409, "conflict")
    assert admin.get(path("default-profile")).json() == {"profile": None}


@pytest.mark.usefixtures("profiles")
def test_explain_binding_default_and_none(admin: TestClient) -> None:
    def explain(process: str) -> dict[str, object]:
        by_path = admin.get(path("processes", process, "explain"))
        by_query = admin.get(path("explain"), params={"process": process})
        assert by_path.status_code == by_query.status_code == 200, by_path.text
        assert by_path.json() == by_query.json()
        result: dict[str, object] = by_path.json()
        return result

    none = explain("hr/onboarding")
    assert none["profile"] is None
    assert none["reason"] == "none"
    assert "no system default" in str(none["message"])

    admin.put(path("default-profile"), json={"profile": "QA alerts"})
    default = explain("hr/onboarding")
    assert (default["profile"], default["reason"]) == ("QA alerts", "default")

    admin.put(path("bindings", "hr/onboarding"), json={"profile": "Billing"})
    bound = explain("hr/onboarding")
    assert (bound["profile"], bound["reason"], bound["enabled"]) == ("Billing", "binding", True)


def test_explain_needs_a_process(admin: TestClient) -> None:
    assert_error(admin.get(path("explain")), 422, "validation_error", "process")
    assert_error(admin.get(path("explain") + "?process="), 422, "validation_error", "process")
