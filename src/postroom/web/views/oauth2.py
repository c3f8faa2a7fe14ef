"""OAuth2 configurations: list, create, edit, delete (the client secret is write-only)."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response

from postroom.errors import Conflict, StaleVersion, ValidationError
from postroom.oauth2.schemas import Grant, OAuth2ConfigRead, Provider
from postroom.web.core import EditorForm, UserDep, WebDep, see_other
from postroom.web.views.common import Route, find_oauth2
from postroom.web.views.oauth2_connect import connection_status

__all__ = ["ROUTES"]

LIST = "/settings/email/oauth2"
_TEXT = (
    "name",
    "provider",
    "grant",
    "client_id",
    "tenant",
    "authorize_url",
    "token_url",
    "username",
)


def _values(config: OAuth2ConfigRead | None) -> dict[str, str]:
    if config is None:
        return {"provider": Provider.GENERIC, "grant": Grant.AUTHORIZATION_CODE}
    data = config.model_dump(mode="json")
    values = {k: str(data.get(k) or "") for k in _TEXT}
    values["scopes"] = " ".join(config.scopes)
    return values


def _data(form: dict[str, str], *, new: bool) -> dict[str, Any]:
    data: dict[str, Any] = {k: form.get(k, "").strip() or None for k in _TEXT}
    if not new:
        data.pop("name")
    data["scopes"] = form.get("scopes", "").split()
    secret = form.get("client_secret", "")
    if secret:
        data["client_secret"] = secret
    return data


def _form(
    request: Request,
    web: WebDep,
    can_edit: bool,
    config: OAuth2ConfigRead | None,
    values: dict[str, str],
    *,
    errors: dict[str, list[str]] | None = None,
    status: int = 200,
) -> Response:
    return web.page(
        request,
        "oauth2_form.html",
        status=status,
        title=f"OAuth2: {config.name}" if config else "New OAuth2 configuration",
        config=config,
        values=values,
        errors=errors or {},
        providers=list(Provider),
        grants=list(Grant),
        can_edit=can_edit,
        connection=connection_status(web.pr, config),
    )


def oauth2_list(request: Request, web: WebDep, user: UserDep) -> Response:
    return web.page(
        request,
        "oauth2_list.html",
        title="OAuth2 configurations",
        configs=web.pr.oauth2.list(),
        can_edit=user.can_edit,
    )


def new_page(request: Request, web: WebDep, user: UserDep) -> Response:
    return _form(request, web, user.can_edit, None, _values(None))


def edit_page(request: Request, web: WebDep, user: UserDep, config_id: str) -> Response:
    config = find_oauth2(web.pr, config_id)
    return _form(request, web, user.can_edit, config, _values(config))


def _errors(exc: ValidationError) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for error in exc.errors:
        field = error.field if error.field in (*_TEXT, "scopes", "client_secret") else ""
        out.setdefault(field, []).append(
            error.message if field else f"{error.field}: {error.message}".lstrip(": ")
        )
    return out


def create(request: Request, web: WebDep, user: UserDep, form: EditorForm) -> Response:
    values = {k: form.get(k, "") for k in (*_TEXT, "scopes")}
    try:
        config = web.pr.oauth2.create(_data(form, new=True), actor=user.actor)
    except ValidationError as exc:
        return _form(request, web, True, None, values, errors=_errors(exc), status=422)
    web.flash(request, "success", f"OAuth2 configuration '{config.name}' created.")
    return see_other(LIST)


def update(
    request: Request, web: WebDep, user: UserDep, config_id: str, form: EditorForm
) -> Response:
    config = find_oauth2(web.pr, config_id)
    values = {k: form.get(k, "") for k in (*_TEXT, "scopes")} | {"name": config.name}
    version = form.get("version", "")
    try:
        web.pr.oauth2.update(
            config.name,
            _data(form, new=False),
            version=int(version) if version.isdigit() else None,
            actor=user.actor,
        )
    except ValidationError as exc:
        return _form(request, web, True, config, values, errors=_errors(exc), status=422)
    except StaleVersion as exc:
        return _form(request, web, True, config, values, errors={"": [exc.message]}, status=409)
    web.flash(request, "success", f"OAuth2 configuration '{config.name}' saved.")
    return see_other(LIST)


def delete_page(request: Request, web: WebDep, user: UserDep, config_id: str) -> Response:
    config = find_oauth2(web.pr, config_id)
    return web.page(
        request, "oauth2_delete.html", title=f"Delete {config.name}", config=config, error=None
    )


def delete(
    request: Request, web: WebDep, user: UserDep, config_id: str, form: EditorForm
) -> Response:
    config = find_oauth2(web.pr, config_id)
    try:
        web.pr.oauth2.delete(config.name, actor=user.actor)
    except Conflict as exc:
        return web.page(
            request,
            "oauth2_delete.html",
            status=409,
            title=f"Delete {config.name}",
            config=config,
            error=exc.message,
        )
    web.flash(request, "success", f"OAuth2 configuration '{config.name}' deleted.")
    return see_other(LIST)


ROUTES = [
    Route(LIST, oauth2_list),
    Route(LIST + "/new", new_page),
    Route(LIST + "/new", create, ["POST"]),
    Route(LIST + "/{config_id}", edit_page),
    Route(LIST + "/{config_id}", update, ["POST"]),
    Route(LIST + "/{config_id}/delete", delete_page),
    Route(LIST + "/{config_id}/delete", delete, ["POST"]),
]
