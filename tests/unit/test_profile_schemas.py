"""The profile model's validation and warnings (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from postroom.errors import ValidationError
from postroom.profiles.schemas import ProfileSpec, parse_spec, warnings_for


def spec(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "QA alerts",
        "smtp": {"host": "smtp.example.com"},
        "sender": {"from_address": "qa@example.com"},
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def fields(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as exc:
        parse_spec(data)
    return [e.field for e in exc.value.errors]


def test_defaults() -> None:
    p = parse_spec(spec())
    assert (p.smtp.port, p.smtp.security, p.smtp.auth) == (587, "starttls", "none")
    assert p.smtp.verify_certificate is True
    assert p.smtp.connect_timeout_s == 30 and p.smtp.send_timeout_s == 60
    assert p.imap is None and p.max_connections == 4


def test_timeouts_null_means_none_but_zero_is_refused() -> None:
    p = parse_spec(spec(smtp={"connect_timeout_s": None, "send_timeout_s": None}))
    assert p.smtp.connect_timeout_s is None and p.smtp.send_timeout_s is None
    assert fields(spec(smtp={"send_timeout_s": 0})) == ["smtp.send_timeout_s"]
    assert fields(spec(smtp={"send_timeout_s": -1})) == ["smtp.send_timeout_s"]


def test_basic_needs_username_and_oauth2_needs_config() -> None:
    assert fields(spec(smtp={"auth": "basic"})) == ["smtp.username"]
    assert fields(spec(smtp={"auth": "oauth2"})) == ["smtp.oauth2_config"]


def test_every_problem_is_named_at_once() -> None:
    # field errors elsewhere used to hide the cross-field rules until they were fixed
    data = spec(
        name="",
        smtp={"auth": "basic", "port": 70000},
        sender={"from_address": "not an address"},
        imap={"host": "imap.example.com", "auth": "oauth2", "port": "x"},
    )
    assert set(fields(data)) >= {
        "name",
        "smtp.port",
        "smtp.username",
        "sender.from_address",
        "imap.port",
        "imap.oauth2_config",
    }
    # and the rule is not reported twice when it is the only problem
    assert fields(spec(smtp={"auth": "basic"})) == ["smtp.username"]


def test_messages_are_for_people() -> None:
    with pytest.raises(ValidationError) as exc:
        parse_spec(spec(smtp={"port": 70000}))
    assert exc.value.errors[0].message == "must be at most 65535"
    with pytest.raises(ValidationError) as exc:
        parse_spec(spec(smtp={"port": "abc"}))
    assert exc.value.errors[0].message == "must be a whole number"


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://automation.example.com", True),
        ("https://automation.example.com:8443/orchestrator/", True),
        ("http://10.0.0.5:8080", True),
        ("javascript:alert(1)", False),
        ("https://", False),
        ("https://user@host.example", False),
        ("https://host.example/path?x=1", False),
        ("https://host.example/#x", False),
        ("https://host.example:0x50", False),
    ],
)
def test_email_actions_base_url(url: str, ok: bool) -> None:
    if ok:
        assert parse_spec(spec(email_actions_base_url=url)).email_actions_base_url == url.rstrip(
            "/"
        )
    else:
        assert fields(spec(email_actions_base_url=url)) == ["email_actions_base_url"]


def test_ca_bundle_must_be_pem() -> None:
    assert fields(spec(smtp={"ca_bundle": "not a cert"})) == ["smtp.ca_bundle"]


def test_auth_domain_is_the_domain_alone() -> None:
    assert fields(spec(smtp={"auth_domain": "CORP\\user"})) == ["smtp.auth_domain"]
    assert parse_spec(spec(smtp={"auth_domain": "CORP"})).smtp.auth_domain == "CORP"


def test_imap_processed_values() -> None:
    base = {"host": "imap.example.com", "auth": "none"}
    for ok in ("mark_seen", "delete", "move:Processed"):
        assert parse_spec(spec(imap={**base, "processed": ok})).imap is not None
    assert fields(spec(imap={**base, "processed": "move:"})) == ["imap.processed"]


@pytest.mark.parametrize(
    ("smtp", "field"),
    [
        ({"port": 465, "security": "starttls"}, "smtp.security"),
        ({"port": 587, "security": "tls"}, "smtp.security"),
        ({"port": 25, "security": "tls"}, "smtp.security"),
        ({"security": "none", "auth": "basic", "username": "u"}, "smtp.security"),
        ({"verify_certificate": False}, "smtp.verify_certificate"),
    ],
)
def test_warnings(smtp: dict[str, Any], field: str) -> None:
    assert field in [w.field for w in warnings_for(parse_spec(spec(smtp=smtp)))]


def test_no_warning_for_sane_settings() -> None:
    assert warnings_for(parse_spec(spec(smtp={"port": 465, "security": "tls"}))) == []
    assert warnings_for(ProfileSpec.model_validate(spec())) == []


def test_from_address_is_required() -> None:
    assert fields(spec(sender={"from_address": ""})) == ["sender.from_address"]
    assert fields(spec(sender={"from_address": "   "})) == ["sender.from_address"]


def test_messages_do_not_leak_internals() -> None:
    from postroom.oauth2.schemas import OAuth2ConfigSpec
    from postroom.validation import validate_model

    def messages(model: Any, data: dict[str, Any]) -> dict[str, str]:
        with pytest.raises(ValidationError) as exc:
            validate_model(model, data)
        return {e.field: e.message for e in exc.value.errors}

    # an empty form field arrives as null: it is missing, not "not text"
    got = messages(OAuth2ConfigSpec, {"name": None})
    assert got["name"] == "is required"
    got = messages(ProfileSpec, spec(smtp={"security": "ssl", "connect_timeout_s": 0}))
    assert got["smtp.security"] == "must be one of: starttls, tls, none"
    assert got["smtp.connect_timeout_s"] == ("must be greater than 0 (leave it empty for no limit)")


def _mailbox_spec(username: str | None, from_address: str) -> ProfileSpec:
    smtp: dict[str, object] = {"host": "smtp.example.net", "port": 587, "security": "starttls"}
    if username:
        smtp |= {"auth": "basic", "username": username, "password": "x"}
    else:
        smtp |= {"auth": "none"}
    return parse_spec({"name": "p", "smtp": smtp, "sender": {"from_address": from_address}})


def test_personal_consumer_accounts_and_mismatched_from_are_warned() -> None:
    # issue 22 item 5: a dedicated service mailbox, not a person's
    w = warnings_for(_mailbox_spec("jane.doe@gmail.com", "jane.doe@gmail.com"))
    assert [x.field for x in w] == ["smtp.username"]
    assert "personal account at gmail.com" in w[0].message and "dedicated" in w[0].message
    w = warnings_for(_mailbox_spec(None, "ops@Outlook.com"))
    assert [x.field for x in w] == ["sender.from_address"]
    w = warnings_for(_mailbox_spec("jane@yahoo.com", "alerts@company.example"))
    assert [x.field for x in w] == ["smtp.username", "sender.from_address"]
    assert "differs from the username" in w[1].message
    assert warnings_for(_mailbox_spec("alerts@company.example", "alerts@company.example")) == []
    # a company server may allow any From of its domain: no mismatch warning
    assert warnings_for(_mailbox_spec("relay@company.example", "alerts@company.example")) == []
