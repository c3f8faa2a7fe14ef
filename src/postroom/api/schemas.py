"""Request and response models of the REST API that are not the services' own."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from postroom.errors import FieldError, ValidationError
from postroom.outbox.schemas import OutboxStatus
from postroom.outbox.search import TERM_MAX

__all__ = [
    "BulkAction",
    "DefaultProfile",
    "Health",
    "ProfileDeleted",
    "ProfileRef",
    "pop_version",
]


class ProfileRef(BaseModel):
    """Names a profile (binding a process, setting the default)."""

    model_config = ConfigDict(extra="forbid")

    profile: str = Field(min_length=1, max_length=100)


class DefaultProfile(BaseModel):
    """The system default profile; ``null`` when none is set."""

    profile: str | None


class ProfileDeleted(BaseModel):
    name: str
    unbound: list[str] = Field(description="Processes whose binding the delete removed")
    was_default: bool


class Health(BaseModel):
    status: str
    database: str | None = None
    #: ready, but something an operator should know (e.g. no default profile)
    warnings: list[str] | None = None


def pop_version(body: dict[str, Any]) -> int | None:
    """Take the optional ``version`` (optimistic concurrency) out of an update body."""
    version = body.pop("version", None)
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValidationError(
            FieldError("version", "must be a whole number: the version you last read")
        )
    return version


class BulkAction(BaseModel):
    """Which messages to act on: the filters of ``GET /messages``."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["retry", "cancel"]
    status: OutboxStatus | None = None
    profile: str | None = Field(default=None, max_length=100)
    process: str | None = Field(default=None, max_length=200)
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    q: str | None = Field(default=None, max_length=TERM_MAX)
    dry_run: bool = False
