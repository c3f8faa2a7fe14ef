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

from sqlalchemy import ColumnElement, Select, Text, cast, func, or_, select, union_all
from sqlalchemy.orm import aliased

from postroom.db.tables import OutboxMessage
from postroom.errors import FieldError, ValidationError

__all__ = ["SEARCH_WINDOW", "TERM_MAX", "describe", "search_term", "searched"]

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


def searched(term: str, conditions: list[ColumnElement[bool]], limit: int) -> Select[OutboxMessage]:
    """The messages passing ``conditions`` that match ``term``, newest first, at most ``limit``.

    The window is a derived table with its own LIMIT, so neither database can push the text
    match below it (PostgreSQL would otherwise read the whole table for a LIKE it thinks
    rare): the newest messages are read through an index, then filtered. A numeric term's
    message is added from outside the window.
    """
    lowered = term.lower()
    # recipients are stored as JSON text: non-ASCII is escaped there (\u00df), so the term is
    # matched in the same spelling
    as_json = json.dumps(lowered)[1:-1]
    window = (
        select(OutboxMessage).where(*conditions).order_by(_M.id.desc()).limit(SEARCH_WINDOW)
    ).subquery("window")
    w = window.c
    found = select(window).where(
        or_(
            func.lower(w.subject).like(_like(lowered), escape="\\"),
            func.lower(cast(w.recipients, Text)).like(_like(as_json), escape="\\"),
            func.lower(w.message_id).like(_like(lowered), escape="\\"),
        )
    )
    number = lowered.removeprefix("#")
    source = found
    if number.isdigit() and len(number) <= 18:
        by_id = select(OutboxMessage).where(*conditions, _M.id == int(number))
        source = union_all(found.where(w.id != int(number)), by_id)  # type: ignore[assignment]
    rows = source.subquery("found")
    entity = aliased(OutboxMessage, rows)
    return select(entity).order_by(rows.c.id.desc()).limit(limit)


def describe(filters: dict[str, Any]) -> dict[str, Any]:
    """The filters as the audit log records them (times as ISO text, empty ones left out)."""
    out: dict[str, Any] = {}
    for key, value in filters.items():
        if value is None or value == "":
            continue
        out[key] = value.isoformat() if hasattr(value, "isoformat") else value
    return out
