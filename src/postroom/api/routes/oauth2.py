"""``/oauth2-configs``: OAuth2 configurations (the client secret is write-only), connecting
them (``…/connect``, ``…/connect/poll``), their ``…/status``; and ``/oauth2/callback``, where
the provider sends the browser back after a sign-in (outside ``/api/v1``: it is the redirect
URI registered with the provider, ``POSTROOM_PUBLIC_URL`` + ``/oauth2/callback``)."""

from __future__ import annotations

import html
from datetime import datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel

from postroom.api.deps import AdminDep, JsonObject, PostroomDep, require_admin
from postroom.api.errors import ERROR_RESPONSES, error_responses
from postroom.api.openapi import json_body
from postroom.api.schemas import pop_version
from postroom.errors import PostroomError
from postroom.oauth2.errors import FlowError, TokenError
from postroom.oauth2.flows import Connected
from postroom.oauth2.schemas import Grant, OAuth2ConfigRead, OAuth2Status
from postroom.web.headers import apply_security_headers

__all__ = ["callback_router", "router"]

CALLBACK_PATH = "/oauth2/callback"

router = APIRouter(
    prefix="/oauth2-configs",
    tags=["oauth2"],
    dependencies=[Depends(require_admin)],
    responses=ERROR_RESPONSES,
)

_NOT_FOUND = error_responses((404, "No configuration of that name"))
_CONFLICT = error_responses((409, "Stale `version`, or profiles still use it"))
_UPDATE_BODY = json_body(
    "OAuth2ConfigUpdate",
    "The fields to change; the name cannot change. A client secret left out, empty or "
    "masked keeps the stored one.",
)


@router.get("", response_model=list[OAuth2ConfigRead], summary="Every OAuth2 configuration")
def list_configs(postroom: PostroomDep) -> list[OAuth2ConfigRead]:
    return postroom.oauth2.list()


@router.post(
    "",
    status_code=201,
    response_model=OAuth2ConfigRead,
    summary="Create an OAuth2 configuration",
    openapi_extra=json_body("OAuth2ConfigCreate", "The client secret is write-only."),
)
def create_config(
    body: JsonObject, postroom: PostroomDep, admin: AdminDep, response: Response
) -> OAuth2ConfigRead:
    config = postroom.oauth2.create(body, actor=admin.actor)
    response.headers["Location"] = f"/api/v1/oauth2-configs/{quote(config.name, safe='')}"
    return config


class ConnectStarted(BaseModel):
    """What a person does next: open ``authorization_url`` (authorization code), or enter
    ``user_code`` at ``verification_uri`` (device code, then poll); client credentials are
    connected at once (``status``)."""

    grant: Grant
    authorization_url: str | None = None
    redirect_uri: str | None = None
    user_code: str | None = None
    verification_uri: str | None = None
    verification_uri_complete: str | None = None
    interval_s: int | None = None
    expires_at: datetime | None = None
    status: OAuth2Status | None = None


class ConnectPoll(BaseModel):
    done: bool
    status: OAuth2Status


_TOKEN_FAILED = error_responses(
    (404, "No configuration of that name"),
    (409, "The sign-in cannot complete (`oauth2_flow_failed`)"),
    (502, "The provider refused or failed (`oauth2_token_failed`, with `error`)"),
)


def _provider_error(exc: TokenError) -> JSONResponse:
    """502: the provider's answer, in the error shape plus its ``error``/``error_description``."""
    error = {"code": exc.code, "message": exc.message, "provider_error": exc.error}
    if exc.description:
        error["provider_error_description"] = exc.description
    return JSONResponse({"error": error}, status_code=502)


def redirect_uri(request: Request, public_url: str | None) -> str:
    """The callback URL to register with the provider: on POSTROOM_PUBLIC_URL when set."""
    if public_url:
        return public_url.rstrip("/") + CALLBACK_PATH
    return str(request.base_url).rstrip("/") + CALLBACK_PATH


@router.post(
    "/{name}/connect",
    response_model=ConnectStarted,
    summary="Connect a configuration: start a sign-in (or fetch an app-only token)",
    responses=_TOKEN_FAILED,
)
async def connect(
    name: str, request: Request, postroom: PostroomDep, admin: AdminDep
) -> ConnectStarted | JSONResponse:
    lifecycle = postroom.oauth2_lifecycle
    grant = postroom.oauth2.get(name).grant
    try:
        if grant is Grant.AUTHORIZATION_CODE:
            start = await lifecycle.flows.start_authorization(
                name, redirect_uri=redirect_uri(request, postroom.settings.public_url),
                actor=admin.actor,
            )  # fmt: skip
            return ConnectStarted(
                grant=grant, authorization_url=start.authorization_url,
                redirect_uri=start.redirect_uri, expires_at=start.expires_at,
            )  # fmt: skip
        if grant is Grant.DEVICE_CODE:
            device = await lifecycle.flows.start_device(name, actor=admin.actor)
            return ConnectStarted(
                grant=grant, user_code=device.user_code,
                verification_uri=device.verification_uri,
                verification_uri_complete=device.verification_uri_complete,
                interval_s=device.interval_s, expires_at=device.expires_at,
            )  # fmt: skip
        await lifecycle.flows.connect_client_credentials(name, actor=admin.actor)
    except TokenError as exc:
        return _provider_error(exc)
    return ConnectStarted(grant=grant, status=lifecycle.status(name))


@router.post(
    "/{name}/connect/poll",
    response_model=ConnectPoll,
    summary="Device code: ask once whether the person has signed in",
    responses=_TOKEN_FAILED,
)
async def connect_poll(name: str, postroom: PostroomDep) -> ConnectPoll | JSONResponse:
    lifecycle = postroom.oauth2_lifecycle
    try:
        done = await lifecycle.flows.poll_device(name)
    except TokenError as exc:
        return _provider_error(exc)
    return ConnectPoll(done=done is not None, status=lifecycle.status(name))


@router.get(
    "/{name}/status",
    response_model=OAuth2Status,
    summary="Account, scopes, token expiry, last refresh and consent state",
    responses=_NOT_FOUND,
)
def get_status(name: str, postroom: PostroomDep) -> OAuth2Status:
    return postroom.oauth2_lifecycle.status(name)


@router.get("/{name:path}", response_model=OAuth2ConfigRead, responses=_NOT_FOUND)
def get_config(name: str, postroom: PostroomDep) -> OAuth2ConfigRead:
    return postroom.oauth2.get(name)


@router.put(
    "/{name:path}",
    response_model=OAuth2ConfigRead,
    summary="Change an OAuth2 configuration (partial)",
    openapi_extra=_UPDATE_BODY,
    responses=_NOT_FOUND | _CONFLICT,
)
def put_config(
    name: str, body: JsonObject, postroom: PostroomDep, admin: AdminDep
) -> OAuth2ConfigRead:
    version = pop_version(body)
    return postroom.oauth2.update(name, body, version=version, actor=admin.actor)


@router.delete(
    "/{name:path}",
    status_code=204,
    response_class=Response,
    summary="Delete an OAuth2 configuration no profile uses",
    responses=_NOT_FOUND | _CONFLICT,
)
def delete_config(name: str, postroom: PostroomDep, admin: AdminDep) -> None:
    postroom.oauth2.delete(name, actor=admin.actor)


callback_router = APIRouter(tags=["oauth2"])

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="stylesheet" href="/static/app.css"></head>
<body><main><h1>{title}</h1><p>{text}</p></main></body></html>
"""


def _page(title: str, text: str, status: int) -> HTMLResponse:
    body = _PAGE.format(title=html.escape(title), text=html.escape(text))
    # the URL carried a code: keep it out of caches and referrers
    response = HTMLResponse(body, status_code=status, headers={"Referrer-Policy": "no-referrer"})
    apply_security_headers(response.headers)  # the same as every page of the admin UI
    return response


@callback_router.get(
    CALLBACK_PATH,
    response_class=HTMLResponse,
    summary="Where the provider sends the browser after a sign-in (the redirect URI)",
    responses={400: {"description": "Unknown, used or expired state; consent declined"}},
)
async def oauth2_callback(
    postroom: PostroomDep,
    state: Annotated[str, Query(max_length=200)] = "",
    code: Annotated[str | None, Query(max_length=4096)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
    error_description: Annotated[str | None, Query(max_length=2000)] = None,
) -> HTMLResponse:
    if not state:
        return _page("Sign-in failed", "The provider sent no state; start again.", 400)
    try:
        done: Connected = await postroom.oauth2_lifecycle.flows.complete_authorization(
            state=state, code=code, error=error, error_description=error_description
        )
    except (FlowError, TokenError) as exc:
        return _page("Sign-in failed", exc.message, 400)
    except PostroomError as exc:
        return _page("Sign-in failed", exc.message, 400)
    who = f" as {done.account}" if done.account else ""
    return _page(
        "Connected",
        f"OAuth2 configuration '{done.config}' is connected{who}. You can close this window.",
        200,
    )
