"""Time bounds people type (pure): the web's filters and the CLI's --since/--until agree."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

__all__ = ["parse_when"]


def parse_when(raw: str, *, end: bool = False) -> datetime:
    """A UTC bound from a date (``2025-03-01``) or an ISO time with zone.

    A date means the start of that day, or with ``end`` the start of the next one, so
    "until 1 March" includes 1 March. Raises ValueError with a message for people.
    """
    text = raw.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime.combine(day, time.min, tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("enter a date as YYYY-MM-DD") from None
    if value.tzinfo is None:
        raise ValueError("a time needs its zone, e.g. 2025-03-01T08:00Z")
    return value.astimezone(UTC)
