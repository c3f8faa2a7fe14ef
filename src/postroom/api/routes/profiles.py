"""``/profiles``: create, read, update, delete, set as default."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Response

from postroom.api.deps import AdminDep, JsonObject, PostroomDep, require_admin
from postroom.api.errors import ERROR_RESPONSES, error_responses
from postroom.api.openapi import json_body
from postroom.api.schemas import ProfileDeleted, pop_version
from postroom.profiles.schemas import ProfileRead

__all__ = ["router"]

router = APIRouter(
    prefix="/profiles",
    tags=["profiles"],
    dependencies=[Depends(require_admin)],
    responses=ERROR_RESPONSES,
)

_NOT_FOUND = error_responses((404, "No profile of that name"))
_CONFLICT = error_responses(
    (
        409,
        "Stale `version` (stale_version), or the profile is the default or bound to "
        "processes (conflict, with `processes` and `is_default`)",
    )
)
_UPDATE_BODY = json_body(
    "ProfileUpdate",
    "The fields to change; nested sections merge field by field. Carry `version` to refuse "
    "the update when someone else changed the profile meanwhile.",
)
Force = Annotated[
    bool,
    Query(description="Also when the profile is the default or bound (removes those bindings)"),
]

# Names may contain "/", hence the path convertor; routes with a suffix come first.


@router.post(
    "/{name:path}/set-default",
    response_model=ProfileRead,
    summary="Make this profile the system default",
    responses=_NOT_FOUND | _CONFLICT,
)
def set_default(name: str, postroom: PostroomDep, admin: AdminDep) -> ProfileRead:
    postroom.set_default(name, actor=admin.actor)
    return postroom.profiles.get(name)


@router.get("", response_model=list[ProfileRead], summary="Every profile, by name")
def list_profiles(postroom: PostroomDep, unused: bool = False) -> list[ProfileRead]:
    return postroom.profiles.list(unused=unused)


@router.post(
    "",
    status_code=201,
    response_model=ProfileRead,
    summary="Create a profile",
    openapi_extra=json_body("ProfileCreate", "A complete profile; secrets are write-only."),
)
def create_profile(
    body: JsonObject, postroom: PostroomDep, admin: AdminDep, response: Response
) -> ProfileRead:
    profile = postroom.profiles.create(body, actor=admin.actor)
    response.headers["Location"] = f"/api/v1/profiles/{quote(profile.name, safe='')}"
    return profile


@router.get("/{name:path}", response_model=ProfileRead, responses=_NOT_FOUND)
def get_profile(name: str, postroom: PostroomDep) -> ProfileRead:
    return postroom.profiles.get(name)


def _update(
    name: str, body: JsonObject, postroom: PostroomDep, admin: AdminDep, force: bool
) -> ProfileRead:
    version = pop_version(body)
    return postroom.profiles.update(name, body, version=version, force=force, actor=admin.actor)


@router.put(
    "/{name:path}",
    response_model=ProfileRead,
    summary="Change a profile (partial, merged field by field)",
    openapi_extra=_UPDATE_BODY,
    responses=_NOT_FOUND | _CONFLICT,
)
def put_profile(
    name: str,
    body: JsonObject,
    postroom: PostroomDep,
    admin: AdminDep,
    force: Force = False,
) -> ProfileRead:
    return _update(name, body, postroom, admin, force)


@router.patch(
    "/{name:path}",
    response_model=ProfileRead,
    summary="Change a profile (same as PUT)",
    openapi_extra=_UPDATE_BODY,
    responses=_NOT_FOUND | _CONFLICT,
)
def patch_profile(
    name: str,
    body: JsonObject,
    postroom: PostroomDep,
    admin: AdminDep,
    force: Force = False,
) -> ProfileRead:
    return _update(name, body, postroom, admin, force)


@router.delete(
    "/{name:path}",
    response_model=ProfileDeleted,
    summary="Delete a profile",
    responses=_NOT_FOUND | _CONFLICT,
)
def delete_profile(
    name: str, postroom: PostroomDep, admin: AdminDep, force: Force = False
) -> ProfileDeleted:
    current = postroom.profiles.get(name)
    unbound = postroom.profiles.delete(name, force=force, actor=admin.actor)
    return ProfileDeleted(name=current.name, unbound=unbound, was_default=current.is_default)
