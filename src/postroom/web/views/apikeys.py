"""API keys in the UI, for admins only (viewers get the 403 page): the same service as
REST ``/api/v1/apikeys`` (Accounts.create_api_key, list_api_keys, revoke_api_key).

A new key is shown once, on the page that answers the creating POST (not after a
redirect, so it is never in a cookie or a URL); only its hash is stored.
"""

from __future__ import annotations

from fastapi import Request, Response

from postroom.accounts import ApiKeyCreated
from postroom.errors import NotFound, ValidationError
from postroom.web.core import EditorForm, UserDep, WebDep, WebUser, see_other
from postroom.web.views.common import Route
from postroom.web.views.users import admins_only

__all__ = ["ROUTES"]

LIST = "/settings/apikeys"
_BLANK = {"name": "", "role": "sender", "processes": "", "profiles": ""}


def _names(text: str) -> list[str] | None:
    """A comma-separated list of names; empty means no limit."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    return names or None


def _page(
    request: Request,
    web: WebDep,
    user: WebUser,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, list[str]] | None = None,
    created: ApiKeyCreated | None = None,
    status: int = 200,
) -> Response:
    admins_only(user)
    return web.page(
        request,
        "apikeys.html",
        status=status,
        title="API keys",
        keys=web.pr.accounts.list_api_keys(),
        values=values or dict(_BLANK),
        errors=errors or {},
        created=created,
    )


def keys_page(request: Request, web: WebDep, user: UserDep) -> Response:
    return _page(request, web, user)


def create(request: Request, web: WebDep, user: UserDep, form: EditorForm) -> Response:
    """Create a key and show it once; every problem is named at its field."""
    values = {k: form.get(k, "").strip() for k in _BLANK}
    try:
        created = web.pr.accounts.create_api_key(
            values["name"],
            role=values["role"],
            processes=_names(values["processes"]),
            profiles=_names(values["profiles"]),
            actor=user.actor,
        )
    except ValidationError as exc:
        errors: dict[str, list[str]] = {}
        for e in exc.errors:
            errors.setdefault(e.field or "name", []).append(e.message)
        return _page(request, web, user, values=values, errors=errors, status=422)
    return _page(request, web, user, created=created, status=201)


def revoke(request: Request, web: WebDep, user: UserDep, form: EditorForm) -> Response:
    name = form.get("name", "")
    try:
        web.pr.accounts.revoke_api_key(name, actor=user.actor)
    except NotFound as exc:
        web.flash(request, "error", exc.message)
    else:
        web.flash(request, "success", f"API key '{name}' revoked: it is refused from now on.")
    return see_other(LIST)


ROUTES = [
    Route(LIST, keys_page),
    Route(LIST, create, ["POST"]),
    Route(LIST + "/revoke", revoke, ["POST"]),
]
