"""Digest schedules: a cron expression in an IANA time zone, and the periods it cuts (pure).

A schedule fires at times F₀ < F₁ < …; the period that ends at Fₙ is ``[Fₙ₋₁, Fₙ)``
and its summary is due from Fₙ on. Times are computed in the subscription's zone, so
"0 8 * * 1-5" means 08:00 local time on weekdays across DST changes, and returned in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

__all__ = ["check_schedule", "check_timezone", "next_fire", "period_ending"]


def check_timezone(zone: str) -> str | None:
    """A reason when ``zone`` is not an IANA time zone name, else None."""
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return f"'{zone}' is not an IANA time zone such as UTC or Europe/Berlin"
    return None


def check_schedule(expression: str) -> str | None:
    """A reason when ``expression`` is not a usable five-field cron expression, else None."""
    if len(expression.split()) != 5:
        return "must be a cron expression of five fields: minute hour day month weekday"
    if not croniter.is_valid(expression):
        return f"'{expression}' is not a valid cron expression (e.g. '0 8 * * 1-5')"
    try:  # valid syntax can still never fire, e.g. '0 0 30 2 *'
        croniter(expression, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterError:
        return f"'{expression}' never fires"
    return None


def period_ending(expression: str, zone: str, now: datetime) -> tuple[datetime, datetime]:
    """The last complete period at ``now``: ``(start, end)`` in UTC with ``end <= now``.

    Raises ValueError when the expression cannot be evaluated.
    """
    local = now.astimezone(ZoneInfo(zone)).replace(microsecond=0)
    try:
        # croniter's get_prev is strictly before its start; +1 s makes a fire at exactly
        # ``now`` (to the second) count as passed
        it = croniter(expression, local + timedelta(seconds=1))
        end = it.get_prev(datetime)
        start = it.get_prev(datetime)
    except CroniterError as exc:
        raise ValueError(str(exc)) from None
    return start.astimezone(UTC), end.astimezone(UTC)


def next_fire(expression: str, zone: str, now: datetime) -> datetime | None:
    """When the current period ends (the next summary is due), in UTC; None if never."""
    try:
        nxt = croniter(expression, now.astimezone(ZoneInfo(zone))).get_next(datetime)
    except (CroniterError, ZoneInfoNotFoundError, ValueError):
        return None
    return nxt.astimezone(UTC)
