"""`postroom admin list|disable|set-role|reset-password`: exit codes 0/1/2, audit, sessions."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from typer.testing import CliRunner

from postroom import Postroom
from postroom.cli import cli
from postroom.settings import Settings


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

    def app() -> Postroom:
        return Postroom.open(
            settings=Settings(
                data_dir=tmp_path / "data", database_url=env.get("POSTROOM_DATABASE_URL")
            )
        )

    invoke.app = app  # type: ignore[attr-defined]
    yield invoke
    if backend == "postgresql":
        from tests.conftest import _truncate

        pr = app()
        _truncate(pr)
        pr.close()


def test_list_set_role_disable_and_reset_password(run) -> None:  # type: ignore[no-untyped-def]
    for name, role in (("alice", "admin"), ("bob", "viewer")):
        r = run("admin", "create", name, "--role", role, "--password-stdin",
                input=f"{name}-password-123\n")  # fmt: skip
        assert r.exit_code == 0, r.output
    r = run("admin", "list", "--json")
    assert r.exit_code == 0, r.output
    listed = {a["username"]: a for a in json.loads(r.output)}
    assert listed["alice"]["role"] == "admin" and listed["bob"]["role"] == "viewer"
    assert listed["bob"]["disabled_at"] is None
    assert "password" not in r.output
    assert "bob" in run("admin", "list").output

    # the only enabled admin can be neither demoted nor disabled: exit 1, nothing changes
    r = run("admin", "set-role", "alice", "viewer")
    assert r.exit_code == 1 and "only enabled admin" in r.output
    assert run("admin", "disable", "alice").exit_code == 1
    assert run("admin", "set-role", "bob", "owner").exit_code == 2
    assert run("admin", "set-role", "nobody", "admin").exit_code == 1
    assert run("admin", "set-role", "bob", "admin").exit_code == 0

    pr = run.app()
    try:
        sid = secrets.token_urlsafe(16)
        assert pr.admin_sessions.start(sid, "alice")
        r = run("admin", "disable", "alice")
        assert r.exit_code == 0, r.output
        assert pr.admin_sessions.current(sid) is None  # its session ended with it
        assert pr.accounts.verify_admin("alice", "alice-password-123") is None
        assert not pr.admin_sessions.start(secrets.token_urlsafe(16), "alice")
        assert json.loads(run("admin", "list", "--json").output)[0]["disabled_at"]
        assert run("admin", "disable", "alice", "--enable").exit_code == 0
        assert pr.accounts.verify_admin("alice", "alice-password-123") is not None

        sid = secrets.token_urlsafe(16)
        assert pr.admin_sessions.start(sid, "bob")
        r = run("admin", "reset-password", "bob", "--password-stdin", input="short\n")
        assert r.exit_code == 2 and "error: password:" in r.output
        r = run("admin", "reset-password", "bob", "--password-stdin", input="bob-new-password-1\n")
        assert r.exit_code == 0, r.output
        assert "bob-new-password-1" not in r.output
        assert pr.admin_sessions.current(sid) is None
        assert pr.accounts.verify_admin("bob", "bob-new-password-1") is not None
        assert run("admin", "reset-password", "nobody", "--password-stdin",
                   input="a-long-password-1\n").exit_code == 1  # fmt: skip

        actions = [(e.action, e.target, e.actor) for e in pr.audit.list(target_type="admin")]
        for expected in (
            ("update", "bob", "cli"),
            ("disable", "alice", "cli"),
            ("enable", "alice", "cli"),
            ("set_password", "bob", "cli"),
        ):
            assert expected in actions
    finally:
        pr.close()
