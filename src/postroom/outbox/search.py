"""Outbox search: one term matched against recipient, subject, Message-ID and id (pure).

Substring matches cannot use an index on either database, so they look only at the newest
:data:`SEARCH_WINDOW` messages that pass the other filters (status, profile, process, time),
read newest first through the primary key or the filters' own indexes. A term that is a
number (``123`` or ``#123``) also finds that message by id, however old. Narrow by time
(``since``/``until``) to search further back.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import ColumnElement, Text, cast, func, or_, select

from postroom.db.tables import OutboxMessage
from postroom.errors import FieldError, ValidationError

__all__ = ["SEARCH_WINDOW", "TERM_MAX", "describe", "matches", "search_term"]

#: how many of the newest filtered messages a substring search reads at most
SEARCH_WINDOW = 50_000
TERM_MAX = 200
_M = OutboxMessage.__table__.c


def search_term(raw: str | None, *, field: str = "q") -> str | None:
    """The term to search for (trimmed), None for an empty one; ValidationError if too long."""
    if raw is None:
        return None
    term = raw.strip()
    if not term:
        return None
    if len(term) > TERM_MAX:
        raise ValidationError(FieldError(field, f"must be at most {TERM_MAX} characters"))
    if any(ord(c) < 32 for c in term):
        raise ValidationError(FieldError(field, "must not contain control characters"))
    return term


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def matches(term: str, conditions: list[ColumnElement[bool]]) -> ColumnElement[bool]:
    """The WHERE condition for ``term`` among the messages passing ``conditions``."""
    lowered = term.lower()
    # recipients are stored as JSON text: non-ASCII is escaped there (\\u00df), so the term is
    # matched in the same spelling
    as_json = json.dumps(lowered)[1:-1]
    window = select(_M.id).where(*conditions).order_by(_M.id.desc()).limit(SEARCH_WINDOW)
    text_match = or_(
        func.lower(_M.subject).like(_like(lowered), escape="\\"),
        func.lower(cast(_M.recipients, Text)).like(_like(as_json), escape="\\"),
        func.lower(_M.message_id).like(_like(lowered), escape="\\"),
    )
    found: ColumnElement[bool] = _M.id.in_(window) & text_match
    number = lowered.removeprefix("#")
    if number.isdigit() and len(number) <= 18:
        found = or_(found, _M.id == int(number))
    return found


def describe(filters: dict[str, Any]) -> dict[str, Any]:
    """The filters as the audit log records them (times as ISO text, empty ones left out)."""
    out: dict[str, Any] = {}
    for key, value in filters.items():
        if value is None or value == "":
            continue
        out[key] = value.isoformat() if hasattr(value, "isoformat") else value
    return out
