"""Typed dependencies: the Postroom object, the authenticated caller, JSON bodies."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from postroom import jsonlimits
from postroom.accounts import ApiRole, Principal
from postroom.api.errors import Unauthorized
from postroom.app import Postroom
from postroom.errors import FieldError, PermissionDenied, RateLimited, ValidationError
from postroom.throttles import FAILED_AUTH_ADDRESS

__all__ = [
    "AdminDep",
    "JsonObject",
    "PostroomDep",
    "PrincipalDep",
    "get_postroom",
    "get_principal",
    "json_object",
    "remember_submitted",
    "require_admin",
]


async def get_postroom(request: Request) -> Postroom:
    """The Postroom the API was created with (``create_app(postroom)``).

    ``async`` although it awaits nothing: FastAPI runs a plain function in a worker thread,
    a hop that cost more than this whole lookup on every request (docs/decisions/0008)."""
    postroom: Postroom = request.app.state.postroom
    return postroom


PostroomDep = Annotated[Postroom, Depends(get_postroom)]

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key: `Authorization: Bearer prk_…` (`postroom apikey create`).",
)


def get_principal(
    request: Request,
    postroom: PostroomDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller of this request; raises Unauthorized without a valid API key, and
    RateLimited once its address sent too many wrong keys (or wrong passwords)."""
    if credentials is None:
        raise Unauthorized(
            "This endpoint needs an API key: send 'Authorization: Bearer <key>'. "
            "An administrator creates one with `postroom apikey create NAME --role admin`."
        )
    principal = postroom.accounts.verify_api_key(credentials.credentials)
    if principal is None:
        # A valid key is never refused (256 random bits: guessing one is hopeless, and one
        # client with an old key must not lock out every other client of its host); wrong
        # ones are counted per address, with the web UI's failed sign-ins.
        address = request.client.host if request.client else "unknown"
        wait = postroom.throttles.take(FAILED_AUTH_ADDRESS, address)
        if wait > 0:
            raise RateLimited(
                "Too many requests with a wrong API key or password from your address; "
                f"wait {math.ceil(wait)} seconds. Check the key the client sends.",
                retry_after_s=math.ceil(wait),
            )
        raise Unauthorized(
            "The API key is unknown or was revoked; ask an administrator for a new one.",
            invalid_token=True,
        )
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_admin(principal: PrincipalDep) -> Principal:
    """The caller, when its role may read and change configuration; else PermissionDenied."""
    if principal.role != ApiRole.ADMIN:
        raise PermissionDenied(
            f"API key '{principal.name}' has role '{principal.role}', which may send mail "
            "but not read or change configuration; use a key with role 'admin'."
        )
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]


async def json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, for bodies the services validate themselves.

    Nesting is bounded (:mod:`postroom.jsonlimits`); the body is kept on the request's
    state so that error responses can make sure they quote none of its values.
    """
    try:
        data = jsonlimits.loads(await request.body())
    except jsonlimits.JsonTooDeep as exc:
        raise ValidationError(FieldError("", str(exc))) from None
    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
        raise ValidationError(FieldError("", "The request body is not valid JSON.")) from None
    request.state.submitted = data
    if not isinstance(data, dict):
        raise ValidationError(FieldError("", "The request body must be a JSON object."))
    return data


JsonObject = Annotated[dict[str, Any], Depends(json_object)]


async def remember_submitted(request: Request) -> None:
    """Keep a body FastAPI parsed for a declared model on the request's state (as
    :func:`json_object` does), so error responses can make sure they quote none of it.
    ``async`` (awaiting nothing) so that every request is spared a worker-thread hop."""
    parsed = getattr(request, "_json", None)  # Starlette's cache of request.json()
    if parsed is not None and not hasattr(request.state, "submitted"):
        request.state.submitted = parsed
