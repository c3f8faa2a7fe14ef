"""Assembles the web UI: ``create_web_router(postroom)`` and ``install_web(api, postroom)``."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, FastAPI, Response

from postroom.app import Postroom
from postroom.web.core import PageNotFound, WebRoute, WebState
from postroom.web.render import STATIC_FILES, read_static
from postroom.web.views import (
    account,
    actions,
    apikeys,
    audit,
    auth,
    inbound,
    oauth2,
    oauth2_connect,
    outbox,
    processes,
    profile_form,
    profiles,
    reset,
    subscriptions,
    templates,
    users,
)

__all__ = ["create_web_router", "install_web"]

_MODULES = (
    auth,
    reset,
    profiles,
    profile_form,
    processes,
    oauth2,
    oauth2_connect,
    outbox,
    inbound,
    actions,
    templates,
    subscriptions,
    audit,
    account,
    users,
    apikeys,
)


def _static_route(files: dict[str, bytes]) -> Callable[[str], Response]:
    def static(name: str) -> Response:
        """A vendored static file (nothing is loaded from a CDN)."""
        if name not in files:
            raise PageNotFound("There is no such file.")
        return Response(
            files[name],
            media_type=STATIC_FILES[name],
            headers={"Cache-Control": "public, max-age=31536000, immutable"},
        )

    return static


def create_web_router(pr: Postroom, state: WebState | None = None) -> APIRouter:
    """Every page of the admin UI (``/``, ``/login``, ``/settings/email/…``, ``/static/…``)."""
    state = state or WebState(pr)
    route_class = type("PostroomWebRoute", (WebRoute,), {"web": state})
    router = APIRouter(route_class=route_class, include_in_schema=False)
    for module in _MODULES:
        for route in module.ROUTES:
            router.add_api_route(
                route.path, route.endpoint, methods=route.methods, include_in_schema=False
            )
    files = {name: read_static(name) for name in STATIC_FILES}
    router.add_api_route("/static/{name}", _static_route(files), include_in_schema=False)
    return router


def install_web(api: FastAPI, pr: Postroom) -> None:
    """Mount the UI on ``api``. Call it before other routers: the UI owns ``/``.

    The UI's state (throttles, signed-out sessions) is ``api.state.postroom_web``.
    """
    state = WebState(pr)
    api.state.postroom_web = state
    api.include_router(create_web_router(pr, state))
