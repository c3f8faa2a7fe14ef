"""The log pages' pure helpers: filter values, page sizes, paging links, short errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from postroom.web.action_log import ActionState, state_of
from postroom.web.listing import DEFAULT_LIMIT, parse_limit, parse_when, query_string, shorten
from postroom.web.render import relative


def test_a_date_is_a_whole_utc_day_and_until_includes_it() -> None:
    assert parse_when("2025-03-01") == datetime(2025, 3, 1, tzinfo=UTC)
    assert parse_when("2025-03-01", end=True) == datetime(2025, 3, 2, tzinfo=UTC)
    assert parse_when("2025-03-01T08:00+02:00") == datetime(2025, 3, 1, 6, tzinfo=UTC)
    assert parse_when("2025-03-01T08:00Z", end=True) == datetime(2025, 3, 1, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("yesterday", "enter a date as YYYY-MM-DD"),
        ("2025-02-30", "enter a date as YYYY-MM-DD"),
        ("2025-03-01T08:00", "a time needs its zone"),
    ],
)
def test_bad_dates_say_what_to_type(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_when(raw)


def test_page_sizes_outside_the_offer_fall_back_to_the_default() -> None:
    assert parse_limit("25") == 25
    assert parse_limit("") == parse_limit("7") == parse_limit("10000") == DEFAULT_LIMIT


def test_paging_links_keep_the_filters_and_drop_empty_ones() -> None:
    filters = {"status": "failed", "profile": "", "process": "a b&c"}
    assert query_string(filters) == "?status=failed&process=a+b%26c"
    assert query_string(filters, before=12) == "?status=failed&process=a+b%26c&before=12"
    assert query_string({"status": ""}) == ""


def test_errors_are_shortened_at_a_word() -> None:
    error = "recipients refused: 550 5.1.1 no such user here — gave up: refused permanently"
    assert shorten(error, 40) == "recipients refused: 550 5.1.1 no such…"
    assert shorten("  two\n lines ") == "two lines"
    assert shorten(None) == ""


def test_a_pending_request_past_its_expiry_is_expired() -> None:
    now = datetime(2025, 3, 1, tzinfo=UTC)
    assert state_of("pending", now + timedelta(seconds=1), now) is ActionState.PENDING
    assert state_of("pending", now, now) is ActionState.EXPIRED
    assert state_of("decided", now - timedelta(days=1), now) is ActionState.DECIDED


def test_times_to_come_are_rounded_to_the_nearest_unit() -> None:
    now = datetime(2025, 3, 1, tzinfo=UTC)
    assert relative(now + timedelta(minutes=119), now) == "in 2 h"
    assert relative(now + timedelta(seconds=90), now) == "in 2 min"
    assert relative(now + timedelta(days=7), now) == "in 7 days"
    assert relative(now - timedelta(minutes=5), now) == "5 min ago"
    assert relative(None) == "—"
    assert relative(now + timedelta(seconds=20), now) == "in less than a minute"
