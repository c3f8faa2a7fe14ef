"""The FastAPI application: ``create_app(postroom)``; nothing is built at import time."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI

import postroom
from postroom.actions import pages as action_pages
from postroom.api.body_limit import BodyLimit
from postroom.api.deps import remember_submitted
from postroom.api.errors import install_error_handlers
from postroom.api.openapi import add_request_schemas
from postroom.api.proxy import TrustedProxyHeaders
from postroom.api.routes import (
    actions,
    apikeys,
    audit,
    bindings,
    connection_tests,
    health,
    inbound,
    messages,
    metrics,
    notify,
    oauth2,
    profile_detection,
    profiles,
)
from postroom.api.timing import ApiLatency, ApiTimer
from postroom.app import Postroom
from postroom.notify import pages as unsubscribe_pages
from postroom.outbox.group_commit import GroupCommit
from postroom.web import install_web

__all__ = ["API_PREFIX", "create_app"]

API_PREFIX = "/api/v1"

_DESCRIPTION = """\
Email profiles, process bindings, OAuth2 configurations and the audit log of a postroom
installation. Authenticate with an API key: `Authorization: Bearer <key>`. Errors are
`{"error": {"code", "message", "field"?}}`; secrets are write-only.
"""


class _PostroomAPI(FastAPI):
    def openapi(self) -> dict[str, Any]:
        if not self.openapi_schema:
            add_request_schemas(super().openapi())
        assert self.openapi_schema is not None
        return self.openapi_schema


def create_app(app: Postroom) -> FastAPI:
    """The REST API (under ``/api/v1``) and health endpoints of ``app``."""
    api = _PostroomAPI(
        # error messages must not quote a body FastAPI parsed either (see api/errors.py)
        dependencies=[Depends(remember_submitted)],
        title="postroom",
        version=postroom.__version__,
        description=_DESCRIPTION,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # Swagger UI loads from a CDN; postroom serves no CDN assets
        redoc_url=None,
    )
    api.state.postroom = app
    # the REST send path: concurrent requests share commits (docs/decisions/0008)
    api.state.group_commit = GroupCommit(app.outbox, max_depth=app.settings.outbox_max_depth)
    # request bodies are capped before anything reads them (the UI's forms too)
    api.add_middleware(BodyLimit, max_bytes=app.settings.max_request_bytes)
    install_error_handlers(api)
    install_web(api, app)  # first: the admin UI owns "/" (and /login, /settings, /static)
    v1 = APIRouter(prefix=API_PREFIX)
    for module in (
        connection_tests,
        profile_detection,
        profiles,
        bindings,
        oauth2,
        audit,
        messages,
        actions,
        notify,
        inbound,
        apikeys,
    ):
        v1.include_router(module.router)
    api.include_router(health.router)
    api.include_router(metrics.router)
    api.include_router(action_pages.router)
    api.include_router(unsubscribe_pages.router)
    api.include_router(oauth2.callback_router)  # the redirect URI, outside /api/v1
    api.include_router(v1)
    api.add_middleware(TrustedProxyHeaders, trusted=app.trusted_proxies)
    api.state.api_latency = ApiLatency()
    api.add_middleware(ApiTimer, latency=api.state.api_latency)  # outermost: the whole request
    return api
