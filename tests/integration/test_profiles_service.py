"""Profiles, bindings, OAuth2 records and keys against SQLite and PostgreSQL."""

from __future__ import annotations

import copy

import pytest
from sqlalchemy import select, text

from postroom import Conflict, NotFound, Postroom, StaleVersion, ValidationError
from postroom.db.tables import Profile
from postroom.errors import SecretReferenceError
from tests.conftest import basic_profile, clear_default

CANARY = "CANARY-7f3a-secret"


def snapshot(app: Postroom) -> list[dict[str, object]]:
    return [p.model_dump(mode="json") for p in app.profiles.list()]


def test_create_get_list_round_trip(app: Postroom) -> None:
    created = app.profiles.create(basic_profile())
    assert created.version == 1
    assert created.smtp["password_set"] is True
    assert "password" not in created.smtp
    assert app.profiles.get("qa ALERTS").id == created.id
    assert [p.name for p in app.profiles.list()] == ["QA alerts"]


def test_password_is_encrypted_and_decrypts(app: Postroom) -> None:
    app.profiles.create(basic_profile())
    with app.engine.connect() as conn:
        stored = conn.execute(text("SELECT smtp_password, spec FROM profiles")).one()
    assert CANARY not in str(stored)
    assert app.profiles.spec_with_secrets("QA alerts").smtp.password == CANARY


def test_names_are_unique_case_insensitively(app: Postroom) -> None:
    app.profiles.create(basic_profile("QA alerts"))
    with pytest.raises(ValidationError) as exc:
        app.profiles.create(basic_profile("qa ALERTS"))
    assert exc.value.field == "name"
    assert len(app.profiles.list()) == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"smtp": {"port": 0}}, "smtp.port"),
        ({"smtp": {"port": 70000}}, "smtp.port"),
        ({"smtp": {"host": "evil\r\nRCPT TO:<x@y>"}}, "smtp.host"),
        ({"smtp": {"username": None}}, "smtp.username"),
        ({"smtp": {"auth": "oauth2", "oauth2_config": "nope"}}, "smtp.oauth2_config"),
        ({"smtp": {"connect_timeout_s": 0}}, "smtp.connect_timeout_s"),
        ({"smtp": {"security": "ssl"}}, "smtp.security"),
        ({"smtp": {"local_hostname": "bad host"}}, "smtp.local_hostname"),
        (
            {"sender": {"from_address": "alice@example.org)<bob@example.com>"}},
            "sender.from_address",
        ),
        ({"sender": {"from_address": "Alice <alice@example.org>"}}, "sender.from_address"),
        ({"sender": {"reply_to": "a@b@c.com"}}, "sender.reply_to"),
        ({"sender": {"from_name": "=?UTF-8?Q?=0A?=Bcc: x@y.z"}}, "sender.from_name"),
        ({"email_actions_base_url": "ftp://x.example"}, "email_actions_base_url"),
        ({"email_actions_base_url": "https://u:p@x.example"}, "email_actions_base_url"),
        ({"email_actions_base_url": "https://x.example/?a=1"}, "email_actions_base_url"),
        ({"email_actions_base_url": "https://x.example/#frag"}, "email_actions_base_url"),
        ({"email_actions_base_url": "https://x.example:99999"}, "email_actions_base_url"),
        ({"rate_limit_per_minute": 0}, "rate_limit_per_minute"),
        ({"max_connections": 0}, "max_connections"),
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"bogus": 1}, "bogus"),
        ({"imap": {"host": "imap.example.com", "auth": "basic", "processed": "archive"}}, "imap"),
        (
            {"imap": {"host": "imap.example.com", "auth": "none", "folder": "IN\nBOX"}},
            "imap.folder",
        ),
    ],
)
def test_bad_input_names_the_field_and_saves_nothing(
    app: Postroom, change: dict[str, object], field: str
) -> None:
    app.profiles.create(basic_profile("existing"))
    before = snapshot(app)
    data = basic_profile("new one")
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}  # type: ignore[dict-item]
        else:
            data[key] = value
    with pytest.raises(ValidationError) as exc:
        app.profiles.create(data)
    assert any(e.field.startswith(field) for e in exc.value.errors), exc.value.errors
    assert snapshot(app) == before
    # the same change as an update is refused just the same, leaving the stored profile alone
    with pytest.raises(ValidationError):
        app.profiles.update("existing", {k: v for k, v in change.items() if k != "name"} or change)
    assert snapshot(app) == before


def test_basic_auth_needs_a_password_on_create(app: Postroom) -> None:
    data = basic_profile()
    data["smtp"].pop("password")  # type: ignore[union-attr]
    with pytest.raises(ValidationError) as exc:
        app.profiles.create(data)
    assert exc.value.field == "smtp.password"
    assert app.profiles.list() == []


def test_update_keeps_secret_when_empty_or_masked(app: Postroom) -> None:
    app.profiles.create(basic_profile())
    for kept in ("", "********", None):
        app.profiles.update("QA alerts", {"smtp": {"password": kept, "send_timeout_s": 45}})
        assert app.profiles.spec_with_secrets("QA alerts").smtp.password == CANARY
    app.profiles.update("QA alerts", {"smtp": {"password": "new-secret"}})
    assert app.profiles.spec_with_secrets("QA alerts").smtp.password == "new-secret"
    assert app.profiles.get("QA alerts").secret_rotated_at is not None


def test_switching_auth_off_drops_the_stored_secret(app: Postroom) -> None:
    app.profiles.create(basic_profile())
    p = app.profiles.update("QA alerts", {"smtp": {"auth": "none"}})
    assert p.smtp["password_set"] is False
    with app.engine.connect() as conn:
        assert conn.execute(text("SELECT smtp_password FROM profiles")).scalar() is None


def test_stale_version_is_refused(app: Postroom) -> None:
    p = app.profiles.create(basic_profile())
    app.profiles.update("QA alerts", {"description": "first"}, version=p.version)
    before = snapshot(app)
    with pytest.raises(StaleVersion):
        app.profiles.update("QA alerts", {"description": "second"}, version=p.version)
    assert snapshot(app) == before


def test_suspicious_combinations_are_saved_with_warnings(app: Postroom) -> None:
    p = app.profiles.create(basic_profile(port=465, security="starttls"))
    assert any("465" in w.message for w in p.warnings)
    # a new destination needs the password again (test_changed_destination_*)
    p = app.profiles.update(
        "QA alerts", {"smtp": {"port": 587, "security": "tls", "password": "pw-2"}}
    )
    assert any(w.field == "smtp.security" for w in p.warnings)
    p = app.profiles.update(
        "QA alerts", {"smtp": {"port": 25, "security": "none", "password": "pw-3"}}
    )
    assert any("unencrypted" in w.message for w in p.warnings)


def test_rename_keeps_bindings(app: Postroom) -> None:
    app.profiles.create(basic_profile())
    app.bind("nightly", "QA alerts")
    app.profiles.update("QA alerts", {"name": "QA reports"})
    assert app.explain("nightly").profile == "QA reports"


def test_explain_binding_default_and_none(app: Postroom) -> None:
    app.profiles.create(basic_profile("A"))
    app.profiles.create(basic_profile("B"))
    e = app.explain("nightly")  # the first profile became the default (issue 22 item 4)
    assert (e.profile, e.reason) == ("A", "default")
    clear_default(app)
    assert app.explain("nightly").reason == "none"
    app.set_default("A")
    e = app.explain("nightly")
    assert (e.profile, e.reason) == ("A", "default")
    app.bind("Nightly", "B")
    e = app.explain("nightly")
    assert (e.profile, e.reason) == ("B", "binding")
    app.unbind("NIGHTLY")
    assert app.explain("nightly").profile == "A"


def test_delete_refused_while_bound_or_default_then_forced(app: Postroom) -> None:
    app.profiles.create(basic_profile("A"))
    app.bind("nightly", "A")
    app.bind("billing", "A")
    with pytest.raises(Conflict) as exc:
        app.profiles.delete("A")
    assert "billing, nightly" in str(exc.value)
    assert len(app.profiles.list()) == 1
    assert app.profiles.delete("A", force=True) == ["billing", "nightly"]
    assert app.bindings.list() == []
    assert app.explain("nightly").reason == "none"


def test_disabling_a_used_profile_says_who_is_affected(app: Postroom) -> None:
    app.profiles.create(basic_profile("A"))
    app.set_default("A")
    with pytest.raises(Conflict, match="system default"):
        app.profiles.update("A", {"enabled": False})
    assert app.profiles.get("A").enabled is True
    assert app.profiles.update("A", {"enabled": False}, force=True).enabled is False


def test_oauth2_profile_needs_existing_config(app: Postroom) -> None:
    app.oauth2.create(
        {"name": "m365", "provider": "microsoft", "client_id": "abc", "client_secret": CANARY}
    )
    data = copy.deepcopy(basic_profile())
    data["smtp"] = {"host": "smtp.office365.com", "auth": "oauth2", "oauth2_config": "M365"}  # type: ignore[assignment]
    p = app.profiles.create(data)
    assert p.smtp["oauth2_config"] == "M365"
    config = app.oauth2.get("m365")
    assert config.client_secret_set and config.used_by == ["QA alerts"]
    assert config.tenant == "common"
    with pytest.raises(Conflict):
        app.oauth2.delete("m365")
    assert app.oauth2.client_secret("m365") == CANARY


def test_oauth2_generic_needs_token_url(app: Postroom) -> None:
    with pytest.raises(ValidationError) as exc:
        app.oauth2.create({"name": "g", "provider": "generic", "client_id": "x"})
    assert exc.value.field == "token_url"


def test_audit_log_records_fields_and_hides_secrets(app: Postroom) -> None:
    app.profiles.create(basic_profile(), actor="cli")
    app.profiles.update("QA alerts", {"smtp": {"host": "smtp2.example.com", "password": "n"}})
    entries = app.audit.list()
    # the first profile also became the system default, audited (issue 22 item 4)
    assert [e.action for e in entries][:3] == ["update", "set_default", "create"]
    changes = entries[0].details["changes"]
    assert changes["smtp.host"] == ["smtp.example.com", "smtp2.example.com"]
    assert changes["smtp.password"] == "changed"
    assert entries[2].actor == "cli"
    assert CANARY not in str([e.model_dump() for e in entries])


def test_apply_creates_then_updates(app: Postroom) -> None:
    p, created = app.profiles.apply(basic_profile())
    assert created and p.version == 1
    data = basic_profile()
    data["smtp"].pop("password")  # type: ignore[union-attr]
    data["description"] = "from a file"
    p, created = app.profiles.apply(data)
    assert not created and p.description == "from a file"
    assert app.profiles.spec_with_secrets("QA alerts").smtp.password == CANARY


def test_secret_references_resolve_at_use(app: Postroom, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # references are the operator's (the CLI passes operator=True); see test_secret_refs.py
    app.profiles.create(basic_profile(password="env:POSTROOM_TEST_PW"), operator=True)
    monkeypatch.setenv("POSTROOM_TEST_PW", "from-env")
    assert app.profiles.spec_with_secrets("QA alerts").smtp.password == "from-env"
    secret_file = tmp_path / "pw"
    secret_file.write_text("from-file\n")
    app.profiles.update("QA alerts", {"smtp": {"password": f"file:{secret_file}"}}, operator=True)
    assert app.profiles.spec_with_secrets("QA alerts").smtp.password == "from-file"


def test_not_found_is_clear(app: Postroom) -> None:
    with pytest.raises(NotFound, match="No profile named 'ghost'"):
        app.profiles.get("ghost")


def test_a_stored_reference_to_postroom_keys_is_refused_at_use(app: Postroom) -> None:
    """A reference stored before the rule (or written around it) is never resolved."""
    from tests.integration.smtp_fakes import closed_port

    # loopback: on code without the rule the test would really connect
    app.profiles.create(basic_profile(host="127.0.0.1", port=closed_port(), security="none"))
    for ref in (f"file:{app.settings.key_file}", "env:POSTROOM_SECRET_KEYS"):
        with app.sessions() as s:
            row = s.scalar(select(Profile))
            assert row is not None
            row.smtp_password = app.box.encrypt(ref)
            s.commit()
        with pytest.raises(SecretReferenceError, match="own secret keys"):
            app.profiles.spec_with_secrets("QA alerts")
        d = app.test_profile("QA alerts")
        assert not d.ok and d.error is not None and d.error.code == "secret_unavailable"
        assert [s.name for s in d.steps] == ["secret"]  # nothing was contacted
