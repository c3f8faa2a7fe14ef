"""``/events``, ``/templates``, ``/subscriptions``: the platform's notifications."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response

from postroom.api.deps import JsonObject, PostroomDep, PrincipalDep, require_admin
from postroom.api.errors import ERROR_RESPONSES, error_responses
from postroom.errors import FieldError, ValidationError
from postroom.notify.render import Rendered
from postroom.notify.schemas import NotifyResult, SubscriptionRead, TemplateRead

__all__ = ["router"]

router = APIRouter(responses=ERROR_RESPONSES)
admin = APIRouter(dependencies=[Depends(require_admin)], responses=ERROR_RESPONSES)

_NOT_FOUND = error_responses((404, "Not found"))


def _text(body: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ValidationError(FieldError(key, "is required (text)"))
    return value


@router.post(
    "/events",
    response_model=NotifyResult,
    tags=["events"],
    summary="Tell subscribers about an event",
)
def post_event(postroom: PostroomDep, principal: PrincipalDep, body: JsonObject) -> NotifyResult:
    """Body: `event` (e.g. `run.failed`), `process`, `data` {..}, `idempotency_key`."""
    unknown = set(body) - {"event", "process", "data", "idempotency_key"}
    if unknown:
        raise ValidationError([FieldError(k, "is not a known field") for k in sorted(unknown)])
    data = body.get("data") or {}
    if not isinstance(data, dict):
        raise ValidationError(FieldError("data", "must be an object"))
    principal.scope.check_process(_text(body, "process", required=False))  # a key's processes
    return postroom.notify(
        _text(body, "event") or "", process=_text(body, "process", required=False), data=data,
        idempotency_key=_text(body, "idempotency_key", required=False),
    )  # fmt: skip


@admin.get("/templates", response_model=list[TemplateRead], tags=["templates"])
def list_templates(postroom: PostroomDep) -> list[TemplateRead]:
    return postroom.templates.list()


@admin.post("/templates", status_code=201, response_model=TemplateRead, tags=["templates"])
def create_template(
    postroom: PostroomDep, principal: PrincipalDep, body: JsonObject
) -> TemplateRead:
    return postroom.templates.create(body, actor=principal.actor)


@admin.post(
    "/templates/preview",
    response_model=Rendered,
    tags=["templates"],
    summary="Render unsaved template text",
)
def preview_unsaved(postroom: PostroomDep, body: JsonObject) -> Rendered:
    spec = body.get("template")
    if not isinstance(spec, dict):
        raise ValidationError(FieldError("template", "must be the template (an object)"))
    data = body.get("data")
    if data is not None and not isinstance(data, dict):
        raise ValidationError(FieldError("data", "must be an object"))
    return postroom.templates.preview(spec=spec, data=data)


@admin.get(
    "/templates/{name}", response_model=TemplateRead, tags=["templates"], responses=_NOT_FOUND
)
def get_template(name: str, postroom: PostroomDep) -> TemplateRead:
    return postroom.templates.get(name)


@admin.get(
    "/templates/{name}/history",
    response_model=list[TemplateRead],
    tags=["templates"],
    responses=_NOT_FOUND,
)
def template_history(name: str, postroom: PostroomDep) -> list[TemplateRead]:
    return postroom.templates.history(name)


@admin.put(
    "/templates/{name}", response_model=TemplateRead, tags=["templates"], responses=_NOT_FOUND
)
def update_template(
    name: str, postroom: PostroomDep, principal: PrincipalDep, body: JsonObject
) -> TemplateRead:
    version = body.pop("version", None)
    if version is not None and not isinstance(version, int):
        raise ValidationError(FieldError("version", "must be a whole number"))
    return postroom.templates.update(name, body, version=version, actor=principal.actor)


@admin.delete("/templates/{name}", status_code=204, tags=["templates"], responses=_NOT_FOUND)
def delete_template(name: str, postroom: PostroomDep, principal: PrincipalDep) -> Response:
    postroom.templates.delete(name, actor=principal.actor)
    return Response(status_code=204)


@admin.post(
    "/templates/{name}/preview", response_model=Rendered, tags=["templates"], responses=_NOT_FOUND
)
def preview(name: str, postroom: PostroomDep, body: JsonObject) -> Rendered:
    """Body (optional): `data` {..}; default: the template's sample data."""
    data = body.get("data")
    if data is not None and not isinstance(data, dict):
        raise ValidationError(FieldError("data", "must be an object"))
    return postroom.templates.preview(name, data=data)


@admin.get("/subscriptions", response_model=list[SubscriptionRead], tags=["subscriptions"])
def list_subscriptions(postroom: PostroomDep) -> list[SubscriptionRead]:
    return postroom.notifications.subscriptions.list()


@admin.post(
    "/subscriptions", status_code=201, response_model=SubscriptionRead, tags=["subscriptions"]
)
def add_subscription(
    postroom: PostroomDep, principal: PrincipalDep, body: JsonObject
) -> SubscriptionRead:
    return postroom.notifications.subscriptions.add(body, actor=principal.actor)


@admin.get(
    "/subscriptions/{id}",
    response_model=SubscriptionRead,
    tags=["subscriptions"],
    responses=_NOT_FOUND,
)
def get_subscription(id: int, postroom: PostroomDep) -> SubscriptionRead:
    return postroom.notifications.subscriptions.get(id)


@admin.put(
    "/subscriptions/{id}",
    response_model=SubscriptionRead,
    tags=["subscriptions"],
    responses=_NOT_FOUND,
)
def update_subscription(
    id: int, postroom: PostroomDep, principal: PrincipalDep, body: JsonObject
) -> SubscriptionRead:
    return postroom.notifications.subscriptions.update(id, body, actor=principal.actor)


@admin.delete("/subscriptions/{id}", status_code=204, tags=["subscriptions"], responses=_NOT_FOUND)
def remove_subscription(id: int, postroom: PostroomDep, principal: PrincipalDep) -> Response:
    postroom.notifications.subscriptions.remove(id, actor=principal.actor)
    return Response(status_code=204)


router.include_router(admin)
