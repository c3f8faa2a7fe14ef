"""/audit: who changed what through the API; secrets only as "changed"."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.api.conftest import CANARY
from tests.api.helpers import assert_error, basic_profile, path


def _entries(admin: TestClient, **params: Any) -> list[dict[str, Any]]:
    response = admin.get(path("audit"), params=params)
    assert response.status_code == 200, response.text
    assert CANARY not in response.text
    entries: list[dict[str, Any]] = response.json()
    return entries


def test_profile_changes_are_audited_with_the_key_as_actor(admin: TestClient) -> None:
    admin.post(path("profiles"), json=basic_profile())
    admin.put(path("profiles", "QA alerts"), json={"smtp": {"password": "rotated-pass"}})
    admin.put(path("profiles", "QA alerts"), json={"description": "ops"})
    admin.put(path("bindings", "invoices"), json={"profile": "QA alerts"})
    admin.delete(path("profiles", "QA alerts") + "?force=true")

    entries = _entries(admin, target_type="profile", target="QA alerts")
    # the first profile becomes the system default, audited with it (issue 22 item 4)
    actions = ["delete", "update", "update", "set_default", "create"]
    assert [e["action"] for e in entries] == actions
    assert {e["actor"] for e in entries} == {"api:ci-key"}
    delete, description, password, _, create = entries

    assert create["details"]["changes"]["smtp.password"] == "changed"
    assert create["details"]["changes"]["smtp.host"] == [None, "smtp.example.com"]
    assert password["details"]["changes"] == {"smtp.password": "changed"}
    assert description["details"]["changes"] == {"description": ["", "ops"]}
    assert delete["details"]["unbound"] == ["invoices"]
    assert delete["details"]["force"] is True

    everything = _entries(admin)
    assert "rotated-pass" not in str(everything)
    bind = next(e for e in everything if e["action"] == "bind")
    assert (bind["actor"], bind["target_type"], bind["target"]) == (
        "api:ci-key",
        "process",
        "invoices",
    )


def test_refused_changes_leave_no_audit_entry(admin: TestClient) -> None:
    admin.post(path("profiles"), json=basic_profile())
    before = _entries(admin)
    admin.put(path("profiles", "QA alerts"), json={"smtp": {"port": 0}})
    admin.put(path("profiles", "QA alerts"), json={"version": 99, "description": "x"})
    assert _entries(admin) == before


def test_limit(admin: TestClient) -> None:
    for name in ("a", "b", "c"):
        admin.post(path("profiles"), json=basic_profile(name))
    assert [e["target"] for e in _entries(admin, limit=2)] == ["c", "b"]
    assert_error(admin.get(path("audit") + "?limit=0"), 422, "validation_error", "limit")
    assert_error(admin.get(path("audit") + "?limit=5000"), 422, "validation_error", "limit")
    assert_error(admin.get(path("audit") + "?limit=many"), 422, "validation_error", "limit")
