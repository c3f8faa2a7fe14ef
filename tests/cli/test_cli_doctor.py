"""`postroom doctor`: which settings profile an installation runs, and an operator's
checklist (database, files, keys, switches, URL); read-only, never a secret."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from typer.testing import CliRunner

from postroom.cli import cli
from tests.integration.smtp_fakes import closed_port


def doctor(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["doctor", *args], env=env)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def by_name(output: str) -> dict[str, dict[str, Any]]:
    report = json.loads(output)
    assert report["status"] in ("ok", "info", "warn", "fail")
    return {c["name"]: c for c in report["checks"]}


def test_a_fresh_directory_is_reported_without_creating_anything(tmp_path: Path) -> None:
    data = tmp_path / "data"
    code, out = doctor({"POSTROOM_DATA_DIR": str(data)}, "--json")
    assert code == 0, out
    checks = by_name(out)
    assert checks["network profile"]["status"] == "warn"
    assert checks["network profile"]["value"].startswith("default (ports: any")
    assert "POSTROOM_NET_PROFILE=hardened" in checks["network profile"]["advice"]
    assert checks["connection tests"]["value"].startswith("enabled")
    assert "not created yet" in checks["database"]["value"]
    assert checks["public URL"]["status"] == "warn"
    assert not data.exists()  # read-only: no directory, key file or database made


def test_a_hardened_installation_says_so(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {
        "POSTROOM_DATA_DIR": str(data),
        "POSTROOM_NET_PROFILE": "hardened",
        "POSTROOM_NET_ALLOW": "10.0.0.5/32",
        "POSTROOM_CONNECTION_TESTS": "disabled",
        "POSTROOM_PUBLIC_URL": "https://mail.example.com",
    }
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"], env=env).exit_code == 0
    data.chmod(0o700)
    code, out = doctor(env, "--json")
    assert code == 0, out
    checks = by_name(out)
    network = checks["network profile"]
    assert network["status"] == "ok"
    assert network["value"] == (
        "hardened (ports: 25, 143, 443, 465, 587, 993; allowed through: 10.0.0.5/32)"
    )
    assert checks["connection tests"]["value"].startswith("disabled")
    assert checks["database"]["status"] == "ok" and "sqlite" in checks["database"]["value"]
    assert checks["database schema"]["status"] == "ok"
    assert checks["data directory"]["status"] == "ok"
    assert checks["public URL"]["status"] == "ok"
    # and in words
    code, text = doctor(env)
    assert code == 0 and "[ok  ] network profile" in text and "hardened" in text


def test_loose_permissions_are_warned_with_the_fix(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"POSTROOM_DATA_DIR": str(data)}
    assert CliRunner().invoke(cli, ["db", "upgrade"], env=env).exit_code == 0
    data.chmod(0o755)
    key_file = data / "secret.key"
    if key_file.exists():
        key_file.chmod(0o644)
    checks = by_name(doctor(env, "--json")[1])
    assert checks["data directory"]["status"] == "warn"
    assert f"chmod 700 {data.resolve()}" in checks["data directory"]["advice"]
    if key_file.exists():
        assert checks["secret keys"]["status"] == "warn"
        assert "chmod 600" in checks["secret keys"]["advice"]


def test_no_secret_is_printed_and_an_unreachable_database_fails(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    env = {
        "POSTROOM_DATA_DIR": str(tmp_path / "data"),
        "POSTROOM_SECRET_KEYS": key,
        "POSTROOM_DATABASE_URL": (
            f"postgresql+psycopg://postroom:Pw-Sekrit-42@127.0.0.1:{closed_port()}/postroom"
        ),
    }
    for args in (("--json",), ()):
        code, out = doctor(env, *args)
        assert code == 1, out
        assert "Pw-Sekrit-42" not in out and key not in out
        assert "***" in out
    checks = by_name(doctor(env, "--json")[1])
    assert checks["database"]["status"] == "fail"
    assert checks["secret keys"]["value"].startswith("POSTROOM_SECRET_KEYS (1 key")
    assert "POSTROOM_SECRET_KEYS" in checks["environment"]["value"]
    assert os.environ.get("POSTROOM_SECRET_KEYS") != key
