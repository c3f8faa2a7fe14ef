"""Connection tests: of a saved profile, or of unsaved settings. Admin only, rate-limited
per caller (the limit is shared with the web UI's Test buttons and kept in the database),
refused everywhere when the operator set ``POSTROOM_CONNECTION_TESTS=disabled``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from postroom.api.deps import AdminDep, JsonObject, PostroomDep, require_admin
from postroom.api.errors import ERROR_RESPONSES, error_responses
from postroom.api.openapi import json_body
from postroom.app import CONNECTION_TESTS_PER_MINUTE
from postroom.diagnostics.steps import Diagnosis
from postroom.errors import FieldError, ValidationError

__all__ = ["TESTS_PER_MINUTE", "router"]

TESTS_PER_MINUTE = CONNECTION_TESTS_PER_MINUTE

router = APIRouter(
    tags=["connection tests"], dependencies=[Depends(require_admin)], responses=ERROR_RESPONSES
)

_OPTIONS = {"imap", "smtp", "send_to", "roundtrip"}


def _options(body: dict[str, Any]) -> dict[str, Any]:
    unknown = set(body) - _OPTIONS - {"profile", "existing"}
    if unknown:
        raise ValidationError([FieldError(k, "is not a known field") for k in sorted(unknown)])
    out: dict[str, Any] = {}
    for key in ("imap", "smtp", "roundtrip"):
        if key in body:
            if not isinstance(body[key], bool):
                raise ValidationError(FieldError(key, "must be true or false"))
            out[key] = body[key]
    if body.get("send_to") is not None:
        if not isinstance(body["send_to"], str):
            raise ValidationError(FieldError("send_to", "must be an address"))
        out["send_to"] = body["send_to"]
    if out.get("imap") and "smtp" not in out:
        out["smtp"] = bool(out.get("roundtrip"))
    return out


@router.post(
    "/profiles/{name:path}/test",
    response_model=Diagnosis,
    summary="Test a saved profile step by step",
    responses=error_responses(
        (403, "Not an admin key, or connection tests disabled by the operator"),
        (404, "No profile of that name"),
        (429, "Too many tests; see Retry-After"),
    ),
)
async def test_saved(
    name: str, postroom: PostroomDep, principal: AdminDep, body: JsonObject
) -> Diagnosis:
    """Body (all optional): `imap`, `send_to`, `roundtrip`. The result is kept on the profile."""
    options = _options(body)
    return await postroom.atest_profile(
        name, actor=principal.actor, limit_key=principal.actor, **options
    )


@router.post(
    "/connection-tests",
    response_model=Diagnosis,
    summary="Test unsaved settings (a masked or empty secret uses the stored one of `existing`)",
    responses=error_responses(
        (403, "Not an admin key, or connection tests disabled by the operator"),
        (429, "Too many tests; see Retry-After"),
    ),
    openapi_extra=json_body(
        "ProfileCreate",
        "{'profile': <settings>, 'existing': <name>?, 'imap'?, 'send_to'?, 'roundtrip'?}",
    ),
)
async def test_unsaved(postroom: PostroomDep, principal: AdminDep, body: JsonObject) -> Diagnosis:
    settings = body.get("profile")
    if not isinstance(settings, dict):
        raise ValidationError(FieldError("profile", "must be the profile's settings (an object)"))
    existing = body.get("existing")
    if existing is not None and not isinstance(existing, str):
        raise ValidationError(FieldError("existing", "must be a profile name"))
    options = _options(body)
    return await postroom.atest_profile(
        existing, settings=settings, actor=principal.actor, limit_key=principal.actor, **options
    )
