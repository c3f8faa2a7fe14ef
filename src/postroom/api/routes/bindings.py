"""Which profile a process uses: ``/bindings``, ``/default-profile`` and the explainer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from postroom.api.deps import AdminDep, PostroomDep, require_admin
from postroom.api.errors import ERROR_RESPONSES, error_responses
from postroom.api.schemas import DefaultProfile, ProfileRef
from postroom.profiles.bindings import BindingRead, Explanation

__all__ = ["router"]

router = APIRouter(
    tags=["bindings"], dependencies=[Depends(require_admin)], responses=ERROR_RESPONSES
)

_NOT_FOUND = error_responses((404, "No such profile or binding"))
_DISABLED = error_responses((409, "The profile is disabled"))

# Process names may contain "/", hence the path convertor.


@router.get("/bindings", response_model=list[BindingRead], summary="Every process binding")
def list_bindings(
    postroom: PostroomDep,
    profile: Annotated[str | None, Query(description="Only bindings to this profile")] = None,
) -> list[BindingRead]:
    return postroom.bindings.list(profile=profile)


@router.put(
    "/bindings/{process:path}",
    response_model=BindingRead,
    summary="Send a process's mail through a profile",
    responses=_NOT_FOUND,
)
def bind(process: str, body: ProfileRef, postroom: PostroomDep, admin: AdminDep) -> BindingRead:
    return postroom.bind(process, body.profile, actor=admin.actor)


@router.delete(
    "/bindings/{process:path}",
    status_code=204,
    response_class=Response,
    summary="Remove a binding (the process falls back to the default)",
    responses=_NOT_FOUND,
)
def unbind(process: str, postroom: PostroomDep, admin: AdminDep) -> None:
    postroom.unbind(process, actor=admin.actor)


@router.get("/default-profile", response_model=DefaultProfile, summary="The system default")
def get_default(postroom: PostroomDep) -> DefaultProfile:
    return DefaultProfile(profile=postroom.get_default())


@router.put(
    "/default-profile",
    response_model=DefaultProfile,
    summary="Set the system default",
    responses=_NOT_FOUND | _DISABLED,
)
def set_default(body: ProfileRef, postroom: PostroomDep, admin: AdminDep) -> DefaultProfile:
    postroom.set_default(body.profile, actor=admin.actor)
    return DefaultProfile(profile=postroom.get_default())


@router.get(
    "/processes/{process:path}/explain",
    response_model=Explanation,
    summary="Which profile a process uses, and why",
)
def explain_process(process: str, postroom: PostroomDep) -> Explanation:
    return postroom.explain(process)


@router.get(
    "/explain",
    response_model=Explanation,
    summary="Which profile a process uses, and why (process as a query parameter)",
)
def explain(
    postroom: PostroomDep, process: Annotated[str, Query(min_length=1, max_length=200)]
) -> Explanation:
    return postroom.explain(process)
