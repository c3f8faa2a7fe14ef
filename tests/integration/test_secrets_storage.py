"""Secrets at rest: the canary never reaches disk in clear; keys rotate; tampering is loud."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from postroom import Postroom, SecretKeyError
from postroom.errors import KeysNotRotated
from postroom.settings import Settings
from tests.conftest import basic_profile

CANARY = "CANARY-7f3a-secret"


def test_key_file_is_created_0600(sqlite_app: Postroom) -> None:
    mode = stat.S_IMODE(os.stat(sqlite_app.settings.key_file).st_mode)
    assert mode == 0o600


def test_canary_is_nowhere_in_the_sqlite_files(sqlite_app: Postroom) -> None:
    sqlite_app.profiles.create(basic_profile())
    sqlite_app.profiles.update("QA alerts", {"description": "touch the WAL"})
    data_dir = sqlite_app.settings.data_dir
    files = [p for p in data_dir.iterdir() if p.is_file()]
    assert any(p.name.endswith("-wal") for p in files), files
    for path in files:
        assert CANARY.encode() not in path.read_bytes(), path


def test_canary_is_not_in_pg_dump(app_factory, pg_schema_url: str) -> None:  # type: ignore[no-untyped-def]
    app = app_factory("postgresql")
    app.profiles.create(basic_profile())
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        pytest.fail("pg_dump is not installed (postgresql-client)")
    schema = pg_schema_url.split("search_path%3D")[1]
    out = subprocess.run(
        [pg_dump, "-h", "127.0.0.1", "-U", "postgres", "-n", schema, "test"],
        capture_output=True,
        check=True,
    ).stdout
    assert b"smtp_password" in out  # the dump really holds the table
    assert CANARY.encode() not in out


def test_rotation_reencrypts_under_a_new_key(sqlite_app: Postroom) -> None:
    sqlite_app.profiles.create(basic_profile())
    with sqlite_app.engine.connect() as conn:
        before = conn.execute(text("SELECT smtp_password FROM profiles")).scalar()
    old_keys = sqlite_app.box.keys
    # the profile's password and postroom's HMAC key (created when the installation opens)
    assert sqlite_app.rotate_keys() == 2
    new_keys = sqlite_app.settings.key_file.read_text().split()
    assert new_keys[1:] == old_keys and len(new_keys) == 2
    with sqlite_app.engine.connect() as conn:
        after = conn.execute(text("SELECT smtp_password FROM profiles")).scalar()
    assert after != before
    # only the new key is needed now
    Fernet(new_keys[0].encode()).decrypt(after.encode())
    sqlite_app.rotate_keys(retire_old=True)
    assert len(sqlite_app.settings.key_file.read_text().split()) == 1
    reopened = Postroom.open(settings=sqlite_app.settings)
    assert reopened.profiles.spec_with_secrets("QA alerts").smtp.password == CANARY
    reopened.close()


def test_tampered_ciphertext_fails_loudly(sqlite_app: Postroom) -> None:
    sqlite_app.profiles.create(basic_profile())
    with sqlite_app.engine.begin() as conn:
        value = conn.execute(text("SELECT smtp_password FROM profiles")).scalar()
        tampered = value[:-6] + ("A" if value[-6] != "A" else "B") + value[-5:]
        conn.execute(text("UPDATE profiles SET smtp_password = :v"), {"v": tampered})
    with pytest.raises(SecretKeyError, match="modified"):
        sqlite_app.profiles.spec_with_secrets("QA alerts")
    # listing still works: it never needs the secret
    assert sqlite_app.profiles.list()[0].smtp["password_set"] is True


def test_missing_key_file_is_a_clear_startup_error(sqlite_app: Postroom) -> None:
    sqlite_app.profiles.create(basic_profile())
    sqlite_app.settings.key_file.unlink()
    with pytest.raises(SecretKeyError, match="key file .* is missing"):
        Postroom.open(settings=sqlite_app.settings)


def test_wrong_key_is_a_clear_startup_error(sqlite_app: Postroom, tmp_path: Path) -> None:
    sqlite_app.profiles.create(basic_profile())
    settings = Settings(
        data_dir=sqlite_app.settings.data_dir, secret_keys=Fernet.generate_key().decode()
    )
    with pytest.raises(SecretKeyError, match="do not match this database"):
        Postroom.open(settings=settings)


def test_malformed_env_key_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SecretKeyError, match="not a Fernet key"):
        Postroom.open(settings=Settings(data_dir=tmp_path, secret_keys="not-a-key"))


def test_env_keys_rotate_to_the_first(tmp_path: Path) -> None:
    old = Fernet.generate_key().decode()
    app = Postroom.open(settings=Settings(data_dir=tmp_path, secret_keys=old))
    app.profiles.create(basic_profile())
    app.close()
    new = Fernet.generate_key().decode()
    app = Postroom.open(settings=Settings(data_dir=tmp_path, secret_keys=f"{new},{old}"))
    assert app.rotate_keys() == 2  # the password and the HMAC key
    app.close()
    app = Postroom.open(settings=Settings(data_dir=tmp_path, secret_keys=new))
    assert app.profiles.spec_with_secrets("QA alerts").smtp.password == CANARY
    app.close()


@pytest.mark.mailservers
def test_canary_never_reaches_logs_or_outputs(
    sqlite_app: Postroom,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    mail_servers: Any,
) -> None:
    """Every path a secret could leak through: logs at DEBUG, the diagnosis, outbox errors,
    the REST API (including error responses), the audit log — with a real server refusing it."""
    import asyncio
    import logging

    from fastapi.testclient import TestClient

    from postroom.api import create_app
    from postroom.outbox.worker import Worker

    caplog.set_level(logging.DEBUG)
    sqlite_app.profiles.create(
        basic_profile(
            host=mail_servers.host, port=mail_servers.ports["submission"], security="starttls",
            ca_bundle=Path(mail_servers.ca_pem).read_text(), username="alice@postroom.test",
        )
    )  # fmt: skip
    diagnosis = sqlite_app.test_profile("QA alerts")
    assert diagnosis.error is not None and diagnosis.error.code == "auth_failed"
    id = sqlite_app.send({"to": ["bob@postroom.test"], "text": "x"}, profile="QA alerts")
    asyncio.run(Worker(sqlite_app, poll_s=0.05).run(drain=True))
    failed = sqlite_app.outbox.get(id)
    assert failed.status == "retrying" and "535" in (failed.last_error or "")
    key = sqlite_app.accounts.create_api_key("k", role="admin").key
    client = TestClient(create_app(sqlite_app), headers={"Authorization": f"Bearer {key}"})
    bodies = [
        client.get("/api/v1/profiles").text,
        client.put("/api/v1/profiles/QA%20alerts", json={"smtp": {"password": CANARY + "\n"}}).text,
        client.post(
            "/api/v1/connection-tests", json={"profile": basic_profile(password=CANARY, port=0)}
        ).text,
        client.get("/api/v1/audit").text,
        client.get(f"/api/v1/messages/{id}").text,
    ]
    everything = "\n".join(
        [
            caplog.text,
            diagnosis.model_dump_json(),
            failed.model_dump_json(),
            *bodies,
            *capfd.readouterr(),
        ]
    )
    assert CANARY not in everything


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_database_and_wal_are_created_0600_in_a_0700_directory(sqlite_app: Postroom) -> None:
    # outbox bodies (reset links), inbound mail and the audit log live in these files
    sqlite_app.profiles.create(basic_profile())
    sqlite_app.profiles.update("QA alerts", {"description": "touch the WAL"})
    data_dir = sqlite_app.settings.data_dir
    files = sorted(p.name for p in data_dir.iterdir() if p.name.startswith("postroom.db"))
    assert files == ["postroom.db", "postroom.db-shm", "postroom.db-wal"], files
    for name in files:
        assert _mode(data_dir / name) == 0o600, name
    assert _mode(data_dir) == 0o700


def test_an_existing_readable_database_is_tightened_on_open(sqlite_app: Postroom) -> None:
    sqlite_app.profiles.create(basic_profile())
    settings = sqlite_app.settings
    sqlite_app.close()
    db = settings.data_dir / "postroom.db"
    db.chmod(0o644)
    reopened = Postroom.open(settings=settings)
    try:
        reopened.profiles.update("QA alerts", {"description": "write again"})
        for path in settings.data_dir.glob("postroom.db*"):
            assert _mode(path) == 0o600, path
    finally:
        reopened.close()


def test_rotation_skips_and_names_a_row_no_key_decrypts(sqlite_app: Postroom) -> None:
    sqlite_app.profiles.create(basic_profile())
    sqlite_app.profiles.create(basic_profile("Broken one"))
    foreign = Fernet(Fernet.generate_key()).encrypt(b"lost-key").decode()
    with sqlite_app.engine.begin() as conn:
        conn.execute(
            text("UPDATE profiles SET smtp_password = :v WHERE name = 'Broken one'"),
            {"v": foreign},
        )
    with pytest.raises(KeysNotRotated) as caught:
        sqlite_app.rotate_keys(retire_old=True)
    assert caught.value.skipped == ["the smtp password of profile 'Broken one'"]
    assert "Broken one" in caught.value.message and "lost-key" not in caught.value.message
    assert caught.value.rotated == 2  # the readable password and the HMAC key
    # the readable one moved to the new key (and was committed); the broken one is untouched
    new_keys = sqlite_app.settings.key_file.read_text().split()
    assert len(new_keys) == 2  # old keys not retired while something was skipped
    with sqlite_app.engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT name, smtp_password FROM profiles")).all())
    assert Fernet(new_keys[0].encode()).decrypt(rows["QA alerts"].encode()) == CANARY.encode()
    assert rows["Broken one"] == foreign
    assert sqlite_app.profiles.spec_with_secrets("QA alerts").smtp.password == CANARY


def test_cli_keys_rotate_names_the_skipped_row_and_exits_1(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from postroom.cli import cli

    app = Postroom.open(settings=Settings(data_dir=tmp_path))
    app.profiles.create(basic_profile("Broken one"))
    app.close()
    with sqlite3.connect(tmp_path / "postroom.db") as conn:
        conn.execute("UPDATE profiles SET smtp_password = 'gAAAAAtampered'")
    r = CliRunner().invoke(cli, ["keys", "rotate"], env={"POSTROOM_DATA_DIR": str(tmp_path)})
    assert r.exit_code == 1, r.output
    assert "the smtp password of profile 'Broken one'" in r.output
    assert "Traceback" not in r.output


def test_a_relative_reference_directory_is_a_clear_startup_error(tmp_path: Path) -> None:
    from postroom.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="absolute directories; not absolute: secrets"):
        Postroom.open(settings=Settings(data_dir=tmp_path, secret_ref_paths="/etc/ok, secrets"))
