"""The pure parts of notifications: schedules, matching, unsubscribe tokens, shapes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from postroom.errors import ValidationError
from postroom.notify.matching import default_template, filter_matches, matches
from postroom.notify.schedule import check_schedule, check_timezone, next_fire, period_ending
from postroom.notify.schemas import SubscriptionSpec, TemplateSpec, check_event_name
from postroom.notify.tokens import parse_token, sign, verify
from postroom.validation import validate_model

KEY = b"k" * 32


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# -- schedules ----------------------------------------------------------------------------------


def test_period_ending_is_the_last_complete_period() -> None:
    start, end = period_ending("0 8 * * *", "UTC", at("2026-11-24T09:30:00+00:00"))
    assert (start, end) == (at("2026-11-23T08:00:00+00:00"), at("2026-11-24T08:00:00+00:00"))


def test_a_fire_at_exactly_now_has_passed() -> None:
    _, end = period_ending("0 8 * * *", "UTC", at("2026-11-24T08:00:00+00:00"))
    assert end == at("2026-11-24T08:00:00+00:00")
    _, end = period_ending("0 8 * * *", "UTC", at("2026-11-24T07:59:59.900000+00:00"))
    assert end == at("2026-11-23T08:00:00+00:00")


def test_schedule_follows_local_time_across_dst() -> None:
    # 08:00 in Berlin is 07:00 UTC in winter and 06:00 UTC in summer
    _, winter = period_ending("0 8 * * *", "Europe/Berlin", at("2026-01-10T12:00:00+00:00"))
    _, summer = period_ending("0 8 * * *", "Europe/Berlin", at("2026-07-10T12:00:00+00:00"))
    assert winter.hour == 7 and summer.hour == 6
    start, end = period_ending("0 8 * * *", "Europe/Berlin", at("2026-03-29T12:00:00+00:00"))
    assert (end - start).total_seconds() == 23 * 3600  # the night the clocks go forward


def test_next_fire() -> None:
    assert next_fire("0 8 * * 1-5", "UTC", at("2026-11-27T09:00:00+00:00")) == at(
        "2026-11-30T08:00:00+00:00"
    )  # Friday → Monday


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("0 8 * *", "five fields"),
        ("*/5 * * * * 10", "five fields"),
        ("61 8 * * *", "not a valid cron"),
        ("0 0 30 2 *", "never fires"),
    ],
)
def test_bad_schedules_are_explained(expr: str, reason: str) -> None:
    assert reason in (check_schedule(expr) or "")


def test_timezones() -> None:
    assert check_timezone("Europe/Berlin") is None
    assert "IANA" in (check_timezone("Mars/Olympus") or "")
    assert "IANA" in (check_timezone("../etc/passwd") or "")


# -- matching -----------------------------------------------------------------------------------


def test_event_and_process_globs() -> None:
    def m(event_pattern: str, process_pattern: str | None, event: str, process: str | None) -> bool:
        return matches(event_pattern=event_pattern, process_pattern=process_pattern, rules=None,
                       event=event, process=process, data={})  # fmt: skip

    assert m("run.*", None, "run.failed", "nightly")
    assert m("run.*", None, "run.failed", None)
    assert not m("run.*", None, "alert.disk", "nightly")
    assert m("run.failed", "Nightly-*", "run.failed", "nightly-regression")
    assert not m("run.failed", "nightly", "run.failed", None)
    assert not m("run.failed", "nightly", "run.failed", "nightly-2")


def test_filters_compare_json_values_alike() -> None:
    data = {"status": "failed", "counts": {"failed": 3}, "tags": ["ui", "db"], "flaky": True}
    assert filter_matches({"status": ["failed", "error"]}, data)
    assert not filter_matches({"status": ["succeeded"]}, data)
    assert filter_matches({"counts.failed": ["3"]}, data)
    assert filter_matches({"counts.failed": [3.0]}, data)
    assert filter_matches({"tags": ["db"]}, data)
    assert filter_matches({"flaky": ["true"]}, data)
    assert not filter_matches({"missing": ["x"]}, data)
    assert filter_matches(None, data)


def test_default_templates() -> None:
    assert default_template("run.*", digest=False) == "run_finished"
    assert default_template("alert", digest=False) == "alert"
    assert default_template("deploy.done", digest=False) is None
    assert default_template("deploy.done", digest=True) == "scheduled_summary"


# -- unsubscribe tokens -------------------------------------------------------------------------


def test_token_roundtrip_and_tampering() -> None:
    token = sign(KEY, 42, "nonce-a")
    parsed = parse_token(token)
    assert parsed is not None and parsed[0] == 42
    assert verify(KEY, 42, "nonce-a", parsed[1])
    assert not verify(KEY, 42, "nonce-b", parsed[1])  # a new subscription with the same id
    assert not verify(b"other" * 8, 42, "nonce-a", parsed[1])
    head, mac = token.split(".")
    flipped = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    tampered = parse_token(f"{head}.{flipped}")
    assert tampered is not None and not verify(KEY, 42, "nonce-a", tampered[1])
    other = parse_token(f"43.{mac}")
    assert other is not None and not verify(KEY, 43, "nonce-a", other[1])


@pytest.mark.parametrize(
    "bad", ["", "42", ".abc", "x.abc", "42.", "42.!!!", "-1.abc", "1" * 30 + ".a"]
)
def test_malformed_tokens(bad: str) -> None:
    assert parse_token(bad) is None


# -- shapes -------------------------------------------------------------------------------------


def test_event_names() -> None:
    assert check_event_name("run.failed") is None
    for bad in ("", "run..failed", "run failed", "run.*", "a" * 201):
        assert check_event_name(bad) is not None


def test_subscription_spec_validation_names_fields() -> None:
    with pytest.raises(ValidationError) as exc:
        validate_model(
            SubscriptionSpec,
            {"event": "run failed", "address": "not an address", "schedule": "0 8 * *",
             "timezone": "Nowhere/City"},
        )  # fmt: skip
    fields = {e.field for e in exc.value.errors}
    assert fields == {"event", "address", "schedule", "timezone"}


def test_template_spec_needs_a_body_and_a_plain_name() -> None:
    with pytest.raises(ValidationError) as exc:
        validate_model(TemplateSpec, {"name": "Bad Name", "subject": "x"})
    assert {e.field for e in exc.value.errors} == {"name"}
    with pytest.raises(ValidationError) as exc:
        validate_model(TemplateSpec, {"name": "ok", "subject": "x"})
    assert exc.value.errors[0].field == "html"
