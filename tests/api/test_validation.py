"""Bad input is refused with 422, names the field, echoes nothing and stores nothing."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import CANARY
from tests.api.helpers import assert_error, basic_profile, path

PROFILES = path("profiles")
_DROP = object()


def _with(**changes: Any) -> dict[str, Any]:
    """basic_profile("New one") with top-level or dotted ("smtp.port") changes."""
    data: dict[str, Any] = basic_profile("New one")
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = data
        for part in parents:
            node = node[part]
        if value is _DROP:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return data


BAD_PROFILES = {
    "port 0": (_with(smtp__port=0), "smtp.port"),
    "port 70000": (_with(smtp__port=70000), "smtp.port"),
    "port not a number": (_with(smtp__port="submission"), "smtp.port"),
    "two addresses": (
        _with(sender__from_address="alice@example.org)<bob@example.com>"),
        "sender.from_address",
    ),
    "base url with query": (
        _with(email_actions_base_url="https://auto.example.com/?next=x"),
        "email_actions_base_url",
    ),
    "base url with userinfo": (
        _with(email_actions_base_url="https://user:pw@auto.example.com"),
        "email_actions_base_url",
    ),
    "basic auth without username": (_with(smtp__username=_DROP), "smtp.username"),
    "basic auth with empty username": (_with(smtp__username=""), "smtp.username"),
    "oauth2 with unknown config": (
        _with(smtp__auth="oauth2", smtp__oauth2_config="nope"),
        "smtp.oauth2_config",
    ),
    "unknown top-level field": (_with(colour="red"), "colour"),
    "unknown smtp field": (_with(smtp__hots="smtp.example.com"), "smtp.hots"),
    "duplicate name in other case": (basic_profile("qa ALERTS"), "name"),
    "CR/LF in host": (_with(smtp__host="smtp.example.com\r\nRCPT TO:<x@y>"), "smtp.host"),
    "LF in password": (_with(smtp__password=CANARY + "\nX"), "smtp.password"),
    "missing sender": (_with(sender=_DROP), "sender"),
    "security unknown": (_with(smtp__security="ssl"), "smtp.security"),
}


@pytest.fixture
def seeded(admin: TestClient) -> list[dict[str, Any]]:
    """One stored profile ("QA alerts"); returns GET /profiles to compare against."""
    assert admin.post(PROFILES, json=basic_profile()).status_code == 201
    listing: list[dict[str, Any]] = admin.get(PROFILES).json()
    return listing


@pytest.mark.parametrize(("body", "field"), BAD_PROFILES.values(), ids=BAD_PROFILES.keys())
def test_bad_profile_is_refused_on_create(
    admin: TestClient, seeded: list[dict[str, Any]], body: dict[str, Any], field: str
) -> None:
    response = admin.post(PROFILES, json=body)
    error = assert_error(response, 422, "validation_error", field=field)
    assert error["message"].startswith(field)
    assert admin.get(PROFILES).json() == seeded


BAD_CHANGES = {
    "port 0": ({"smtp": {"port": 0}}, "smtp.port"),
    "port 70000": ({"smtp": {"port": 70000}}, "smtp.port"),
    "two addresses": (
        {"sender": {"from_address": "alice@example.org)<bob@example.com>"}},
        "sender.from_address",
    ),
    "base url with query": (
        {"email_actions_base_url": "https://auto.example.com/a?b=c"},
        "email_actions_base_url",
    ),
    "base url with userinfo": (
        {"email_actions_base_url": "https://admin@auto.example.com"},
        "email_actions_base_url",
    ),
    "basic auth without username": ({"smtp": {"username": None}}, "smtp.username"),
    "oauth2 with unknown config": (
        {"smtp": {"auth": "oauth2", "oauth2_config": "nope"}},
        "smtp.oauth2_config",
    ),
    "unknown field": ({"smtp": {"pasword": "x"}}, "smtp.pasword"),
    "read-only field": ({"id": 7}, "id"),
    "rename onto other profile in other case": ({"name": "OTHER"}, "name"),
    "CR/LF in host": ({"smtp": {"host": "a.example.com\r\nX: y"}}, "smtp.host"),
    "CR in from_name": ({"sender": {"from_name": "QA\rBcc: x@y"}}, "sender.from_name"),
    "negative timeout": ({"smtp": {"send_timeout_s": -1}}, "smtp.send_timeout_s"),
    "sender not an object": ({"sender": "qa@example.com"}, "sender"),
}


@pytest.mark.parametrize(("changes", "field"), BAD_CHANGES.values(), ids=BAD_CHANGES.keys())
@pytest.mark.parametrize("method", ["put", "patch"])
def test_bad_change_is_refused_on_update(
    admin: TestClient,
    seeded: list[dict[str, Any]],
    method: str,
    changes: dict[str, Any],
    field: str,
) -> None:
    assert admin.post(PROFILES, json=basic_profile("Other")).status_code == 201
    before = admin.get(PROFILES).json()
    changes = {**changes, "description": "must not be stored"}
    response = admin.request(method.upper(), path("profiles", "QA alerts"), json=changes)
    assert_error(response, 422, "validation_error", field=field)
    assert admin.get(PROFILES).json() == before


def test_every_bad_field_is_listed(admin: TestClient) -> None:
    body = _with(smtp__port=0, sender__from_address="not an address", colour="red")
    error = assert_error(admin.post(PROFILES, json=body), 422, "validation_error")
    assert {e["field"] for e in error["errors"]} == {"smtp.port", "sender.from_address", "colour"}


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b"[1, 2]", b'"a string"', b"\xff\xfe"],
    ids=["malformed", "empty", "array", "string", "not utf-8"],
)
@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_body_that_is_not_a_json_object_is_422(
    admin: TestClient, seeded: list[dict[str, Any]], method: str, content: bytes
) -> None:
    url = PROFILES if method == "POST" else path("profiles", "QA alerts")
    response = admin.request(
        method, url, content=content, headers={"Content-Type": "application/json"}
    )
    error = assert_error(response, 422, "validation_error")
    assert "field" not in error
    assert admin.get(PROFILES).json() == seeded


def test_errors_never_echo_submitted_values(admin: TestClient, seeded: list[Any]) -> None:
    sneaky = "Sneaky-Value-9d2e"
    bodies = [
        _with(smtp__port=sneaky),
        _with(smtp__password=[sneaky]),
        _with(smtp__security=sneaky),
        _with(smtp__verify_certificate=sneaky),
        _with(smtp__username={"nested": sneaky}),
        _with(max_connections=sneaky),
        _with(smtp__password=sneaky * 1000),
    ]
    for body in bodies:
        response = admin.post(PROFILES, json=body)
        assert response.status_code == 422, response.text
        assert sneaky not in response.text
    response = admin.put(path("bindings", "x"), json={"profile": 5, "extra": sneaky})
    assert response.status_code == 422
    assert sneaky not in response.text
    response = admin.get(path("audit") + f"?limit={sneaky}")
    assert_error(response, 422, "validation_error", field="limit")
    assert sneaky not in response.text
