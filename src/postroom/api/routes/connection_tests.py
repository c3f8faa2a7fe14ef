"""Connection tests: of a saved profile, or of unsaved settings. Admin only, rate-limited."""

from __future__ import annotations

import threading
import time
import weakref
from collections import defaultdict, deque
from typing import Any

from fastapi import APIRouter, Depends

from postroom.api.deps import AdminDep, JsonObject, PostroomDep, require_admin
from postroom.api.errors import ERROR_RESPONSES, error_responses
from postroom.api.openapi import json_body
from postroom.app import Postroom
from postroom.diagnostics.steps import Diagnosis
from postroom.errors import FieldError, RateLimited, ValidationError

__all__ = ["TESTS_PER_MINUTE", "router"]

TESTS_PER_MINUTE = 10

router = APIRouter(
    tags=["connection tests"], dependencies=[Depends(require_admin)], responses=ERROR_RESPONSES
)

_OPTIONS = {"imap", "smtp", "send_to", "roundtrip"}


class _Window:
    """At most ``limit`` tests per caller per minute: a test reaches out to the network."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def check(self, who: str) -> None:
        now = time.monotonic()
        with self._lock:
            seen = self._seen[who]
            while seen and now - seen[0] > 60:
                seen.popleft()
            if len(seen) >= self.limit:
                wait = int(60 - (now - seen[0])) + 1
                raise RateLimited(
                    f"At most {self.limit} connection tests per minute; try again in {wait} s.",
                    retry_after_s=wait,
                )
            seen.append(now)


_WINDOWS: weakref.WeakKeyDictionary[Postroom, _Window] = weakref.WeakKeyDictionary()


def _window(postroom: Postroom) -> _Window:
    """One window per installation object, made on first use."""
    return _WINDOWS.setdefault(postroom, _Window(TESTS_PER_MINUTE))


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
        (404, "No profile of that name"), (429, "Too many tests; see Retry-After")
    ),
)
async def test_saved(
    name: str, postroom: PostroomDep, principal: AdminDep, body: JsonObject
) -> Diagnosis:
    """Body (all optional): `imap`, `send_to`, `roundtrip`. The result is kept on the profile."""
    options = _options(body)
    _window(postroom).check(principal.actor)
    return await postroom.atest_profile(name, actor=principal.actor, **options)


@router.post(
    "/connection-tests",
    response_model=Diagnosis,
    summary="Test unsaved settings (a masked or empty secret uses the stored one of `existing`)",
    responses=error_responses((429, "Too many tests; see Retry-After")),
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
    _window(postroom).check(principal.actor)
    return await postroom.atest_profile(
        existing, settings=settings, actor=principal.actor, **options
    )
