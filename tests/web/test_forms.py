"""The profile form's mapping (pure): dotted inputs ↔ the nested profile, errors to inputs."""

from __future__ import annotations

from datetime import UTC, datetime

from postroom.errors import FieldError
from postroom.profiles.schemas import ProfileRead, SenderSettings, parse_spec
from postroom.web.forms import (
    FIELDS,
    LABELS,
    blank_values,
    errors_by_field,
    input_id,
    profile_data,
    values_from_form,
    values_from_profile,
)
from postroom.web.presets import (
    PRESETS,
    apply_preset,
    preset_note,
    preset_values,
    presets_json,
)


def _form(**overrides: str) -> dict[str, str]:
    values = blank_values() | {
        "name": "QA alerts",
        "smtp.host": "smtp.example.com",
        "smtp.username": "qa@example.com",
        "smtp.password": "pw",
        "sender.from_address": "qa@example.com",
    }
    return values | overrides


def test_blank_timeouts_mean_no_timeout_and_blank_secrets_are_left_out() -> None:
    data = profile_data(
        _form(**{"smtp.connect_timeout_s": "", "smtp.send_timeout_s": " ", "smtp.password": ""})
    )
    assert data["smtp"]["connect_timeout_s"] is None
    assert data["smtp"]["send_timeout_s"] is None
    assert "password" not in data["smtp"]
    assert data["imap"] is None
    spec = parse_spec(profile_data(_form()))
    assert spec.smtp.port == 587 and spec.smtp.password == "pw"


def test_imap_is_included_only_when_switched_on_or_asked_for() -> None:
    values = _form(
        **{
            "imap.host": "imap.example.com",
            "imap.username": "qa",
            "imap.processed": "move",
            "imap.move_to": "Done",
        }
    )
    assert profile_data(values)["imap"] is None
    data = profile_data(values, imap=True)
    assert data["imap"]["host"] == "imap.example.com"
    assert data["imap"]["processed"] == "move:Done"
    assert profile_data(values | {"imap.enabled": "1"})["imap"]["port"] == "993"


def test_unchecked_boxes_are_false() -> None:
    values = values_from_form({"name": "x", "smtp.host": "h"})
    assert values["enabled"] == "" and values["smtp.verify_certificate"] == ""
    data = profile_data(values)
    assert data["enabled"] is False and data["smtp"]["verify_certificate"] is False


def test_a_saved_profile_round_trips_through_the_form() -> None:
    data = profile_data(
        _form(
            **{
                "imap.enabled": "1",
                "imap.host": "imap.example.com",
                "imap.username": "qa",
                "imap.password": "pw2",
                "imap.processed": "move",
                "imap.move_to": "Archive",
            }
        )
    )
    spec = parse_spec(data)
    stored = spec.model_dump(mode="json")
    now = datetime.now(UTC)
    read = ProfileRead(
        id=1,
        name=spec.name,
        description="",
        enabled=True,
        smtp={k: v for k, v in stored["smtp"].items() if k != "password"} | {"password_set": True},
        sender=SenderSettings.model_validate(stored["sender"]),
        imap={k: v for k, v in stored["imap"].items() if k != "password"} | {"password_set": True},
        email_actions_base_url=None,
        rate_limit_per_minute=None,
        max_connections=4,
        version=1,
        created_at=now,
        updated_at=now,
    )
    values = values_from_profile(read)
    assert values["smtp.connect_timeout_s"] == "30"
    assert values["imap.enabled"] == "1"
    assert (values["imap.processed"], values["imap.move_to"]) == ("move", "Archive")
    assert "smtp.password" not in values and "password_set" not in str(values)
    again = parse_spec(profile_data(values | {"smtp.password": "pw", "imap.password": "pw2"}))
    assert again == spec


def test_errors_land_on_their_inputs() -> None:
    values = _form(**{"smtp.port": "", "imap.processed": "move"})
    errors = errors_by_field(
        [
            FieldError("smtp.port", "must be a whole number"),
            FieldError("imap.processed", "must be 'mark_seen', 'move:<folder>' or 'delete'"),
            FieldError("send_to", "is not an address"),
            FieldError("smtp", "something about the section"),
        ],
        values,
    )
    assert errors["smtp.port"] == ["is required"]
    assert errors["imap.move_to"] == ["name the folder to move processed mail to"]
    assert errors["test_send_to"] == ["is not an address"]
    assert errors[""] == ["smtp: something about the section"]


def test_every_field_has_a_label_and_an_id() -> None:
    assert set(FIELDS) <= set(LABELS)
    assert input_id("sender.from_address") == "f-sender-from-address"


def test_presets_fill_host_port_and_security_and_say_how_to_sign_in() -> None:
    keys = {p.key for p in PRESETS}
    assert keys >= {
        "gmail",
        "microsoft365",
        "outlook",
        "yahoo",
        "icloud",
        "fastmail",
        "zoho",
        "ses",
        "sendgrid",
        "mailgun",
        "postmark",
    }
    for preset in PRESETS:
        # applied over a filled-in form (a typed username stays); OAuth2 presets leave the
        # OAuth2 configuration to choose, so they are checked as values only
        values = apply_preset(_form(), preset.key)
        assert values["smtp.host"] == preset.smtp_host
        if values["smtp.auth"] == "basic":
            spec = parse_spec(profile_data(values))
            assert spec.smtp.host == preset.smtp_host
        assert preset.signin
    assert "app password" in (preset_note("gmail") or "")
    assert "OAuth2" in (preset_note("microsoft365") or "")
    assert preset_values("nope") == {} and preset_note("nope") is None
    assert len(presets_json()) == len(PRESETS)


def test_presets_set_the_sign_in_their_note_asks_for() -> None:
    for key in ("microsoft365", "outlook"):
        assert "Use OAuth2" in (preset_note(key) or "")
        values = preset_values(key)
        assert values["smtp.auth"] == "oauth2" and values["imap.auth"] == "oauth2", key
    assert preset_values("gmail")["smtp.auth"] == "basic"  # app password or OAuth2: basic works


def test_switching_presets_overwrites_everything_the_previous_one_filled() -> None:
    # the form's script (and the no-JS Apply preset) set exactly these fields: every preset
    # must fill the same ones, or a previous preset's IMAP host or username stays behind
    filled = {key: set(preset_values(p.key)) for p in PRESETS for key in [p.key]}
    assert len({frozenset(f) for f in filled.values()}) == 1, filled
    gmail, ses = preset_values("gmail"), preset_values("ses")
    assert gmail["imap.host"] == "imap.gmail.com"
    assert ses["imap.host"] == ""  # SES has no IMAP: switching to it clears Gmail's
    assert preset_values("sendgrid")["smtp.username"] == "apikey" and gmail["smtp.username"] == ""
    # applied to a form: a preset's "apikey" goes, a typed username stays
    after_sendgrid = apply_preset({"smtp.username": "ops@example.com"}, "sendgrid")
    assert after_sendgrid["smtp.username"] == "apikey"
    assert apply_preset(after_sendgrid, "ses")["smtp.username"] == ""
    assert apply_preset({"smtp.username": "ops@example.com"}, "ses")["smtp.username"] == (
        "ops@example.com"
    )
    assert apply_preset(apply_preset({}, "gmail"), "mailgun")["imap.host"] == ""
