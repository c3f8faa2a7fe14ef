"""``/apikeys``: API keys, for administrators (the key itself is shown once, at creation)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from postroom.accounts import ApiKeyCreated, ApiKeyRead
from postroom.api.deps import AdminDep, PostroomDep, require_admin
from postroom.api.errors import ERROR_RESPONSES, error_responses

__all__ = ["router"]

router = APIRouter(
    prefix="/apikeys",
    tags=["api keys"],
    dependencies=[Depends(require_admin)],
    responses=ERROR_RESPONSES,
)


class ApiKeyCreate(BaseModel):
    """A new API key: a sender key may be limited to some processes and profiles."""

    model_config = ConfigDict(extra="forbid")

    name: str
    role: str = Field(description="`admin` or `sender`")
    processes: list[str] | None = Field(
        default=None, description="A sender key may send only for these processes."
    )
    profiles: list[str] | None = Field(
        default=None, description="A sender key may send only through these profiles."
    )


@router.get("", response_model=list[ApiKeyRead], summary="Every API key (never the key itself)")
def list_keys(postroom: PostroomDep) -> list[ApiKeyRead]:
    return postroom.accounts.list_api_keys()


@router.post(
    "", status_code=201, response_model=ApiKeyCreated,
    summary="Create an API key; `key` is in this answer only",
)  # fmt: skip
def create_key(postroom: PostroomDep, admin: AdminDep, body: ApiKeyCreate) -> ApiKeyCreated:
    return postroom.accounts.create_api_key(
        body.name, role=body.role, processes=body.processes, profiles=body.profiles,
        actor=admin.actor,
    )  # fmt: skip


@router.delete(
    "/{name}",
    status_code=204,
    response_class=Response,
    summary="Revoke an API key at once",
    responses=error_responses((404, "No active API key of that name")),
)
def revoke_key(name: str, postroom: PostroomDep, admin: AdminDep) -> None:
    postroom.accounts.revoke_api_key(name, actor=admin.actor)
