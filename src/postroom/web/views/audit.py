"""The audit log: who changed what, when (secrets only ever appear as "changed")."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request, Response

from postroom.web.core import UserDep, WebDep
from postroom.web.views.common import Route

__all__ = ["ROUTES", "describe"]

TARGET_TYPES = (
    "profile",
    "process",
    "oauth2_config",
    "template",
    "subscription",
    "admin",
    "api_key",
    "keys",
)
#: target types in words ("oauth2_config"|capitalize read "Oauth2 config")
TARGET_LABELS = {
    "profile": "Email profile",
    "process": "Process",
    "oauth2_config": "OAuth2 configuration",
    "template": "Template",
    "subscription": "Subscription",
    "admin": "Admin account",
    "api_key": "API key",
    "keys": "Secret keys",
}


def _short(value: Any) -> str:
    if isinstance(value, bool):  # Python's True/False are not words for people
        return "yes" if value else "no"
    text = "—" if value is None or value == "" else str(value)
    return text if len(text) <= 80 else text[:77] + "…"


def describe(details: dict[str, Any]) -> list[str]:
    """One line per detail: 'field: old → new' for a change, 'field = value' when created."""
    lines = []
    changes = details.get("changes")
    if isinstance(changes, dict):
        for field, change in changes.items():
            if isinstance(change, list) and len(change) == 2:
                old, new = change
                if old in (None, "") and new in (None, ""):
                    continue
                if old is None:
                    lines.append(f"{field} = {_short(new)}")
                else:
                    lines.append(f"{field}: {_short(old)} → {_short(new)}")
            else:
                lines.append(f"{field}: {_short(change)}")
    for key, value in details.items():
        if key == "ok" and isinstance(value, bool):
            lines.append("result: " + ("passed" if value else "failed"))
        elif key != "changes" and value not in (None, "", [], {}):
            lines.append(f"{key.replace('_', ' ')}: {_short(value)}")
    return lines


def audit_page(
    request: Request,
    web: WebDep,
    user: UserDep,
    type_: Annotated[str, Query(alias="type")] = "",
) -> Response:
    """The newest 200 entries, optionally of one kind of target."""
    target_type = type_ if type_ in TARGET_TYPES else ""
    entries = web.pr.audit.list(limit=200, target_type=target_type or None)
    return web.page(
        request,
        "audit.html",
        title="Audit log",
        entries=[(e, describe(e.details)) for e in entries],
        target_types=TARGET_TYPES,
        target_labels=TARGET_LABELS,
        target_type=target_type,
    )


ROUTES = [Route("/settings/email/audit", audit_page)]
