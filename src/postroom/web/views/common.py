"""Helpers the page modules share: finding things by id, and route tables."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from postroom.app import Postroom
from postroom.oauth2.schemas import OAuth2ConfigRead
from postroom.profiles.schemas import ProfileRead
from postroom.web.core import PageNotFound

__all__ = [
    "Route",
    "bound_counts",
    "client_address",
    "find_oauth2",
    "find_profile",
    "safe_next",
]


@dataclass(frozen=True)
class Route:
    path: str
    endpoint: Callable[..., Any]
    methods: list[str] = field(default_factory=lambda: ["GET"])


def find_profile(pr: Postroom, profile_id: str) -> ProfileRead:
    """The profile with this id (ids stay put when a profile is renamed)."""
    for profile in pr.profiles.list():
        if str(profile.id) == profile_id:
            return profile
    raise PageNotFound("There is no such email profile; it may have been deleted.")


def find_oauth2(pr: Postroom, config_id: str) -> OAuth2ConfigRead:
    for config in pr.oauth2.list():
        if str(config.id) == config_id:
            return config
    raise PageNotFound("There is no such OAuth2 configuration; it may have been deleted.")


def bound_counts(pr: Postroom) -> Counter[str]:
    """How many processes each profile (by name) is bound to."""
    return Counter(b.profile for b in pr.bindings.list())


def safe_next(target: str | None, default: str = "/settings/email") -> str:
    """A redirect target from a form: a local path only, never another site."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    if any(c in target for c in "\r\n\\"):
        return default
    return target


def client_address(request: Request) -> str:
    """The address the request came from (what throttles count by)."""
    return request.client.host if request.client else "unknown"
