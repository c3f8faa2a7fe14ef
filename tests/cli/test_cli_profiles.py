"""The `postroom` command: profiles, bindings, OAuth2 records, keys, accounts; exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trustme
from typer.testing import CliRunner

from postroom import Postroom
from postroom.cli import cli
from postroom.settings import Settings
from tests.integration.smtp_fakes import fake_smtp

CANARY = "CANARY-cli-5d1e"


@pytest.fixture
def run(tmp_path: Path, backend: str, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    env = {"POSTROOM_DATA_DIR": str(tmp_path / "data")}
    if backend == "postgresql":
        env["POSTROOM_DATABASE_URL"] = request.getfixturevalue("pg_schema_url")
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
        result = runner.invoke(cli, list(args), input=input, env=env, catch_exceptions=False)
        assert "Traceback" not in result.output
        return result

    yield invoke
    if backend == "postgresql":
        app = Postroom.open(
            settings=Settings(data_dir=tmp_path / "data", database_url=env["POSTROOM_DATABASE_URL"])
        )
        from tests.conftest import _truncate

        _truncate(app)
        app.close()


ADD = [
    "profile", "add", "QA alerts",
    "--smtp-host", "smtp.example.com", "--smtp-port", "587", "--security", "starttls",
    "--auth", "basic", "--username", "qa@example.com", "--password-stdin",
    "--from-address", "qa@example.com", "--from-name", "QA alerts",
]  # fmt: skip


def test_add_list_show_json(run) -> None:  # type: ignore[no-untyped-def]
    r = run(*ADD, input=CANARY + "\n")
    assert r.exit_code == 0, r.output
    assert "Created profile 'QA alerts'" in r.output
    assert "It is now the system default" in r.output  # the first profile (issue 22 item 4)
    r = run("profile", "list", "--json")
    profiles = json.loads(r.output)
    assert [p["name"] for p in profiles] == ["QA alerts"]
    assert profiles[0]["smtp"]["password_set"] is True
    assert profiles[0]["last_used_at"] is None and profiles[0]["usage"]["sent_7d"] == 0
    r = run("profile", "show", "qa alerts")
    assert "smtp.example.com:587" in r.output and "password=set" in r.output
    assert "last used:      never" in r.output and "7 days: 0 sent, 0 failed" in r.output
    for out in (
        run("profile", "list").output,
        run("profile", "show", "QA alerts", "--json").output,
    ):
        assert CANARY not in out


def test_bad_input_exits_2_with_field_and_saves_nothing(run) -> None:  # type: ignore[no-untyped-def]
    r = run(
        "profile", "add", "X", "--smtp-host", "smtp.example.com", "--smtp-port", "70000",
        "--from-address", "alice@example.org)<bob@example.com>",
    )  # fmt: skip
    assert r.exit_code == 2
    assert "smtp.port" in r.output and "sender.from_address" in r.output
    assert json.loads(run("profile", "list", "--json").output) == []


def test_basic_auth_without_password_source_exits_2(run) -> None:  # type: ignore[no-untyped-def]
    r = run(*[a for a in ADD if a != "--password-stdin"])
    assert r.exit_code == 2
    assert "smtp.password" in r.output


def test_timeouts_accept_none(run) -> None:  # type: ignore[no-untyped-def]
    run(*ADD, input=CANARY + "\n")
    r = run(
        "profile",
        "edit",
        "QA alerts",
        "--connect-timeout",
        "none",
        "--send-timeout",
        "12.5",
        "--json",
    )
    assert r.exit_code == 0, r.output
    smtp = json.loads(r.output)["smtp"]
    assert smtp["connect_timeout_s"] is None and smtp["send_timeout_s"] == 12.5
    r = run("profile", "edit", "QA alerts", "--send-timeout", "soon")
    assert r.exit_code == 2 and "smtp.send_timeout_s" in r.output


def test_stale_version_exits_1(run) -> None:  # type: ignore[no-untyped-def]
    run(*ADD, input=CANARY + "\n")
    assert (
        run("profile", "edit", "QA alerts", "--description", "a", "--version", "1").exit_code == 0
    )
    r = run("profile", "edit", "QA alerts", "--description", "b", "--version", "1")
    assert r.exit_code == 1 and "changed by someone else" in r.output


def test_password_from_env(run, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    run(*ADD, input=CANARY + "\n")
    monkeypatch.setenv("NEW_PW", "rotated-pw")
    r = run("profile", "edit", "QA alerts", "--password-env", "NEW_PW")
    assert r.exit_code == 0
    r = run("profile", "edit", "QA alerts", "--password-env", "UNSET_VAR_X")
    assert r.exit_code == 2 and "UNSET_VAR_X" in r.output


def test_bind_explain_delete_flow(run) -> None:  # type: ignore[no-untyped-def]
    run(*ADD, input=CANARY + "\n")
    # the first profile became the default, so an unbound process uses it (issue 22 item 4)
    assert json.loads(run("explain", "nightly", "--json").output)["reason"] == "default"
    assert run("bind", "nightly", "QA alerts").exit_code == 0
    r = run("explain", "nightly", "--json")
    assert json.loads(r.output)["reason"] == "binding"
    r = run("profile", "delete", "QA alerts")
    assert r.exit_code == 1 and "nightly" in r.output
    assert run("profile", "set-default", "QA alerts").exit_code == 0
    r = run("profile", "delete", "QA alerts", "--force")
    assert r.exit_code == 0 and "nightly" in r.output
    assert run("bind", "nightly", "ghost").exit_code == 1


def test_apply_yaml_and_json(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "p.yaml"
    f.write_text(
        "name: Scheduled run reports\n"
        "smtp: {host: smtp.example.com, port: 465, security: tls, auth: basic,\n"
        "       username: reports, password: 'env:REPORTS_PW'}\n"
        "sender: {from_address: reports@example.com}\n"
    )
    r = run("profile", "apply", "-f", str(f))
    assert r.exit_code == 0 and "Created" in r.output
    f2 = tmp_path / "p.json"
    f2.write_text(
        json.dumps(
            {
                "name": "Scheduled run reports",
                "description": "weekly",
                "smtp": {
                    "host": "smtp.example.com",
                    "port": 465,
                    "security": "tls",
                    "auth": "basic",
                    "username": "reports",
                },
                "sender": {"from_address": "reports@example.com"},
            }
        )
    )
    r = run("profile", "apply", "-f", str(f2), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["description"] == "weekly"
    assert json.loads(r.output)["smtp"]["password_set"] is True
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    assert run("profile", "apply", "-f", str(bad)).exit_code == 2
    assert run("profile", "apply", "-f", str(tmp_path / "missing.yaml")).exit_code == 2


def test_oauth2_records(run) -> None:  # type: ignore[no-untyped-def]
    r = run("oauth2", "add", "m365", "--provider", "microsoft", "--client-id", "abc",
            "--client-secret-stdin", "--scope", "https://outlook.office.com/SMTP.Send",
            input=CANARY + "\n")  # fmt: skip
    assert r.exit_code == 0, r.output
    r = run("oauth2", "show", "m365", "--json")
    assert json.loads(r.output)["client_secret_set"] is True
    assert CANARY not in r.output
    assert run("oauth2", "add", "g", "--provider", "generic", "--client-id", "x").exit_code == 2
    assert "m365" in run("oauth2", "list").output
    assert run("oauth2", "delete", "m365").exit_code == 0


def test_apikey_and_admin(run) -> None:  # type: ignore[no-untyped-def]
    r = run("apikey", "create", "ci", "--role", "admin", "--json")
    key = json.loads(r.output)["key"]
    assert key.startswith("prk_")
    assert key not in run("apikey", "list").output
    assert run("apikey", "create", "x", "--role", "root").exit_code == 2
    assert run("apikey", "revoke", "ci").exit_code == 0
    r = run("admin", "create", "alice", "--password-stdin", input="a-long-password-1\n")
    assert r.exit_code == 0, r.output
    r = run("admin", "create", "bob", "--password-stdin", input="short\n")
    assert r.exit_code == 2 and "password" in r.output


def test_keys_rotate_and_db_upgrade(run) -> None:  # type: ignore[no-untyped-def]
    run(*ADD, input=CANARY + "\n")
    r = run("keys", "rotate")  # the password and postroom's HMAC key (created at open)
    assert r.exit_code == 0 and "Re-encrypted 2 secret" in r.output
    assert "Database schema is up to date (revisions " in run("db", "upgrade").output


@pytest.mark.parametrize("backend", ["sqlite"])
def test_real_process_wrong_key_is_clean_error(tmp_path: Path, backend: str) -> None:
    """The installed console script: a wrong key gives a sentence, exit 1, no traceback."""
    env = {**os.environ, "POSTROOM_DATA_DIR": str(tmp_path)}
    exe = Path(sys.executable).parent / "postroom"
    add = subprocess.run([exe, *ADD], input=CANARY + "\n", env=env, capture_output=True, text=True)
    assert add.returncode == 0, add.stderr
    env["POSTROOM_SECRET_KEYS"] = "x" * 10
    r = subprocess.run([exe, "profile", "list"], env=env, capture_output=True, text=True)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and "not a Fernet key" in r.stderr
    r = subprocess.run([exe, "profile", "nosuch"], env=env, capture_output=True, text=True)
    assert r.returncode == 2


# -- secrets: the operator may use references (never postroom's own keys); `profile test -f`
# resolves them as `profile apply -f` does; a changed destination needs the secret again


def _profile(path: Path, password: str, **smtp: Any) -> Path:
    path.write_text(
        json.dumps(
            {
                "name": "Reports",
                "smtp": {
                    "host": "smtp.example.com",
                    "auth": "basic",
                    "username": "reports@example.com",
                    "password": password,
                    **smtp,
                },
                "sender": {"from_address": "reports@example.com"},
            }
        )
    )
    return path


def test_operator_references_are_accepted_but_never_postroom_keys(
    run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPORTS_PW", "from-env")
    r = run("profile", "apply", "-f", str(_profile(tmp_path / "ok.json", "env:REPORTS_PW")))
    assert r.exit_code == 0, r.output
    key_file = tmp_path / "data" / "secret.key"
    assert key_file.exists()
    for ref in (f"file:{key_file}", "env:POSTROOM_SECRET_KEYS", "file:/proc/self/environ"):
        r = run("profile", "apply", "-f", str(_profile(tmp_path / "bad.json", ref)))
        assert r.exit_code == 2, r.output
        assert "smtp.password" in r.output and "own secret keys" in r.output
        r = run(*ADD, input=ref + "\n")
        assert r.exit_code == 2 and "smtp.password" in r.output, r.output
        r = run(
            "oauth2", "add", "g", "--provider", "google", "--client-id", "x",
            "--client-secret-stdin", input=ref + "\n",
        )  # fmt: skip
        assert r.exit_code == 2 and "client_secret" in r.output, r.output
    assert "QA alerts" not in run("profile", "list").output


def test_profile_test_file_resolves_references_like_apply(
    run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPORTS_PW", CANARY)
    secret_file = tmp_path / "pw"
    secret_file.write_text(CANARY + "\n")
    with fake_smtp(trustme.CA(), starttls=False, password=CANARY) as srv:
        for ref in ("env:REPORTS_PW", f"file:{secret_file}"):
            f = _profile(tmp_path / "p.json", ref, host="127.0.0.1", port=srv.port, security="none")
            r = run("profile", "test", "-f", str(f), "--json")
            assert r.exit_code == 0, r.output
            assert json.loads(r.output)["ok"] is True
        key_file = tmp_path / "data" / "secret.key"
        f = _profile(
            tmp_path / "p.json",
            f"file:{key_file}",
            host="127.0.0.1",
            port=srv.port,
            security="none",
        )
        r = run("profile", "test", "-f", str(f))
        assert r.exit_code == 2 and "smtp.password" in r.output, r.output
        assert srv.recorded.logins == ["reports@example.com"] * 2
    assert CANARY not in r.output


def test_edit_to_a_new_destination_needs_the_password_again(run: Any) -> None:
    assert run(*ADD, input=CANARY + "\n").exit_code == 0
    r = run("profile", "edit", "QA alerts", "--smtp-host", "mail.example.net")
    assert r.exit_code == 2 and "smtp.password" in r.output and "again" in r.output, r.output
    r = run("profile", "edit", "QA alerts", "--from-name", "QA")  # not the destination
    assert r.exit_code == 0, r.output
    r = run(
        "profile", "edit", "QA alerts", "--smtp-host", "mail.example.net", "--password-stdin",
        input="n3w\n",
    )  # fmt: skip
    assert r.exit_code == 0, r.output


# -- IMAP certificate flags: the CLI reaches every field


def _imap_add(name: str, *extra: str) -> list[str]:
    return [
        "profile", "add", name, "--smtp-host", "smtp.example.com",
        "--from-address", "qa@example.com", "--imap-host", "127.0.0.1",
        "--imap-username", "alice@postroom.test", "--imap-password-stdin", *extra,
    ]  # fmt: skip


@pytest.mark.mailservers
def test_imap_ca_bundle_and_verification_flags(run: Any, tmp_path: Path, mail_servers: Any) -> None:
    user = "alice@postroom.test"
    args = _imap_add(
        "Inbound", "--imap-port", str(mail_servers.ports["imaps"]),
        "--imap-ca-bundle", str(mail_servers.ca_pem),
    )  # fmt: skip
    r = run(*args, input=mail_servers.users[user] + "\n")
    assert r.exit_code == 0, r.output
    shown = json.loads(run("profile", "show", "Inbound", "--json").output)
    assert "BEGIN CERTIFICATE" in shown["imap"]["ca_bundle"]
    assert shown["imap"]["verify_certificate"] is True
    r = run("profile", "test", "Inbound", "--imap", "--json")
    assert r.exit_code == 0 and json.loads(r.output)["ok"] is True, r.output  # trusted by CA
    r = run("profile", "edit", "Inbound", "--no-imap-verify-certificate", "--imap-ca-bundle", "")
    assert r.exit_code == 0, r.output
    shown = json.loads(run("profile", "show", "Inbound", "--json").output)
    assert shown["imap"]["verify_certificate"] is False and shown["imap"]["ca_bundle"] is None
    assert "imap.verify_certificate" in r.output  # the warning says what is lost


def test_imap_ca_bundle_bad_files_exit_2_with_the_field(run: Any, tmp_path: Path) -> None:
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello, I am not a certificate\n")
    binary = tmp_path / "binary.pem"
    binary.write_bytes(b"\x00\xff\xfe binary")
    unreadable = tmp_path / "unreadable.pem"
    unreadable.mkdir()  # a directory cannot be read as a file, even by root
    for path in (tmp_path / "missing.pem", not_pem, binary, unreadable):
        r = run(*_imap_add("Inbound", "--imap-ca-bundle", str(path)), input="pw\n")
        assert r.exit_code == 2, r.output
        assert "imap.ca_bundle" in r.output, r.output
    assert "Inbound" not in run("profile", "list").output
