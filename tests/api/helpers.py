"""Small helpers shared by the API tests."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import basic_profile

__all__ = ["API", "assert_error", "basic_profile", "path"]

API = "/api/v1"


def path(*parts: str) -> str:
    """An API path; names are URL-encoded (they may contain spaces and slashes)."""
    from urllib.parse import quote

    return API + "".join("/" + quote(part, safe="") for part in parts)


def assert_error(
    response: httpx.Response, status: int, code: str, field: str | None = None
) -> dict[str, Any]:
    """Check the error shape ``{"error": {"code", "message", "field"?}}``; return ``error``."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    if field is not None:
        assert error["field"] == field, error
        assert field in [e["field"] for e in error["errors"]]
    return error
